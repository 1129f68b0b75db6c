"""The running service's shared parts (settings, database, launcher, stores, limits) and request dependencies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select

from robustlit_service.db import Database
from robustlit_service.errors import ApiError
from robustlit_service.limits import RateLimiter, RedisRateLimiter, RedisWakeUp, WakeUp, redis_client
from robustlit_service.models import ApiKey, AuditLog, Membership, User, utcnow
from robustlit_service.observability import Metrics, request_id_var
from robustlit_service.security import (
    SCOPES,
    OidcVerifier,
    decode_access_token,
    grants,
    sha256_hex,
    split_api_key,
    unverified_issuer,
)
from robustlit_service.settings import Settings
from robustlit_service.storage import LocalStore, S3Store

ROLE_RANK = {"viewer": 1, "editor": 2, "admin": 3}
SESSION_SLOTS = 30  # requests holding a database session at once; the pools hold 50 connections


class Service:
    """Everything one API process shares between requests and its dispatcher.

    Example:
        >>> service = Service(Settings.from_env())  # doctest: +SKIP
    """

    def __init__(self, settings: Settings) -> None:
        from robustlit_launcher import get_backend

        self.settings = settings
        self.db = Database(settings.database_url)
        self.redis: Any = redis_client(settings.redis_url) if settings.redis_url else None
        if self.redis is not None:
            # replicas of one deployment share a database, so its URL names their shared Redis keys
            namespace = sha256_hex(settings.database_url)[:12]
            self.limiter: RateLimiter = RedisRateLimiter(self.redis, settings.rate_limit, settings.rate_window,
                                                         namespace)
            self.wake: WakeUp = RedisWakeUp(self.redis, namespace)
        else:
            self.limiter = RateLimiter(settings.rate_limit, settings.rate_window)
            self.wake = WakeUp()
        self.token_limiter = RateLimiter(max(20, settings.rate_limit // 10), settings.rate_window)
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self.backend = get_backend("local", root=settings.jobs_dir, grace_s=3.0)
        self.store = (S3Store(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
                      if settings.s3_bucket else LocalStore())
        self.oidc = (OidcVerifier(settings.oidc_issuer, settings.oidc_jwks, settings.oidc_audience)
                     if settings.oidc_issuer and settings.oidc_jwks else None)
        self.metrics = Metrics()
        self.session_slots = asyncio.Semaphore(SESSION_SLOTS)
        self.bootstrap_lock = threading.Lock()


def service_of(request: Request) -> Service:
    """The :class:`Service` of the app serving ``request``."""
    return request.app.state.service


async def session_dep(request: Request) -> AsyncIterator[Session]:
    """A database session for one request: reads use SQLite's shared lock, writes take the write lock.

    It is an async dependency on purpose: its commit and close then run on the event loop. Were they run in the
    thread pool, a burst of requests could fill every thread with handlers waiting for a pooled connection while
    the sessions holding the connections wait for a thread to release them. For the same reason at most
    ``SESSION_SLOTS`` requests hold a session at once (fewer than the pool's connections); the others wait here,
    on the event loop, without taking a thread.
    """
    service = service_of(request)
    async with service.session_slots:
        with service.db.session(write=request.method not in ("GET", "HEAD", "OPTIONS")) as session:
            yield session


SESSION = Depends(session_dep, scope="function")  # commits before the response is sent


@dataclass
class Principal:
    """The authenticated caller."""

    user: User
    scopes: frozenset[str]
    api_key_id: int | None
    via: str

    @property
    def is_admin(self) -> bool:
        """Whether the caller holds ``admin:all`` (only admins can)."""
        return self.user.is_admin and "admin:all" in self.scopes

    @property
    def rate_key(self) -> str:
        """The key its requests are counted under: the API key, else the user."""
        return f"key{self.api_key_id}" if self.api_key_id is not None else f"user{self.user.id}"


bearer = HTTPBearer(auto_error=False, description="A JWT from POST /api/v1/auth/token, or an API key")
BEARER = Depends(bearer)

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _refuse(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_UNAUTHORIZED)


def authenticate(service: Service, session: Session, token: str) -> Principal:
    """Resolve a bearer token (API key, our JWT, or an OIDC JWT) to a :class:`Principal`."""
    key_parts = split_api_key(token)
    if key_parts is not None:
        prefix, secret = key_parts
        key = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        if key is None or not _equal(key.secret_hash, sha256_hex(secret)):
            raise _refuse("invalid API key")
        if key.revoked_at is not None:
            raise _refuse("this API key was revoked")
        if key.expires_at is not None and _aware(key.expires_at) <= utcnow():
            raise _refuse("this API key has expired")
        user = session.get(User, key.user_id)
        if user is None or user.disabled:
            raise _refuse("the API key's user is disabled")
        return Principal(user, _allowed(user, frozenset(key.scopes.split())), key.id, "api_key")
    if service.oidc is not None and unverified_issuer(token) == service.oidc.issuer:
        return _oidc_principal(service, session, token)
    try:
        claims = decode_access_token(service.settings.secret_key, token)
    except jwt.ExpiredSignatureError:
        raise _refuse("the access token has expired; get a new one with the refresh token") from None
    except jwt.InvalidTokenError as error:
        raise _refuse(f"invalid access token: {error}") from None
    user = session.get(User, claims.user_id)
    if user is None or user.disabled:
        raise _refuse("the token's user no longer exists or is disabled")
    if claims.api_key_id is not None:
        key = session.get(ApiKey, claims.api_key_id)
        if key is None or key.revoked_at is not None:
            raise _refuse("the API key this token was issued for was revoked")
    return Principal(user, _allowed(user, claims.scopes), claims.api_key_id, "jwt")


def _oidc_principal(service: Service, session: Session, token: str) -> Principal:
    assert service.oidc is not None
    try:
        claims = service.oidc.verify(token)
    except jwt.ExpiredSignatureError:
        raise _refuse("the OIDC token has expired") from None
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
        raise _refuse(f"invalid OIDC token: {error}") from None
    subject = f"{claims['iss']}#{claims['sub']}"
    user = session.exec(select(User).where(User.oidc_subject == subject)).first()
    if user is None:
        email = str(claims.get("email") or f"{claims['sub']}@{service.oidc.issuer}")[:320]
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = User(email=email, oidc_subject=subject)
            session.add(user)
            session.flush()
        elif user.oidc_subject is None:
            user.oidc_subject = subject
            session.add(user)
    if user.disabled:
        raise _refuse("this user is disabled")
    raw = claims.get("scope") or claims.get("scp") or ""
    scopes = frozenset(raw.split() if isinstance(raw, str) else raw) & frozenset(SCOPES)
    return Principal(user, _allowed(user, scopes or frozenset(SCOPES)), None, "oidc")


def _allowed(user: User, scopes: frozenset[str]) -> frozenset[str]:
    return scopes if user.is_admin else scopes - {"admin:all"}


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _aware(moment: Any) -> Any:
    from datetime import timezone

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def principal_dep(request: Request, credentials: HTTPAuthorizationCredentials | None = BEARER,
                  session: Session = SESSION) -> Principal:
    """The caller, authenticated and within its rate limit."""
    if credentials is None or not credentials.credentials:
        raise _refuse("missing credentials; send 'Authorization: Bearer <token or API key>'")
    service = service_of(request)
    principal = authenticate(service, session, credentials.credentials)
    allowed, retry_after = service.limiter.hit(principal.rate_key)
    if not allowed:
        service.metrics.rate_limited.inc()
        raise ApiError(429, "rate_limited",
                       f"more than {service.settings.rate_limit} requests in {service.settings.rate_window} s; "
                       f"retry after {retry_after} s", headers={"Retry-After": str(retry_after)})
    request.state.principal = principal
    return principal


def require_scope(principal: Principal, scope: str) -> None:
    """Refuse with 403 unless the caller's token carries ``scope``."""
    if not grants(principal.scopes, scope):
        raise ApiError(403, "insufficient_scope", f"this token lacks the {scope!r} scope",
                       details={"required": scope, "granted": sorted(principal.scopes)})


def require_role(session: Session, principal: Principal, project_id: int, role: str, scope: str) -> str:
    """Check the scope and the caller's role in the project (admins pass); returns the caller's role."""
    require_scope(principal, scope)
    if principal.is_admin:
        return "admin"
    membership = session.exec(select(Membership).where(Membership.project_id == project_id,
                                                       Membership.user_id == principal.user.id)).first()
    if membership is None:
        raise ApiError(403, "forbidden", f"you are not a member of project {project_id}")
    if ROLE_RANK[membership.role] < ROLE_RANK[role]:
        raise ApiError(403, "forbidden",
                       f"this needs the {role} role in project {project_id}; you are {membership.role}")
    return membership.role


def audit(session: Session, actor: Principal | None, action: str, target_type: str, target_id: object,
          project_id: int | None = None, **details: Any) -> None:
    """Add an audit-log row in the caller's transaction."""
    session.add(AuditLog(actor_id=actor.user.id if actor else None, action=action, target_type=target_type,
                         target_id=str(target_id), project_id=project_id, details=details or None,
                         request_id=request_id_var.get()))


CALLER = Depends(principal_dep)
