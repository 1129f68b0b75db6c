"""Secrets: password hashes, API keys (stored as SHA-256), scoped JWTs, refresh tokens and OIDC validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

SCOPES = ("projects:read", "projects:write", "runs:read", "runs:write", "admin:all")
ISSUER = "robustlit"
KEY_PREFIX = "rlk"


def parse_scopes(raw: str | None, allowed: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Scopes asked for in a space-separated string, checked against ``allowed`` (all of them when empty).

    Raises:
        ValueError: Naming an unknown or unallowed scope.

    Example:
        >>> sorted(parse_scopes("runs:write projects:read", SCOPES))
        ['projects:read', 'runs:write']
    """
    asked = [scope for scope in (raw or "").split() if scope]
    if not asked:
        return frozenset(allowed)
    for scope in asked:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
        if scope not in allowed:
            raise ValueError(f"scope {scope!r} is not granted to this account")
    return frozenset(asked)


def grants(scopes: frozenset[str], needed: str) -> bool:
    """Whether ``scopes`` cover ``needed``: ``admin:all`` covers everything, ``x:write`` covers ``x:read``.

    Example:
        >>> grants(frozenset({"runs:write"}), "runs:read"), grants(frozenset({"runs:read"}), "runs:write")
        (True, False)
    """
    if "admin:all" in scopes or needed in scopes:
        return True
    resource, _, action = needed.partition(":")
    return action == "read" and f"{resource}:write" in scopes


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``.

    Example:
        >>> verify_password("s3cret!", hash_password("s3cret!")), verify_password("nope", hash_password("s3cret!"))
        (True, False)
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` result)."""
    if not stored:
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def sha256_hex(value: str) -> str:
    """Hex SHA-256 of a string.

    Example:
        >>> len(sha256_hex("x"))
        64
    """
    return hashlib.sha256(value.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """A new API key ``rlk_<prefix>_<secret>`` (256-bit secret) with its prefix and the hash to store.

    Example:
        >>> key, prefix, stored = new_api_key()
        >>> secret = key.split("_", 2)[2]
        >>> split_api_key(key) == (prefix, secret) and stored == sha256_hex(secret)
        True
    """
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}_{prefix}_{secret}", prefix, sha256_hex(secret)


def split_api_key(token: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of an API key, or ``None`` if ``token`` is not shaped like one."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or len(parts[2]) < 20:
        return None
    return parts[1], parts[2]


def new_refresh_token() -> str:
    """An opaque, high-entropy refresh token."""
    return "rlr_" + secrets.token_urlsafe(40)


@dataclass
class TokenClaims:
    """What an access token says: who, with which scopes, and (for client credentials) through which key."""

    user_id: int
    scopes: frozenset[str]
    api_key_id: int | None
    expires_at: int


def issue_access_token(secret: str, user_id: int, scopes: frozenset[str], ttl: int,
                       api_key_id: int | None = None) -> str:
    """An HS256 JWT for ``user_id`` carrying ``scopes``, valid ``ttl`` seconds.

    Example:
        >>> token = issue_access_token("k" * 32, 7, frozenset({"runs:read"}), 60)
        >>> decode_access_token("k" * 32, token).user_id
        7
    """
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "sub": str(user_id), "scope": " ".join(sorted(scopes)), "iat": now,
                              "exp": now + ttl, "jti": uuid.uuid4().hex, "typ": "access"}
    if api_key_id is not None:
        claims["akid"] = api_key_id
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_access_token(secret: str, token: str) -> TokenClaims:
    """Verify an access token issued by this service.

    Raises:
        jwt.InvalidTokenError: Bad signature, expired, wrong issuer or type.
    """
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                        options={"require": ["exp", "iat", "sub", "iss"]})
    if claims.get("typ") != "access":
        raise jwt.InvalidTokenError("not an access token")
    try:
        user_id = int(claims["sub"])
    except ValueError:
        raise jwt.InvalidTokenError("bad subject") from None
    return TokenClaims(user_id, frozenset(str(claims.get("scope", "")).split()), claims.get("akid"), claims["exp"])


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a JWT, read without verifying it (to route it to the right verifier)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None


class OidcVerifier:
    """Validate JWTs of an external OpenID Connect issuer against its JWKS (a URL or a local file).

    Args:
        issuer: Expected ``iss``.
        jwks: ``https://…/jwks.json`` or the path of a JWKS file.
        audience: Expected ``aud``, if any.

    Example:
        >>> OidcVerifier("https://idp.example", "/etc/robustlit/jwks.json").issuer  # doctest: +SKIP
        'https://idp.example'
    """

    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

    def __init__(self, issuer: str, jwks: str, audience: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        if jwks.startswith(("http://", "https://")):
            self._client: jwt.PyJWKClient | None = jwt.PyJWKClient(jwks, cache_keys=True)
            self._keys: jwt.PyJWKSet | None = None
        else:
            self._client = None
            self._keys = jwt.PyJWKSet.from_dict(json.loads(Path(jwks).read_text(encoding="utf-8")))

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        assert self._keys is not None
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError(f"no key {kid!r} in the configured JWKS")

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature, issuer, audience and expiry are checked."""
        options = {"require": ["exp", "iss", "sub"], "verify_aud": self.audience is not None}
        return jwt.decode(token, self._key(token), algorithms=self.ALGORITHMS, issuer=self.issuer,
                          audience=self.audience, options=options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
