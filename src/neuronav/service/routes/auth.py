"""Authentication routes: register, sign in and out, refresh, password change, TOTP enrolment, me.

Sign-in (:func:`sign_in`) is :func:`neuronav.security.login.authenticate` with its state stored:

* the per-account throttle of an existing account in ``users.throttle`` (the row is locked for the
  attempt); for a name with no account, and for every client address, in the ``throttles`` table
  (:mod:`neuronav.service.throttles`). All of it is in the database: every server process sees the
  same lockouts, and a restart forgets none.
* every attempt is audited (``login``, outcome success / failure / denied, the reason class, the
  client address; never the password, and for a name with no account only a short digest of it).
* on success a session row (digest of the opaque session token, absolute expiry) is created; the
  reply carries a short-lived access token and the session's CSRF token, and sets the session token
  as an HttpOnly, SameSite=Strict cookie (``Secure`` and ``__Host-`` outside development).

An account with a one-time password (``users.password_must_change``) signs in normally; the reply
says ``password_change_required: true`` and, until ``POST /api/auth/password`` changes it, every
route but the password change, sign-out and ``/me`` answers 403 ``PasswordChangeRequired``
(:func:`neuronav.service.deps.get_current_user`). The new password must follow the policy and differ
from the old one.

Registration is rate-limited per client address (:data:`~neuronav.security.throttle.REGISTRATION_POLICY`:
10 attempts an hour, stored in ``throttles`` like the sign-in counters): 429 ``RateLimited`` with
``Retry-After``. Every attempt counts, refused ones too (each costs an argon2 hash).

TOTP enrolment keeps no half-enrolled state in the database: ``/totp/enrol`` returns the new secret
and an *enrolment token* (the secret, sealed with the store's field key and bound to this user and
session, valid 10 minutes); ``/totp/confirm`` takes the token and a code from the app, and only then
stores the secret (encrypted) in ``users.totp_secret_enc``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav import audit as audit_log
from neuronav.config import Settings
from neuronav.db.models import SessionRow, UserRow
from neuronav.errors import InputError
from neuronav.security import passwords, permissions, throttle, tokens, totp
from neuronav.security.errors import (
    AccountLocked,
    AccountStateError,
    InvalidToken,
    PasswordPolicyError,
    PermissionDenied,
    RateLimited,
)
from neuronav.security.login import LoginAccount, authenticate
from neuronav.security.permissions import Role
from neuronav.security.throttle import ThrottleState
from neuronav.service import throttles
from neuronav.service.deps import (
    SIGN_IN_FIRST,
    BreakGlassDep,
    BreakGlassRegistry,
    CurrentUser,
    CurrentUserDep,
    DbDep,
    SettingsDep,
    StoreDep,
    UserOut,
    account_of,
    audit_event,
    client_address,
    decrypt_totp_secret,
    encrypt_totp_secret,
    load_user,
    revoke_sessions,
    session_cookie_name,
    user_out,
)
from neuronav.storage.crypto import decrypt_field, encrypt_field
from neuronav.storage.errors import StorageIntegrityError
from neuronav.storage.store import ObjectStore

router = APIRouter(prefix="/api/auth", tags=["auth"])

ENROLMENT_MINUTES = 10
REGISTERED = "Registration received. An administrator will verify your professional licence and role."


# -- throttle state ------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def throttle_to_json(state: ThrottleState) -> dict[str, Any]:
    """A throttle state as stored in ``users.throttle``."""
    return {
        "failures": state.failures,
        "window_start": _iso(state.window_start),
        "locked_until": _iso(state.locked_until),
        "lockouts": state.lockouts,
        "last_failure": _iso(state.last_failure),
    }


def throttle_from_json(data: dict[str, Any] | None) -> ThrottleState:
    """The state stored in ``users.throttle`` (a missing or unreadable record is a fresh state)."""
    if not isinstance(data, dict):
        return ThrottleState()
    failures, lockouts = data.get("failures"), data.get("lockouts")
    return ThrottleState(
        failures=failures if isinstance(failures, int) else 0,
        window_start=_time(data.get("window_start")),
        locked_until=_time(data.get("locked_until")),
        lockouts=lockouts if isinstance(lockouts, int) else 0,
        last_failure=_time(data.get("last_failure")),
    )


# -- request and response bodies -------------------------------------------------------------------


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, description="Work e-mail address; the sign-in name.")
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)
    display_name: str = Field(min_length=1, max_length=200)
    role: Role = Field(description="The role requested; the verifying administrator confirms or corrects it.")
    licence_number: str | None = Field(default=None, max_length=100, description="Professional licence number.")


class RegisterOut(BaseModel):
    status: Literal["pending"] = "pending"
    message: str = REGISTERED


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH * 4)
    totp_code: str | None = Field(default=None, max_length=16, description="6-digit code; required when enrolled.")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires; then call /api/auth/refresh.")
    csrf_token: str | None = Field(description="Send as X-CSRF-Token on unsafe requests authenticated by the cookie.")


class LoginOut(TokenOut):
    csrf_token: str
    user: UserOut
    password_change_required: bool = Field(
        default=False,
        description="Signed in with a one-time password: change it (POST /api/auth/password) before anything else.",
    )


class StatusOut(BaseModel):
    status: str


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH * 4)
    new_password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)


class PasswordOut(BaseModel):
    status: Literal["changed"] = "changed"
    sessions_revoked: int


class EnrolOut(BaseModel):
    secret: str = Field(description="Base32 secret, for typing into the authenticator app.")
    otpauth_uri: str = Field(description="The otpauth:// URI (show it as a QR code).")
    enrolment_token: str = Field(description="Send back with a code to /api/auth/totp/confirm.")
    expires_in: int


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrolment_token: str = Field(min_length=1, max_length=1000)
    code: str = Field(min_length=1, max_length=16)


class BreakGlassOut(BaseModel):
    breakglass_id: str
    opened_at: datetime
    expires_at: datetime
    study_id: str | None


class MeOut(UserOut):
    session_id: str
    authenticated_by: Literal["bearer", "cookie"]
    csrf_token: str | None
    permissions: list[str]
    breakglass: BreakGlassOut | None


# -- core functions ------------------------------------------------------------------------------


def _login_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def count_registration(db: Session, client: str, *, now: datetime | None = None) -> None:
    """Refuse a registration from ``client`` over the rate limit (:class:`RateLimited`, audited),
    else count this attempt; committed either way, so a registration refused later still counts."""
    t = now or datetime.now(UTC)
    decision = throttle.check_registration(throttles.load(db, "registration", client), now=t)
    if not decision.allowed:
        audit_event(
            db,
            None,
            "user.register",
            outcome="denied",
            client=client,
            detail={"reason": "rate limited", "retry_after_s": decision.retry_after_s},
        )
        db.commit()
        raise RateLimited(decision.message, decision.retry_after_s)
    throttles.update(
        db, "registration", client, lambda s: throttle.record_failure(s, throttle.REGISTRATION_POLICY, now=t), now=t
    )
    db.commit()


def register(db: Session, body: RegisterIn, *, client: str) -> None:
    """Create a pending account. An e-mail already registered gets the same reply (no enumeration)."""
    count_registration(db, client)
    email = throttle.login_key(body.email)
    if "@" not in email or email.startswith("@") or email.endswith("@") or any(c.isspace() for c in email):
        raise InputError("the e-mail address is not valid")
    passwords.check_password_policy(body.password, email=email)
    password_hash = passwords.hash_password(body.password)  # also for a known e-mail: same time taken
    licence = " ".join(body.licence_number.split()).upper() if body.licence_number else None
    user = UserRow(
        email=email,
        display_name=" ".join(body.display_name.split()),
        role=str(body.role),
        state="pending",
        password_hash=password_hash,
        licence_number=licence or None,
        throttle={},
    )
    exists = db.scalar(select(UserRow.id).where(UserRow.email == email)) is not None
    if not exists:
        try:
            with db.begin_nested():  # a concurrent registration of the same e-mail loses here, quietly
                db.add(user)
                db.flush()
        except IntegrityError:
            exists = True
    if exists:
        audit_event(
            db,
            None,
            "user.register",
            outcome="failure",
            client=client,
            detail={"reason": "e-mail already registered", "login": _login_digest(email)},
        )
        return
    audit_event(
        db,
        None,
        "user.register",
        client=client,
        target_type="user",
        target_id=user.id,
        detail={"requested_role": str(body.role)},
    )


@dataclass(frozen=True)
class SignedIn:
    user: UserRow
    session_token: str
    access_token: str
    expires_in: int
    csrf_token: str


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
    expires = session.expires_at if session.expires_at.tzinfo else session.expires_at.replace(tzinfo=UTC)
    remaining = int((expires - now).total_seconds())
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
    result = authenticate(
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
        detail["login"] = _login_digest(key)
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
    audit_log.record(
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


def refresh(db: Session, settings: Settings, user: CurrentUser) -> tuple[str, int]:
    """A new access token for the caller's (live) session."""
    row = db.get(SessionRow, user.session_id)
    if row is None:  # get_current_user has just loaded it
        raise InvalidToken(SIGN_IN_FIRST)
    return _access_token(settings, load_user(db, user.id), row, datetime.now(UTC))


def sign_out(db: Session, user: CurrentUser, registry: BreakGlassRegistry) -> None:
    """Revoke the caller's session and close its break-glass."""
    row = db.get(SessionRow, user.session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    registry.close(user.session_id)
    audit_event(db, user, "logout", target_type="session", target_id=user.session_id)


def change_password(db: Session, user: CurrentUser, current: str, new: str) -> int:
    """Change the caller's password (ends a one-time password); revokes every other session. The number
    of sessions revoked."""
    row = load_user(db, user.id)
    now = datetime.now(UTC)
    state = throttle_from_json(row.throttle)
    decision = throttle.check(state, throttle.ACCOUNT_POLICY, now=now)
    if not decision.allowed:
        raise AccountLocked(decision.message, decision.retry_after_s)
    if not passwords.verify_password(row.password_hash, current):
        row.throttle = throttle_to_json(throttle.record_failure(state, throttle.ACCOUNT_POLICY, now=now))
        audit_event(db, user, "password.change", outcome="failure", detail={"reason": "bad current password"})
        db.commit()
        raise PermissionDenied("The current password is wrong.")
    passwords.check_password_policy(new, email=row.email)
    if passwords.verify_password(row.password_hash, new):
        raise PasswordPolicyError(["the new password must differ from the current one"])
    one_time = row.password_must_change
    row.password_hash = passwords.hash_password(new)
    row.password_changed_at = now
    row.password_must_change = False
    row.throttle = throttle_to_json(ThrottleState())
    revoked = revoke_sessions(db, row.id, keep=user.session_id)
    audit_event(
        db,
        user,
        "password.change",
        target_type="user",
        target_id=row.id,
        detail={"sessions_revoked": revoked, "one_time_password_replaced": one_time},
    )
    return revoked


def _enrolment_column(user: CurrentUser) -> str:
    return f"totp-enrolment:{user.id}:{user.session_id}"


def start_totp_enrolment(db: Session, store: ObjectStore, user: CurrentUser) -> EnrolOut:
    """A new TOTP secret and its enrolment token (nothing is stored until it is confirmed)."""
    row = load_user(db, user.id)
    if row.totp_secret_enc is not None:
        raise AccountStateError("a second factor is already enrolled; an administrator can reset it")
    secret = totp.new_secret()
    sealed = f"{int(datetime.now(UTC).timestamp())}:{secret}"
    token = encrypt_field(sealed, store.field_key(), _enrolment_column(user))
    return EnrolOut(
        secret=secret,
        otpauth_uri=totp.provisioning_uri(secret, row.email),
        enrolment_token=token,
        expires_in=ENROLMENT_MINUTES * 60,
    )


def confirm_totp_enrolment(db: Session, store: ObjectStore, user: CurrentUser, enrolment_token: str, code: str) -> None:
    """Check a code of the new secret; then store the secret (encrypted) and the step used."""
    try:
        sealed = decrypt_field(enrolment_token, store.field_key(), _enrolment_column(user))
        issued_s, secret = sealed.split(":", 1)
        issued = datetime.fromtimestamp(int(issued_s), UTC)
    except (StorageIntegrityError, ValueError) as exc:
        raise InputError("the enrolment token is not valid for this session; start the enrolment again") from exc
    if (datetime.now(UTC) - issued).total_seconds() > ENROLMENT_MINUTES * 60:
        raise InputError("the enrolment has expired; start it again")
    row = load_user(db, user.id)
    if row.totp_secret_enc is not None:
        raise AccountStateError("a second factor is already enrolled; an administrator can reset it")
    step = totp.verify(secret, code, None)
    if step is None:
        audit_event(db, user, "totp.enrol", outcome="failure", detail={"reason": "bad code"})
        db.commit()
        raise InputError("the code does not match; check the app's clock and enter the current code")
    row.totp_secret_enc = encrypt_totp_secret(store, secret)
    row.totp_last_step = step
    audit_event(db, user, "totp.enrol", target_type="user", target_id=row.id)


def me(db: Session, user: CurrentUser) -> MeOut:
    row = load_user(db, user.id)
    granted = set(permissions.permissions_for(user.role))
    bg = user.breakglass
    if bg is not None:
        granted |= permissions.BREAKGLASS_PERMISSIONS
    return MeOut(
        **user_out(row).model_dump(),
        session_id=user.session_id,
        authenticated_by=user.via,
        csrf_token=user.csrf_token,
        permissions=sorted(str(p) for p in granted),
        breakglass=BreakGlassOut(
            breakglass_id=bg.breakglass_id, opened_at=bg.opened_at, expires_at=bg.expires_at, study_id=bg.study_id
        )
        if bg is not None
        else None,
    )


# -- routes --------------------------------------------------------------------------------------


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=RegisterOut)
def register_route(body: RegisterIn, request: Request, db: DbDep) -> RegisterOut:
    """Register a new account. It stays **pending** (it can do nothing, not even sign in) until an
    administrator verifies the professional's licence number and role. The password must follow the
    policy (at least 12 characters, not common, not containing the e-mail). The reply is the same
    whether or not the e-mail is already registered. At most 10 attempts an hour from one address
    (then 429 with ``Retry-After``)."""
    register(db, body, client=client_address(request))
    return RegisterOut()


@router.post("/login", response_model=LoginOut)
def login_route(
    body: LoginIn,
    request: Request,
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    store: StoreDep,
) -> LoginOut:
    """Sign in with e-mail, password and (when enrolled, always for administrators) a TOTP code.

    Returns a short-lived access token (send it as ``Authorization: Bearer``), the CSRF token, and
    sets the HttpOnly session cookie. A wrong name or password gives the same 401 either way;
    repeated failures lock the name (and the address) for a while: 429 with ``Retry-After``.

    ``password_change_required: true`` (a one-time password): change the password first; every other
    route answers 403 ``PasswordChangeRequired`` until then."""
    signed = sign_in(
        db,
        settings,
        store,
        email=body.email,
        password=body.password,
        totp_code=body.totp_code,
        client=client_address(request),
    )
    response.set_cookie(
        **tokens.session_cookie(
            signed.session_token, max_age_s=settings.session_hours * 3600, development=settings.development
        )
    )
    return LoginOut(
        access_token=signed.access_token,
        expires_in=signed.expires_in,
        csrf_token=signed.csrf_token,
        user=user_out(signed.user),
        password_change_required=signed.user.password_must_change,
    )


@router.post("/refresh", response_model=TokenOut)
def refresh_route(user: CurrentUserDep, db: DbDep, settings: SettingsDep) -> TokenOut:
    """A fresh access token for the current session (authenticate with the session cookie and CSRF
    token, or with a still-valid access token). Fails once the session is revoked or expired."""
    token, expires_in = refresh(db, settings, user)
    return TokenOut(access_token=token, expires_in=expires_in, csrf_token=user.csrf_token)


@router.post("/logout", response_model=StatusOut)
def logout_route(
    user: CurrentUserDep, db: DbDep, response: Response, settings: SettingsDep, registry: BreakGlassDep
) -> StatusOut:
    """Sign out: revoke the current session (its access tokens stop working at once) and clear the cookie."""
    sign_out(db, user, registry)
    cookie = tokens.session_cookie("", max_age_s=0, development=settings.development)
    response.delete_cookie(
        session_cookie_name(settings), path="/", secure=cookie["secure"], httponly=True, samesite="strict"
    )
    return StatusOut(status="signed out")


@router.post("/password", response_model=PasswordOut)
def password_route(body: PasswordIn, user: CurrentUserDep, db: DbDep) -> PasswordOut:
    """Change your password (the current one is required; the new one must follow the policy and
    differ from it). Every other session of yours is revoked. This ends a one-time password: the
    only route, with sign-out and /me, open before it is changed."""
    return PasswordOut(sessions_revoked=change_password(db, user, body.current_password, body.new_password))


@router.post("/totp/enrol", response_model=EnrolOut)
def totp_enrol_route(user: CurrentUserDep, db: DbDep, store: StoreDep) -> EnrolOut:
    """Start enrolling a second factor: returns a new TOTP secret (and its otpauth URI for a QR code)
    and an enrolment token. Nothing changes until /api/auth/totp/confirm receives a valid code."""
    return start_totp_enrolment(db, store, user)


@router.post("/totp/confirm", response_model=StatusOut)
def totp_confirm_route(body: ConfirmIn, user: CurrentUserDep, db: DbDep, store: StoreDep) -> StatusOut:
    """Finish enrolling the second factor with the enrolment token and a current code from the app;
    from now on every sign-in needs a code."""
    confirm_totp_enrolment(db, store, user, body.enrolment_token, body.code)
    return StatusOut(status="enrolled")


@router.get("/me", response_model=MeOut)
def me_route(user: CurrentUserDep, db: DbDep) -> MeOut:
    """The signed-in account: role, permissions, open break-glass, and (for cookie sessions) the CSRF token."""
    return me(db, user)


__all__ = [
    "SignedIn",
    "change_password",
    "confirm_totp_enrolment",
    "count_registration",
    "register",
    "router",
    "sign_in",
    "start_totp_enrolment",
    "throttle_from_json",
    "throttle_to_json",
]
