"""User accounts: registration, creation from the command line, administration, password changes.

One home for every account rule, whichever edge asks: the HTTP routes (``/api/auth/register``,
``/api/auth/password``, ``/api/admin/users``) and the CLI (``neuronav users create``, ``neuronav serve
--demo``) call these functions, so an account made one way obeys the same rules as one made another:

* :func:`new_account_fields` — the checks every new account passes (e-mail, display name, password
  policy, licence number), used by :func:`register` (API: a *pending* account an administrator must
  verify) and :func:`create_user` (CLI: the first administrator, demo users; may be *active*).
* the administrator's transitions (:func:`verify_user`, :func:`set_role`, :func:`disable_user`,
  :func:`enable_user`, :func:`reset_totp`, :func:`reset_password`) go through
  :mod:`neuronav.security.accounts` (an admin never acts on their own account; an admin role needs
  TOTP enrolled) and are audited, refusals included. A role change, disabling, a second-factor reset
  and a password reset revoke all of the user's sessions at once.
* a password reset sets a new **one-time password** (:func:`one_time_password`), returned once (never
  stored in clear, never audited): the user must change it at the next sign-in
  (``users.password_must_change``; until then only the password change, sign-out and "who am I" are
  open). It also clears the account's sign-in lockout.

Registration is rate-limited per client address (:data:`~neuronav.security.throttle.REGISTRATION_POLICY`:
10 attempts an hour, stored in ``throttles`` like the sign-in counters). Every attempt counts, refused
ones too (each costs an argon2 hash). An e-mail already registered gets the same answer as a new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.db.models import SessionRow, UserRow
from neuronav.db.session import get_row
from neuronav.errors import InputError
from neuronav.security import accounts, passwords, permissions, throttle
from neuronav.security.access import Actor
from neuronav.security.accounts import Account, AccountState, normalize_licence
from neuronav.security.errors import (
    AccountLocked,
    AccountStateError,
    PasswordPolicyError,
    PermissionDenied,
    RateLimited,
    SecurityError,
)
from neuronav.security.permissions import Role
from neuronav.security.throttle import ThrottleState
from neuronav.storage.crypto import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import throttles
from neuronav.workflow.access import audit_event

SYSTEM = "system"  # the actor of accounts made from the command line
TOTP_COLUMN = "users.totp_secret_enc"

_STATES = {"pending": AccountState.PENDING, "active": AccountState.ACTIVE, "disabled": AccountState.DISABLED}
_ROW_STATES = {state: row for row, state in _STATES.items()}


# -- views ---------------------------------------------------------------------------------------


class UserOut(BaseModel):
    """A user account as the API shows it (no secrets)."""

    id: str
    email: str
    display_name: str
    role: str
    state: str
    licence_number: str | None
    verified_at: datetime | None
    verified_by: str | None
    totp_enrolled: bool
    created_at: datetime
    password_change_required: bool = False  # a one-time password: only the password change is open


class UserPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[UserOut]


class ChangeOut(BaseModel):
    user: UserOut
    sessions_revoked: int = 0


class PasswordResetOut(ChangeOut):
    one_time_password: str = Field(
        description="Give it to the user by a safe channel; it is shown only now and must be changed at sign-in."
    )


def user_out(user: UserRow) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        state=user.state,
        licence_number=user.licence_number,
        verified_at=user.verified_at,
        verified_by=user.verified_by,
        totp_enrolled=user.totp_secret_enc is not None,
        password_change_required=bool(user.password_must_change),
        created_at=user.created_at,
    )


# -- rows, accounts and secrets ----------------------------------------------------------------------


def load_user(db: Session, user_id: str) -> UserRow:
    """The user row, or :class:`NotFoundError`."""
    return get_row(db, UserRow, user_id, "user")


def account_of(user: UserRow) -> Account:
    """The security module's view of a user row (``users.state`` 'pending' is ``pending_verification``)."""
    return Account(
        user_id=user.id,
        username=user.email,
        email=user.email,
        role=permissions.parse_role(user.role),
        state=_STATES[user.state],
        licence_number=user.licence_number,
        verified_by=user.verified_by,
        verified_at=user.verified_at,
        totp_enrolled=user.totp_secret_enc is not None,
    )


def apply_account(user: UserRow, account: Account) -> None:
    """Copy an account transition back into the row."""
    user.state = _ROW_STATES[account.state]
    user.role = str(account.role)
    user.licence_number = account.licence_number
    user.verified_by = account.verified_by
    user.verified_at = account.verified_at


def revoke_sessions(db: Session, user_id: str, *, keep: str | None = None) -> int:
    """Revoke every live session of ``user_id`` (but ``keep``); the number revoked."""
    stmt = update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(SessionRow.id != keep)
    result = cast(CursorResult[Any], db.execute(stmt.values(revoked_at=datetime.now(UTC))))
    return int(result.rowcount or 0)


def encrypt_totp_secret(store: ObjectStore, secret: str) -> str:
    """A TOTP secret as stored in ``users.totp_secret_enc`` (AES-GCM with the store's field key, column-bound)."""
    return encrypt_field(secret, store.field_key(), TOTP_COLUMN)


def decrypt_totp_secret(store: ObjectStore, token: str) -> str:
    return decrypt_field(token, store.field_key(), TOTP_COLUMN)


def one_time_password() -> str:
    """A one-time password (4 groups of 5 letters and digits, ≈ 119 bits), to be changed at first sign-in."""
    alphabet = string.ascii_letters + string.digits
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


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


def login_digest(key: str) -> str:
    """A short digest of a login name with no account (audited instead of the name: it may be a password)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


# -- new accounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAccount:
    """The checked, normalised fields of a new account."""

    email: str
    display_name: str
    role: Role
    licence_number: str | None


def new_account_fields(
    email: str, password: str, display_name: str, role: Role | str, licence: str | None
) -> NewAccount:
    """Check what every new account must satisfy, however it is made; raises naming the problem."""
    address = throttle.login_key(email)
    if (
        "@" not in address
        or address.startswith("@")
        or address.endswith("@")
        or any(c.isspace() for c in address)
        or len(address) > 254
    ):
        raise InputError(f"{email!r} is not a valid e-mail address")
    try:
        checked_role = permissions.parse_role(role)
    except Exception as exc:
        raise AccountStateError(f"unknown role {role!r}; the roles are {', '.join(r.value for r in Role)}") from exc
    name = " ".join(display_name.split())
    if not name:
        raise InputError("a display name is required")
    passwords.check_password_policy(password, email=address, display_name=name)
    licence_number = normalize_licence(licence) if licence and licence.strip() else None
    return NewAccount(address, name, checked_role, licence_number)


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


def register(
    db: Session,
    *,
    email: str,
    password: str,
    display_name: str,
    role: Role | str,
    licence_number: str | None,
    client: str,
) -> None:
    """Create a pending account. An e-mail already registered gets the same reply (no enumeration)."""
    count_registration(db, client)
    fields = new_account_fields(email, password, display_name, role, licence_number)
    password_hash = passwords.hash_password(password)  # also for a known e-mail: same time taken
    user = UserRow(
        email=fields.email,
        display_name=fields.display_name,
        role=str(fields.role),
        state="pending",
        password_hash=password_hash,
        licence_number=fields.licence_number,
        throttle={},
    )
    exists = db.scalar(select(UserRow.id).where(UserRow.email == fields.email)) is not None
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
            detail={"reason": "e-mail already registered", "login": login_digest(fields.email)},
        )
        return
    audit_event(
        db,
        None,
        "user.register",
        client=client,
        target_type="user",
        target_id=user.id,
        detail={"requested_role": str(fields.role)},
    )


def _check_totp_secret(secret: str) -> str:
    cleaned = "".join(secret.split()).upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise InputError("the TOTP secret must be base32 (as made by neuronav.security.totp.new_secret)") from exc
    if len(raw) < 10:
        raise InputError("the TOTP secret must hold at least 80 bits")
    return cleaned


def create_user(
    db: Session,
    store: ObjectStore,
    email: str,
    password: str,
    role: Role | str,
    *,
    display_name: str,
    active: bool,
    licence: str | None,
    totp_secret: str | None = None,
    must_change_password: bool = False,
) -> str:
    """Create an account from the command line (the first administrator, demo users); its user id.

    ``active=False`` makes a pending account (to verify); an active account counts as verified
    (``verified_at`` now, ``verified_by`` empty: verified by whoever runs the command), and an active
    administrator needs a TOTP secret. ``must_change_password`` marks ``password`` as a one-time
    password. Audited as ``user.create`` by ``system``."""
    fields = new_account_fields(email, password, display_name, role, licence)
    secret = _check_totp_secret(totp_secret) if totp_secret else None
    if active and fields.role == Role.ADMIN and secret is None:
        raise AccountStateError("an active administrator needs a TOTP secret (the second factor is required)")
    if db.scalar(select(UserRow.id).where(UserRow.email == fields.email)) is not None:
        raise AccountStateError(f"an account with the e-mail {fields.email} already exists")
    now = datetime.now(UTC)
    user = UserRow(
        email=fields.email,
        display_name=fields.display_name,
        role=str(fields.role),
        state="active" if active else "pending",
        password_hash=passwords.hash_password(password),
        licence_number=fields.licence_number,
        verified_at=now if active else None,
        totp_secret_enc=encrypt_totp_secret(store, secret) if secret else None,
        throttle={},
        created_at=now,
        password_changed_at=now,
        password_must_change=must_change_password,
    )
    db.add(user)
    db.flush()
    audit.record(
        db,
        "user.create",
        actor_id=SYSTEM,
        actor_role=SYSTEM,
        client="cli",
        target_type="user",
        target_id=user.id,
        detail={
            "role": str(fields.role),
            "active": active,
            "totp": secret is not None,
            "one_time_password": must_change_password,
        },
    )
    return user.id


# -- the account holder's own changes --------------------------------------------------------------


def change_password(db: Session, actor: Actor, current: str, new: str) -> int:
    """Change the caller's password (ends a one-time password); revokes every other session. The number
    of sessions revoked."""
    row = load_user(db, actor.id)
    now = datetime.now(UTC)
    state = throttle_from_json(row.throttle)
    decision = throttle.check(state, throttle.ACCOUNT_POLICY, now=now)
    if not decision.allowed:
        raise AccountLocked(decision.message, decision.retry_after_s)
    if not passwords.verify_password(row.password_hash, current):
        row.throttle = throttle_to_json(throttle.record_failure(state, throttle.ACCOUNT_POLICY, now=now))
        audit_event(db, actor, "password.change", outcome="failure", detail={"reason": "bad current password"})
        db.commit()
        raise PermissionDenied("The current password is wrong.")
    passwords.check_password_policy(new, email=row.email, display_name=row.display_name)
    if passwords.verify_password(row.password_hash, new):
        raise PasswordPolicyError(["the new password must differ from the current one"])
    one_time = row.password_must_change
    row.password_hash = passwords.hash_password(new)
    row.password_changed_at = now
    row.password_must_change = False
    row.throttle = throttle_to_json(ThrottleState())
    revoked = revoke_sessions(db, row.id, keep=actor.session_id)
    audit_event(
        db,
        actor,
        "password.change",
        target_type="user",
        target_id=row.id,
        detail={"sessions_revoked": revoked, "one_time_password_replaced": one_time},
    )
    return revoked


# -- administration ------------------------------------------------------------------------------


def list_users(db: Session, *, state: str | None, role: str | None, q: str | None, limit: int, offset: int) -> UserPage:
    """Users matching the filters, newest first."""
    stmt = select(UserRow)
    if state is not None:
        stmt = stmt.where(UserRow.state == state)
    if role is not None:
        stmt = stmt.where(UserRow.role == role)
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        email, name = func.lower(UserRow.email), func.lower(UserRow.display_name)
        stmt = stmt.where(email.like(pattern, escape="\\") | name.like(pattern, escape="\\"))
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(UserRow.created_at.desc(), UserRow.id).limit(limit).offset(offset)).all()
    return UserPage(total=total, limit=limit, offset=offset, items=[user_out(u) for u in rows])


def _audited(db: Session, actor: Actor, action: str, target: UserRow, change: Callable[[], ChangeOut]) -> ChangeOut:
    """Run ``change``; a refusal is audited (and committed) before it propagates."""
    try:
        return change()
    except SecurityError as exc:
        outcome: Literal["denied", "failure"] = "denied" if isinstance(exc, PermissionDenied) else "failure"
        audit_event(
            db, actor, action, outcome=outcome, target_type="user", target_id=target.id, detail={"reason": str(exc)}
        )
        db.commit()
        raise


def verify_user(db: Session, actor: Actor, user_id: str, licence_number: str, role: Role) -> ChangeOut:
    """Activate a pending account after checking the professional's licence number and role."""
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        requested = user.role
        account = accounts.activate(
            account_of(user), licence_number=licence_number, role=role, verifier_id=actor.id, verifier_role=actor.role
        )
        apply_account(user, account)
        audit_event(
            db,
            actor,
            "user.verify",
            target_type="user",
            target_id=user.id,
            detail={"role": str(account.role), "requested_role": requested, "licence_number": account.licence_number},
        )
        return ChangeOut(user=user_out(user))

    return _audited(db, actor, "user.verify", user, change)


def set_role(db: Session, actor: Actor, user_id: str, role: Role) -> ChangeOut:
    """Give the user another role; all their sessions are revoked (their tokens name the old role)."""
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        before = user.role
        if before == str(role):
            raise AccountStateError(f"the account already has the role {role}")
        apply_account(user, accounts.change_role(account_of(user), role, by_id=actor.id, by_role=actor.role))
        revoked = revoke_sessions(db, user.id)
        audit_event(
            db,
            actor,
            "user.role_change",
            target_type="user",
            target_id=user.id,
            detail={"from": before, "to": str(role), "sessions_revoked": revoked},
        )
        return ChangeOut(user=user_out(user), sessions_revoked=revoked)

    return _audited(db, actor, "user.role_change", user, change)


def disable_user(db: Session, actor: Actor, user_id: str, reason: str) -> ChangeOut:
    """Disable an account (or reject a registration); all its sessions are revoked."""
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        account = accounts.disable(account_of(user), reason=reason, by_id=actor.id, by_role=actor.role)
        apply_account(user, account)
        revoked = revoke_sessions(db, user.id)
        audit_event(
            db,
            actor,
            "user.disable",
            target_type="user",
            target_id=user.id,
            detail={"reason": account.disabled_reason, "sessions_revoked": revoked},
        )
        return ChangeOut(user=user_out(user), sessions_revoked=revoked)

    return _audited(db, actor, "user.disable", user, change)


def enable_user(db: Session, actor: Actor, user_id: str) -> ChangeOut:
    """Re-enable a disabled account (active when it was verified before, else pending)."""
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        apply_account(user, accounts.enable(account_of(user), by_id=actor.id, by_role=actor.role))
        audit_event(db, actor, "user.enable", target_type="user", target_id=user.id, detail={"state": user.state})
        return ChangeOut(user=user_out(user))

    return _audited(db, actor, "user.enable", user, change)


def reset_totp(db: Session, actor: Actor, user_id: str) -> ChangeOut:
    """Remove a user's second factor (lost phone) so they can enrol again; revokes their sessions.

    Refused for an administrator (who could then not sign in at all): change the role first.
    """
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        if actor.id == user.id:
            raise PermissionDenied("an administrator cannot reset their own second factor")
        if user.role == Role.ADMIN:
            raise AccountStateError("an administrator must keep a second factor; change the role first")
        if user.totp_secret_enc is None:
            raise AccountStateError("this account has no second factor enrolled")
        user.totp_secret_enc = None
        user.totp_last_step = None
        revoked = revoke_sessions(db, user.id)
        audit_event(
            db, actor, "user.totp_reset", target_type="user", target_id=user.id, detail={"sessions_revoked": revoked}
        )
        return ChangeOut(user=user_out(user), sessions_revoked=revoked)

    return _audited(db, actor, "user.totp_reset", user, change)


def reset_password(db: Session, actor: Actor, user_id: str) -> PasswordResetOut:
    """Give a user a new one-time password (to change at the next sign-in); revokes their sessions
    and clears their sign-in lockout. Not for one's own account (use the password change)."""
    user = load_user(db, user_id)
    password = one_time_password()

    def change() -> ChangeOut:
        if actor.id == user.id:
            raise PermissionDenied("an administrator changes their own password with POST /api/auth/password")
        if user.state == "disabled":
            raise AccountStateError("the account is disabled; enable it first")
        user.password_hash = passwords.hash_password(password)
        user.password_must_change = True
        user.throttle = {}
        revoked = revoke_sessions(db, user.id)
        audit_event(
            db,
            actor,
            "user.password_reset",
            target_type="user",
            target_id=user.id,
            detail={"sessions_revoked": revoked},
        )
        return PasswordResetOut(user=user_out(user), sessions_revoked=revoked, one_time_password=password)

    out = _audited(db, actor, "user.password_reset", user, change)
    assert isinstance(out, PasswordResetOut)
    return out
