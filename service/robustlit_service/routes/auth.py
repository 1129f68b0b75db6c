"""``/auth/token`` (OAuth2 password, client-credentials and refresh grants), users and API keys."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from sqlalchemy import func, update
from sqlmodel import Session, select

from robustlit_service.context import (
    CALLER,
    SESSION,
    Principal,
    audit,
    principal_dep,
    require_scope,
    service_of,
)
from robustlit_service.errors import ApiError, not_found
from robustlit_service.models import ApiKey, RefreshToken, User, utcnow
from robustlit_service.routes.common import Limit, Offset, paginate
from robustlit_service.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Id,
    Page,
    TokenOut,
    UserCreate,
    UserOut,
)
from robustlit_service.security import (
    SCOPES,
    hash_password,
    issue_access_token,
    new_api_key,
    new_refresh_token,
    parse_scopes,
    sha256_hex,
    split_api_key,
    verify_password,
)

router = APIRouter(tags=["auth"])
FormText = Annotated[str | None, Form(max_length=2000, pattern=r"^[^\x00-\x1f]*$")]


def _grant_error(message: str, code: str = "invalid_grant", status: int = 400) -> ApiError:
    return ApiError(status, code, message)


def _allowed_scopes(user: User) -> tuple[str, ...]:
    return SCOPES if user.is_admin else tuple(s for s in SCOPES if s != "admin:all")


def _tokens(request: Request, session: Session, user: User, scopes: frozenset[str], api_key_id: int | None,
            family: str | None = None) -> TokenOut:
    settings = service_of(request).settings
    refresh = new_refresh_token()
    session.add(RefreshToken(token_hash=sha256_hex(refresh), family=family or uuid.uuid4().hex, user_id=user.id,
                             api_key_id=api_key_id, scopes=" ".join(sorted(scopes)),
                             expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl)))
    access = issue_access_token(settings.secret_key, user.id, scopes, settings.access_token_ttl, api_key_id)
    return TokenOut(access_token=access, expires_in=settings.access_token_ttl, refresh_token=refresh,
                    scope=" ".join(sorted(scopes)))


@router.post("/auth/token", response_model=TokenOut, summary="OAuth2 token endpoint")
def token(
    request: Request,
    response: Response,
    grant_type: Annotated[str, Form(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f]*$")],
    username: FormText = None,
    password: FormText = None,
    client_id: FormText = None,
    client_secret: FormText = None,
    refresh_token: FormText = None,
    scope: FormText = None,
    session: Session = SESSION,
) -> TokenOut:
    """Issue a short-lived JWT and a refresh token.

    ``grant_type=password`` takes ``username`` (email) and ``password``; ``client_credentials`` takes an API key as
    ``client_secret`` (``client_id`` is its prefix, optional); ``refresh_token`` rotates a refresh token.
    """
    response.headers["Cache-Control"] = "no-store"
    service = service_of(request)
    client = request.client.host if request.client else "unknown"
    allowed, retry_after = service.token_limiter.hit(f"token:{client}")
    if not allowed:
        raise ApiError(429, "rate_limited", f"too many token requests; retry after {retry_after} s",
                       headers={"Retry-After": str(retry_after)})
    if grant_type == "password":
        if not username or not password:
            raise _grant_error("the password grant needs username and password", "invalid_request")
        user = session.exec(select(User).where(User.email == username)).first()
        if user is None or user.disabled or not verify_password(password, user.password_hash):
            raise _grant_error("wrong username or password", status=401)
        scopes = _scopes(scope, _allowed_scopes(user))
        audit(session, Principal(user, scopes, None, "password"), "auth.token", "user", user.id, grant=grant_type)
        return _tokens(request, session, user, scopes, None)
    if grant_type == "client_credentials":
        parts = split_api_key(client_secret or "")
        if parts is None or (client_id and client_id != parts[0]):
            raise _grant_error("client_secret must be an API key (client_id, if given, its prefix)", status=401)
        key = session.exec(select(ApiKey).where(ApiKey.prefix == parts[0])).first()
        if key is None or key.secret_hash != sha256_hex(parts[1]) or key.revoked_at is not None:
            raise _grant_error("invalid or revoked API key", status=401)
        user = session.get(User, key.user_id)
        if user is None or user.disabled:
            raise _grant_error("the API key's user is disabled", status=401)
        scopes = _scopes(scope, tuple(s for s in key.scopes.split() if s in _allowed_scopes(user)))
        return _tokens(request, session, user, scopes, key.id)
    if grant_type == "refresh_token":
        stored = session.exec(select(RefreshToken).where(
            RefreshToken.token_hash == sha256_hex(refresh_token or ""))).first()
        if stored is None:
            raise _grant_error("unknown refresh token", status=401)
        if stored.revoked_at is not None:
            # a rotated token came back: it was stolen or replayed, so the whole family goes
            session.execute(update(RefreshToken).where(RefreshToken.family == stored.family,
                                                       RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
            session.commit()
            raise _grant_error("this refresh token was already used; all tokens of its session are revoked",
                               status=401)
        expires = stored.expires_at if stored.expires_at.tzinfo else stored.expires_at.replace(tzinfo=utcnow().tzinfo)
        if expires <= utcnow():
            raise _grant_error("the refresh token has expired; sign in again", status=401)
        user = session.get(User, stored.user_id)
        if user is None or user.disabled:
            raise _grant_error("the user is disabled", status=401)
        if stored.api_key_id is not None:
            key = session.get(ApiKey, stored.api_key_id)
            if key is None or key.revoked_at is not None:
                raise _grant_error("the API key behind this session was revoked", status=401)
        rotated = session.execute(update(RefreshToken).where(RefreshToken.id == stored.id,
                                                             RefreshToken.revoked_at.is_(None))
                                  .values(revoked_at=utcnow())).rowcount
        if rotated != 1:
            raise _grant_error("this refresh token was already used", status=401)
        scopes = _scopes(scope, tuple(stored.scopes.split()))
        return _tokens(request, session, user, scopes, stored.api_key_id, family=stored.family)
    raise _grant_error(f"unsupported grant_type {grant_type!r}; use password, client_credentials or refresh_token",
                       "unsupported_grant_type")


def _scopes(raw: str | None, allowed: tuple[str, ...]) -> frozenset[str]:
    try:
        return parse_scopes(raw, allowed)
    except ValueError as error:
        raise ApiError(400, "invalid_scope", str(error)) from None


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(body: UserCreate, request: Request, session: Session = SESSION) -> UserOut:
    """Create a user. With no users yet, anyone may create the first one, who becomes the admin."""
    service = service_of(request)
    with service.bootstrap_lock:
        first = session.exec(select(func.count()).select_from(User)).one() == 0
    actor = None
    if not first:
        actor = principal_dep(request, _credentials(request), session)
        require_scope(actor, "admin:all")
        if not actor.is_admin:
            raise ApiError(403, "forbidden", "only admins create users")
    if session.exec(select(User).where(User.email == body.email)).first() is not None:
        raise ApiError(409, "conflict", f"a user with email {body.email!r} already exists")
    user = User(email=body.email, password_hash=hash_password(body.password), is_admin=first or body.is_admin)
    session.add(user)
    session.flush()
    audit(session, actor, "user.create", "user", user.id, is_admin=user.is_admin)
    return UserOut.model_validate(user, from_attributes=True)


def _credentials(request: Request):  # type: ignore[no-untyped-def]
    from fastapi.security.utils import get_authorization_scheme_param

    scheme, value = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not value:
        return None
    from fastapi.security import HTTPAuthorizationCredentials

    return HTTPAuthorizationCredentials(scheme=scheme, credentials=value)


@router.get("/users", response_model=Page[UserOut], tags=["users"])
def list_users(limit: Limit = 50, offset: Offset = 0, principal: Principal = CALLER,
               session: Session = SESSION) -> Page[UserOut]:
    """All users (admins only)."""
    require_scope(principal, "admin:all")
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "only admins list users")
    rows, total = paginate(session, select(User).order_by(User.id), limit, offset)
    return Page(items=[UserOut.model_validate(u, from_attributes=True) for u in rows], total=total, limit=limit,
                offset=offset)


@router.get("/users/me", response_model=UserOut, tags=["users"])
def me(principal: Principal = CALLER) -> UserOut:
    """The caller."""
    return UserOut.model_validate(principal.user, from_attributes=True)


def _key_out(key: ApiKey) -> dict:
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "scopes": key.scopes.split(),
            "created_at": key.created_at, "expires_at": key.expires_at, "revoked_at": key.revoked_at,
            "last_used_at": key.last_used_at}


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["api keys"])
def create_api_key(body: ApiKeyCreate, principal: Principal = CALLER,
                   session: Session = SESSION) -> ApiKeyCreated:
    """Create an API key for the caller, with at most the caller's own scopes. The key is shown only here."""
    if principal.via == "api_key":
        raise ApiError(403, "forbidden", "API keys cannot create API keys; sign in with a password or OIDC token")
    scopes = frozenset(body.scopes) if body.scopes else principal.scopes
    missing = scopes - principal.scopes
    if missing:
        raise ApiError(403, "insufficient_scope", f"you cannot grant scopes you lack: {', '.join(sorted(missing))}")
    key, prefix, secret_hash = new_api_key()
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row = ApiKey(prefix=prefix, secret_hash=secret_hash, user_id=principal.user.id, name=body.name,
                 scopes=" ".join(sorted(scopes)), expires_at=expires)
    session.add(row)
    session.flush()
    audit(session, principal, "api_key.create", "api_key", row.id, scopes=sorted(scopes))
    return ApiKeyCreated(**_key_out(row), key=key)


@router.get("/api-keys", response_model=Page[ApiKeyOut], tags=["api keys"])
def list_api_keys(limit: Limit = 50, offset: Offset = 0, principal: Principal = CALLER,
                  session: Session = SESSION) -> Page[ApiKeyOut]:
    """The caller's API keys (without secrets)."""
    query = select(ApiKey).where(ApiKey.user_id == principal.user.id).order_by(ApiKey.id)
    rows, total = paginate(session, query, limit, offset)
    return Page(items=[ApiKeyOut(**_key_out(k)) for k in rows], total=total, limit=limit, offset=offset)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
def revoke_api_key(key_id: Id, principal: Principal = CALLER,
                   session: Session = SESSION) -> ApiKeyOut:
    """Revoke one of the caller's API keys (admins: anyone's); tokens issued for it stop working too."""
    key = session.get(ApiKey, key_id)
    if key is None or (key.user_id != principal.user.id and not principal.is_admin):
        raise not_found("API key", key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        audit(session, principal, "api_key.revoke", "api_key", key.id)
    return ApiKeyOut(**_key_out(key))
