"""Session tokens, short-lived access tokens and CSRF tokens.

Design (why revocation is immediate)
------------------------------------
* **Session token** — :func:`new_session_token`: 32 random bytes (``secrets.token_urlsafe(32)``),
  opaque. The database stores only :func:`token_digest` (SHA-256 hex) with the session row
  (id, user id, created, absolute expiry = ``Settings.session_hours``, revoked_at). The browser gets
  it in an HttpOnly, Secure, SameSite=Strict cookie (:func:`session_cookie`); API clients keep it
  as their refresh credential. Logout revokes the session row; a password change (or a role change,
  or disabling the account) revokes every session row of the user.
* **Access token** — :func:`issue_access_token`: a compact HMAC-SHA256-signed token
  ``v1.<payload>.<mac>`` (base64url) carrying user id, **session id**, role, issue and expiry time
  (``Settings.access_token_minutes``, default 15). :func:`verify_access_token` checks format,
  signature (constant-time) and expiry without the database. The service must then load the
  session by ``claims.session_id`` and call :func:`ensure_session_alive` on **every request**: a
  revoked or expired session, another user, a role that changed since, or an account that is no
  longer active rejects the token at once, so logout and password change take effect immediately
  (the signature only saves a database look-up for forged or expired tokens).
* **CSRF** — for cookie-authenticated requests with an unsafe method, the client sends
  ``X-CSRF-Token`` equal to :func:`csrf_token` of its session: an HMAC of the session digest, so it
  is bound to that session, needs no storage, and changes when the session does. :func:`check_csrf`
  compares in constant time. Bearer-token requests need no CSRF token (a browser never attaches
  them by itself).

Keys: ``Settings.secret_key`` is never used directly; each purpose derives its own key
(HMAC-SHA256 of a purpose label), so an access-token MAC can never pass as a CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from neuronav.errors import ConfigError
from neuronav.security._time import aware, now_utc
from neuronav.security.errors import CsrfError, InvalidToken

TOKEN_VERSION = "v1"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 2048
CLOCK_SKEW_S = 60

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "__Host-neuronav_session"
DEV_SESSION_COOKIE = "neuronav_session"

_INVALID = "The sign-in token is invalid or has expired; sign in again."


def _key(secret: str | bytes, purpose: str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_LENGTH:
        raise ConfigError(f"NEURONAV_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters to sign tokens")
    return hmac.new(raw, f"neuronav/{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- session tokens -------------------------------------------------------------------------------


def new_session_token() -> str:
    """A fresh opaque session token (256 random bits, base64url). Give it to the client; store its digest."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """SHA-256 hex of a session token: the only form the database keeps (a stolen table opens no session)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_cookie(token: str, *, max_age_s: int, development: bool) -> dict[str, Any]:
    """Keyword arguments for ``Response.set_cookie`` carrying the session token.

    HttpOnly (no script can read it), SameSite=Strict (not sent on cross-site requests), Secure and
    ``__Host-`` prefixed (HTTPS only, this host only, path /) outside development mode.
    """
    return {
        "key": DEV_SESSION_COOKIE if development else SESSION_COOKIE,
        "value": token,
        "max_age": max_age_s,
        "path": "/",
        "secure": not development,
        "httponly": True,
        "samesite": "strict",
    }


@dataclass(frozen=True)
class SessionRecord:
    """What the service's session row holds that matters for authentication."""

    session_id: str
    user_id: str
    expires_at: datetime
    revoked_at: datetime | None = None


def session_expiry(created_at: datetime, *, hours: int) -> datetime:
    """Absolute expiry of a session created at ``created_at`` (``Settings.session_hours``)."""
    return now_utc(created_at) + timedelta(hours=hours)


# -- access tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token."""

    user_id: str
    session_id: str
    role: str
    issued_at: datetime
    expires_at: datetime


def issue_access_token(
    *,
    user_id: str,
    session_id: str,
    role: str,
    secret: str | bytes,
    minutes: int = 15,
    now: datetime | None = None,
) -> str:
    """A signed access token valid for ``minutes`` (``Settings.access_token_minutes``)."""
    if not user_id or not session_id or not role:
        raise ValueError("an access token needs a user id, a session id and a role")
    if minutes <= 0:
        raise ValueError("access token lifetime must be positive")
    issued = int(now_utc(now).timestamp())
    payload = {"sub": user_id, "sid": session_id, "role": role, "iat": issued, "exp": issued + minutes * 60}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signing_input = f"{TOKEN_VERSION}.{body}".encode("ascii")
    mac = hmac.new(_key(secret, "access-token/v1"), signing_input, hashlib.sha256).digest()
    return f"{TOKEN_VERSION}.{body}.{_b64(mac)}"


def verify_access_token(token: str, *, secret: str | bytes, now: datetime | None = None) -> AccessClaims:
    """The claims of a well-formed, correctly signed, unexpired token; :class:`InvalidToken` otherwise.

    This does not know about logout: the caller must also call :func:`ensure_session_alive`.
    """
    key = _key(secret, "access-token/v1")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken(_INVALID)
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise InvalidToken(_INVALID)
    try:
        mac = _unb64(parts[2])
        expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidToken(_INVALID) from exc
    if not hmac.compare_digest(mac, expected):
        raise InvalidToken(_INVALID)
    try:
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error) as exc:  # signed by us, so this would be a bug; refuse anyway
        raise InvalidToken(_INVALID) from exc
    if not isinstance(payload, dict):
        raise InvalidToken(_INVALID)
    sub, sid, role, iat, exp = (payload.get(k) for k in ("sub", "sid", "role", "iat", "exp"))
    if not (isinstance(sub, str) and isinstance(sid, str) and isinstance(role, str)):
        raise InvalidToken(_INVALID)
    if not (isinstance(iat, int) and isinstance(exp, int)) or isinstance(iat, bool) or isinstance(exp, bool):
        raise InvalidToken(_INVALID)
    t = now_utc(now).timestamp()
    if t >= exp or iat > t + CLOCK_SKEW_S:
        raise InvalidToken(_INVALID)
    return AccessClaims(
        user_id=sub,
        session_id=sid,
        role=role,
        issued_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
    )


def ensure_session_alive(
    claims: AccessClaims,
    session: SessionRecord | None,
    *,
    current_role: str,
    account_active: bool,
    now: datetime | None = None,
) -> None:
    """Raise :class:`InvalidToken` unless the token's session still exists, belongs to the token's
    user, is neither revoked nor expired, the user's role is still the token's role, and the account
    is still active. Call it on every request after :func:`verify_access_token`."""
    t = now_utc(now)
    if session is None or session.session_id != claims.session_id or session.user_id != claims.user_id:
        raise InvalidToken(_INVALID)
    if session.revoked_at is not None:
        raise InvalidToken(_INVALID)
    expires = aware(session.expires_at)
    if expires is None or t >= expires:
        raise InvalidToken(_INVALID)
    if claims.role != current_role or not account_active:
        raise InvalidToken(_INVALID)


def ensure_session_token(
    token: str,
    session: SessionRecord | None,
    stored_digest: str,
    *,
    account_active: bool,
    now: datetime | None = None,
) -> None:
    """Check a presented session token (cookie or refresh) against the row found by its digest."""
    if session is None or not hmac.compare_digest(token_digest(token), stored_digest):
        raise InvalidToken(_INVALID)
    expires = aware(session.expires_at)
    if session.revoked_at is not None or expires is None or now_utc(now) >= expires or not account_active:
        raise InvalidToken(_INVALID)


# -- CSRF -----------------------------------------------------------------------------------------


def csrf_token(session_token: str, *, secret: str | bytes) -> str:
    """The CSRF token of a session: HMAC(secret, session digest), base64url. Same for the session's life."""
    mac = hmac.new(_key(secret, "csrf/v1"), token_digest(session_token).encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def check_csrf(
    session_token: str,
    presented: str | None,
    *,
    secret: str | bytes,
    method: str = "POST",
) -> None:
    """Raise :class:`CsrfError` unless ``presented`` is this session's CSRF token (safe methods pass)."""
    if method.upper() in SAFE_METHODS:
        return
    expected = csrf_token(session_token, secret=secret).encode("ascii")
    try:
        given = (presented or "").encode("ascii")
    except UnicodeEncodeError:
        given = b""
    if not given or len(given) > 256 or not hmac.compare_digest(given, expected):
        raise CsrfError("The request is missing a valid CSRF token; reload the page and try again.")


__all__ = [
    "CSRF_HEADER",
    "DEV_SESSION_COOKIE",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "AccessClaims",
    "SessionRecord",
    "check_csrf",
    "csrf_token",
    "ensure_session_alive",
    "ensure_session_token",
    "issue_access_token",
    "new_session_token",
    "session_cookie",
    "session_expiry",
    "token_digest",
    "verify_access_token",
]
