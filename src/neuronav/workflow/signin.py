"""Signing in and out, sessions and second factors: who is acting, for every edge.

Sign-in (:func:`sign_in`) is :func:`neuronav.security.login.authenticate` with its state stored:

* the per-account throttle of an existing account in ``users.throttle`` (the row is locked for the
  attempt); for a name with no account, and for every client address, in the ``throttles`` table
  (:mod:`neuronav.workflow.throttles`). All of it is in the database: every server process sees the
  same lockouts, and a restart forgets none.
* every attempt is audited (``login``, outcome success / failure / denied, the reason class, the
  client address; never the password, and for a name with no account only a short digest of it).
* on success a session row (digest of the opaque session token, absolute expiry) is created, with a
  short-lived access token and the session's CSRF token.

:func:`authenticate` turns a bearer access token, or a session token (cookie) with its CSRF header, into
the :class:`~neuronav.security.access.Actor` of a request: the token's signature and expiry are checked,
then its session row is loaded and :func:`~neuronav.security.tokens.ensure_session_alive` checks that
the session is neither revoked nor expired and that the user's role and state are still those of the
token, so logout, password change, role change and disabling take effect at once. An account whose
password is a one-time password (``users.password_must_change``) is refused everything but
:data:`PASSWORD_CHANGE_ROUTES` with :class:`~neuronav.security.errors.PasswordChangeRequired` (audited).

TOTP enrolment keeps no half-enrolled state in the database: :func:`start_totp_enrolment` returns the
new secret and an *enrolment token* (the secret, sealed with the store's field key and bound to this
user and session, valid 10 minutes); :func:`confirm_totp_enrolment` takes the token and a code from the
app, and only then stores the secret (encrypted) in ``users.totp_secret_enc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.config import Settings
from neuronav.db.models import SessionRow, UserRow
from neuronav.errors import InputError
from neuronav.security import permissions, throttle, tokens, totp
from neuronav.security.access import Actor
from neuronav.security.errors import (
    AccountLocked,
    AccountStateError,
    InvalidToken,
    PasswordChangeRequired,
    PermissionDenied,
    SecondFactorRequired,
)
from neuronav.security.login import CODE_REQUIRED, LoginAccount
from neuronav.security.login import authenticate as check_credentials
from neuronav.storage.crypto import decrypt_field, encrypt_field
from neuronav.storage.errors import StorageIntegrityError
from neuronav.storage.store import ObjectStore
from neuronav.workflow import throttles
from neuronav.workflow.access import audit_event
from neuronav.workflow.accounts import (
    account_of,
    decrypt_totp_secret,
    encrypt_totp_secret,
    load_user,
    login_digest,
    throttle_from_json,
    throttle_to_json,
)
from neuronav.workflow.breakglass import BreakGlassRegistry

ENROLMENT_MINUTES = 10
SIGN_IN_FIRST = "Sign in first: send the access token (Authorization: Bearer …) or the session cookie."
CHANGE_PASSWORD_FIRST = (
    "You signed in with a one-time password: change it first (POST /api/auth/password with the current "
    "and a new password); until then only the password change, sign-out and /api/auth/me are open."
)
# (method, route template) open to an account that must change its one-time password
PASSWORD_CHANGE_ROUTES = frozenset(
    {("POST", "/api/auth/password"), ("POST", "/api/auth/logout"), ("GET", "/api/auth/me")}
)


@dataclass(frozen=True)
class SignedIn:
    user: UserRow
    session_token: str
    access_token: str
    expires_in: int
    csrf_token: str


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing into the authenticator app
    otpauth_uri: str  # for a QR code
    enrolment_token: str  # sent back with a code to confirm
    expires_in: int


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a bearer access token, or a session token (cookie) with its CSRF header."""

    bearer: str | None = None
    session_token: str | None = None
    csrf_header: str | None = None


def _login_account(user: UserRow, store: ObjectStore) -> LoginAccount:
    secret = decrypt_totp_secret(store, user.totp_secret_enc) if user.totp_secret_enc else None
    return LoginAccount(
        user_id=user.id,
        role=permissions.parse_role(user.role),
        state=account_of(user).state,
        password_hash=user.password_hash,
        totp_secret=secret,
        totp_last_step=user.totp_last_step,
    )


def _access_token(settings: Settings, user: UserRow, session: SessionRow, now: datetime) -> tuple[str, int]:
    remaining = int((session.expires_at - now).total_seconds())
    minutes = max(1, min(settings.access_token_minutes, remaining // 60))
    token = tokens.issue_access_token(
        user_id=user.id, session_id=session.id, role=user.role, secret=settings.secret_key, minutes=minutes, now=now
    )
    return token, minutes * 60


def sign_in(
    db: Session,
    settings: Settings,
    store: ObjectStore,
    *,
    email: str,
    password: str,
    totp_code: str | None,
    client: str,
) -> SignedIn:
    """One sign-in attempt (module docstring); raises the refusal after committing its audit event."""
    now = datetime.now(UTC)
    key = throttle.login_key(email)
    user = db.scalar(select(UserRow).where(UserRow.email == key).with_for_update()) if key else None
    account_state = throttle_from_json(user.throttle) if user is not None else throttles.load(db, "account", key)
    address_state = throttles.load(db, "address", client)
    result = check_credentials(
        _login_account(user, store) if user is not None else None,
        password,
        totp_code,
        account_throttle=account_state,
        address_throttle=address_state,
        now=now,
    )
    # a failure counted (the state changed): count it again on the freshly locked row, so that the
    # failures of concurrent attempts (in any process) are all kept
    if result.address_throttle != address_state:
        throttles.update(
            db, "address", client, lambda s: throttle.record_failure(s, throttle.ADDRESS_POLICY, now=now), now=now
        )
    if user is None:
        if result.account_throttle != account_state:
            throttles.update(
                db, "account", key, lambda s: throttle.record_failure(s, throttle.ACCOUNT_POLICY, now=now), now=now
            )
    else:
        user.throttle = throttle_to_json(result.account_throttle)
        if result.new_password_hash is not None:
            user.password_hash = result.new_password_hash
        if result.totp_step is not None:
            user.totp_last_step = result.totp_step
    outcome: Literal["success", "failure", "denied"] = (
        "success" if result.ok else "denied" if isinstance(result.error, PermissionDenied) else "failure"
    )
    detail: dict[str, Any] = {"reason": result.audit}
    if user is None:
        detail["login"] = login_digest(key)
    if isinstance(result.error, AccountLocked):
        detail["retry_after_s"] = result.error.retry_after_s
    if result.error is not None:
        audit_event(
            db,
            None,
            "login",
            outcome=outcome,
            client=client,
            target_type="user" if user is not None else None,
            target_id=user.id if user is not None else None,
            detail=detail,
        )
        db.commit()  # the failure and the throttle state stay although the request fails
        result.raise_for_error()
    assert user is not None  # authenticate succeeds only for an account
    token = tokens.new_session_token()
    session = SessionRow(
        user_id=user.id,
        token_digest=tokens.token_digest(token),
        created_at=now,
        expires_at=tokens.session_expiry(now, hours=settings.session_hours),
        client=client,
        mfa=result.totp_step is not None,
    )
    db.add(session)
    db.flush()
    access, expires_in = _access_token(settings, user, session, now)
    audit.record(
        db,
        "login",
        actor_id=user.id,
        actor_role=user.role,
        client=client,
        target_type="session",
        target_id=session.id,
        detail={**detail, "mfa": session.mfa},
    )
    return SignedIn(user, token, access, expires_in, tokens.csrf_token(token, secret=settings.secret_key))


def refresh(db: Session, settings: Settings, actor: Actor) -> tuple[str, int]:
    """A new access token for the actor's (live) session."""
    row = db.get(SessionRow, actor.session_id)
    if row is None:  # authenticate has just loaded it
        raise InvalidToken(SIGN_IN_FIRST)
    return _access_token(settings, load_user(db, actor.id), row, datetime.now(UTC))


def sign_out(db: Session, actor: Actor, registry: BreakGlassRegistry) -> None:
    """Revoke the actor's session and close its break-glass."""
    row = db.get(SessionRow, actor.session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    registry.close(actor.session_id)
    audit_event(db, actor, "logout", target_type="session", target_id=actor.session_id)


def _record(row: SessionRow | None) -> tokens.SessionRecord | None:
    if row is None:
        return None
    return tokens.SessionRecord(row.id, row.user_id, row.expires_at, row.revoked_at)


def authenticate(
    db: Session,
    settings: Settings,
    credentials: Credentials,
    *,
    method: str,
    route: str,
    client: str,
) -> Actor:
    """The actor behind ``credentials`` (module docstring), or the refusal (:class:`InvalidToken`,
    :class:`PasswordChangeRequired`, …). ``method`` and ``route`` (a template) decide what an account
    with a one-time password may do and whether a cookie session needs its CSRF token."""
    csrf: str | None = None
    via: Literal["bearer", "cookie"]
    if credentials.bearer is not None:
        claims = tokens.verify_access_token(credentials.bearer, secret=settings.secret_key)
        found = db.execute(  # the session and its user in one query (every request pays it)
            select(SessionRow, UserRow)
            .join(UserRow, UserRow.id == SessionRow.user_id)
            .where(SessionRow.id == claims.session_id, UserRow.id == claims.user_id)
        ).first()
        row, user = (found[0], found[1]) if found is not None else (None, None)
        tokens.ensure_session_alive(
            claims,
            _record(row),
            current_role=user.role if user is not None else "",
            account_active=user is not None and user.state == "active",
        )
        via = "bearer"
    else:
        token = credentials.session_token
        if not token:
            raise InvalidToken(SIGN_IN_FIRST)
        row = db.scalar(select(SessionRow).where(SessionRow.token_digest == tokens.token_digest(token)))
        user = db.get(UserRow, row.user_id) if row is not None else None
        tokens.ensure_session_token(
            token,
            _record(row),
            row.token_digest if row is not None else "",
            account_active=user is not None and user.state == "active",
        )
        tokens.check_csrf(token, credentials.csrf_header, secret=settings.secret_key, method=method)
        csrf = tokens.csrf_token(token, secret=settings.secret_key)
        via = "cookie"
    if user is None or row is None:  # ensure_* raised already; this narrows the types
        raise InvalidToken(SIGN_IN_FIRST)
    if user.password_must_change and (method, route) not in PASSWORD_CHANGE_ROUTES:
        audit.record(  # the refusal stays in the log although the request fails
            db,
            "access.denied",
            outcome="denied",
            actor_id=user.id,
            actor_role=user.role,
            client=client,
            detail={"reason": "password_change_required", "route": route, "method": method},
        )
        db.commit()
        raise PasswordChangeRequired(CHANGE_PASSWORD_FIRST)
    return Actor(
        id=user.id,
        email=user.email,
        role=permissions.parse_role(user.role),
        display_name=user.display_name,
        session_id=row.id,
        breakglass=BreakGlassRegistry(db).get(row.id),
        client=client,
        verified=user.verified_at is not None,
        via=via,
        csrf_token=csrf,
        password_must_change=user.password_must_change,
    )


REAUTH_FAILED = "Signing needs your own password (and your authenticator code if you use one): it did not check out."


def reauthenticate(
    db: Session, store: ObjectStore, actor: Actor, *, password: str, totp_code: str | None, purpose: str
) -> Literal["password", "password+totp"]:
    """Prove again that the signed-in user is at the keyboard before an act that carries their name (a
    signature, 21 CFR 11.200): their password, and their TOTP code when the account has one. Counted
    against the same throttles as a sign-in (a stolen session cannot guess the password here); a failure
    is audited (``reauth``, with ``purpose``), committed, and raised as :class:`PermissionDenied` (403: the
    session stays valid). Returns how the user proved it."""
    now = datetime.now(UTC)
    user = db.scalar(select(UserRow).where(UserRow.id == actor.id).with_for_update())
    if user is None:
        raise PermissionDenied(REAUTH_FAILED)
    account_state = throttle_from_json(user.throttle)
    address_state = throttles.load(db, "address", actor.client)
    result = check_credentials(
        _login_account(user, store),
        password,
        totp_code,
        account_throttle=account_state,
        address_throttle=address_state,
        now=now,
    )
    if result.address_throttle != address_state:
        throttles.update(
            db, "address", actor.client, lambda s: throttle.record_failure(s, throttle.ADDRESS_POLICY, now=now), now=now
        )
    user.throttle = throttle_to_json(result.account_throttle)
    if result.new_password_hash is not None:
        user.password_hash = result.new_password_hash
    if result.totp_step is not None:
        user.totp_last_step = result.totp_step
    if result.error is not None:
        audit_event(
            db,
            actor,
            "reauth",
            outcome="failure",
            target_type="user",
            target_id=actor.id,
            detail={"purpose": purpose, "reason": result.audit},
        )
        db.commit()  # the failure and the throttle state stay although the request fails
        if isinstance(result.error, AccountLocked):
            raise result.error
        if isinstance(result.error, SecondFactorRequired):
            raise PermissionDenied(f"Signing needs your authenticator code as well as your password. {CODE_REQUIRED}")
        raise PermissionDenied(REAUTH_FAILED)
    audit_event(db, actor, "reauth", target_type="user", target_id=actor.id, detail={"purpose": purpose})
    return "password+totp" if result.totp_step is not None else "password"


def _enrolment_column(actor: Actor) -> str:
    return f"totp-enrolment:{actor.id}:{actor.session_id}"


def start_totp_enrolment(db: Session, store: ObjectStore, actor: Actor) -> Enrolment:
    """A new TOTP secret and its enrolment token (nothing is stored until it is confirmed)."""
    row = load_user(db, actor.id)
    if row.totp_secret_enc is not None:
        raise AccountStateError("a second factor is already enrolled; an administrator can reset it")
    secret = totp.new_secret()
    sealed = f"{int(datetime.now(UTC).timestamp())}:{secret}"
    token = encrypt_field(sealed, store.field_key(), _enrolment_column(actor))
    return Enrolment(
        secret=secret,
        otpauth_uri=totp.provisioning_uri(secret, row.email),
        enrolment_token=token,
        expires_in=ENROLMENT_MINUTES * 60,
    )


def confirm_totp_enrolment(db: Session, store: ObjectStore, actor: Actor, enrolment_token: str, code: str) -> None:
    """Check a code of the new secret; then store the secret (encrypted) and the step used."""
    try:
        sealed = decrypt_field(enrolment_token, store.field_key(), _enrolment_column(actor))
        issued_s, secret = sealed.split(":", 1)
        issued = datetime.fromtimestamp(int(issued_s), UTC)
    except (StorageIntegrityError, ValueError) as exc:
        raise InputError("the enrolment token is not valid for this session; start the enrolment again") from exc
    if (datetime.now(UTC) - issued).total_seconds() > ENROLMENT_MINUTES * 60:
        raise InputError("the enrolment has expired; start it again")
    row = load_user(db, actor.id)
    if row.totp_secret_enc is not None:
        raise AccountStateError("a second factor is already enrolled; an administrator can reset it")
    step = totp.verify(secret, code, None)
    if step is None:
        audit_event(db, actor, "totp.enrol", outcome="failure", detail={"reason": "bad code"})
        db.commit()
        raise InputError("the code does not match; check the app's clock and enter the current code")
    row.totp_secret_enc = encrypt_totp_secret(store, secret)
    row.totp_last_step = step
    audit_event(db, actor, "totp.enrol", target_type="user", target_id=row.id)


def granted_permissions(actor: Actor) -> list[str]:
    """Every permission the actor holds now: the role's, and an open break-glass's."""
    granted = set(permissions.permissions_for(actor.role))
    if actor.breakglass is not None:
        granted |= permissions.BREAKGLASS_PERMISSIONS
    return sorted(str(p) for p in granted)


__all__ = [
    "CHANGE_PASSWORD_FIRST",
    "PASSWORD_CHANGE_ROUTES",
    "SIGN_IN_FIRST",
    "Credentials",
    "Enrolment",
    "SignedIn",
    "authenticate",
    "confirm_totp_enrolment",
    "granted_permissions",
    "reauthenticate",
    "refresh",
    "sign_in",
    "sign_out",
    "start_totp_enrolment",
]
