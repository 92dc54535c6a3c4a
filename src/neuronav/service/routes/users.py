"""User administration (``/api/admin/users``): list, verify a pending professional, change a role,
disable / enable, reset a second factor, reset a forgotten password.

Every transition goes through :mod:`neuronav.security.accounts` (an admin never acts on their own
account; an admin role needs TOTP enrolled) and is audited, refusals included. A role change,
disabling, a second-factor reset and a password reset revoke all of the user's sessions at once.

A password reset (:func:`reset_password`) sets a new **one-time password**, returned once in the
reply (never stored in clear, never audited): the user must change it at the next sign-in
(``users.password_must_change``; until then every route but the password change, sign-out and
``/api/auth/me`` answers 403 ``PasswordChangeRequired``). It also clears the account's sign-in lockout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from neuronav.db.models import UserRow
from neuronav.security import accounts, passwords
from neuronav.security.errors import AccountStateError, PermissionDenied, SecurityError
from neuronav.security.permissions import Permission, Role
from neuronav.service.deps import (
    CurrentUser,
    DbDep,
    UserOut,
    account_of,
    apply_account,
    audit_event,
    load_user,
    requires,
    revoke_sessions,
    user_out,
)
from neuronav.service.ops import one_time_password

router = APIRouter(prefix="/api/admin/users", tags=["users"])

Manager = Annotated[CurrentUser, Depends(requires(Permission.USER_MANAGE))]
Verifier = Annotated[CurrentUser, Depends(requires(Permission.USER_VERIFY))]
StateFilter = Literal["pending", "active", "disabled"]


class UserPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[UserOut]


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    licence_number: str = Field(min_length=1, max_length=100, description="The licence number you checked.")
    role: Role = Field(description="The role you confirmed (may correct the one requested).")


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class DisableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why (kept in the audit log).")


class ChangeOut(BaseModel):
    user: UserOut
    sessions_revoked: int = 0


class PasswordResetOut(ChangeOut):
    one_time_password: str = Field(
        description="Give it to the user by a safe channel; it is shown only now and must be changed at sign-in."
    )


# -- core functions ------------------------------------------------------------------------------


def list_users(db: Session, *, state: str | None, role: str | None, q: str | None, limit: int, offset: int) -> UserPage:
    """Users matching the filters, newest first."""
    stmt = select(UserRow)
    if state is not None:
        stmt = stmt.where(UserRow.state == state)
    if role is not None:
        stmt = stmt.where(UserRow.role == role)
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            func.lower(UserRow.email).like(pattern, escape="\\")
            | func.lower(UserRow.display_name).like(pattern, escape="\\")
        )
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(UserRow.created_at.desc(), UserRow.id).limit(limit).offset(offset)).all()
    return UserPage(total=total, limit=limit, offset=offset, items=[user_out(u) for u in rows])


def _audited(
    db: Session, actor: CurrentUser, action: str, target: UserRow, change: Callable[[], ChangeOut]
) -> ChangeOut:
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


def verify_user(db: Session, actor: CurrentUser, user_id: str, licence_number: str, role: Role) -> ChangeOut:
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


def set_role(db: Session, actor: CurrentUser, user_id: str, role: Role) -> ChangeOut:
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


def disable_user(db: Session, actor: CurrentUser, user_id: str, reason: str) -> ChangeOut:
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


def enable_user(db: Session, actor: CurrentUser, user_id: str) -> ChangeOut:
    """Re-enable a disabled account (active when it was verified before, else pending)."""
    user = load_user(db, user_id)

    def change() -> ChangeOut:
        apply_account(user, accounts.enable(account_of(user), by_id=actor.id, by_role=actor.role))
        audit_event(db, actor, "user.enable", target_type="user", target_id=user.id, detail={"state": user.state})
        return ChangeOut(user=user_out(user))

    return _audited(db, actor, "user.enable", user, change)


def reset_totp(db: Session, actor: CurrentUser, user_id: str) -> ChangeOut:
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


def reset_password(db: Session, actor: CurrentUser, user_id: str) -> PasswordResetOut:
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


# -- routes --------------------------------------------------------------------------------------


@router.get("", response_model=UserPage)
def list_route(
    db: DbDep,
    _: Manager,
    state: Annotated[StateFilter | None, Query(description="pending, active or disabled")] = None,
    role: Annotated[Role | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the e-mail or name.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> UserPage:
    """List user accounts (administrators), newest first, filtered by state, role or a search text."""
    return list_users(db, state=state, role=str(role) if role else None, q=q, limit=limit, offset=offset)


@router.get("/{user_id}", response_model=UserOut)
def get_route(user_id: str, db: DbDep, _: Manager) -> UserOut:
    """One user account (administrators)."""
    return user_out(load_user(db, user_id))


@router.post("/{user_id}/verify", response_model=ChangeOut)
def verify_route(user_id: str, body: VerifyIn, db: DbDep, actor: Verifier) -> ChangeOut:
    """Verify a pending professional: record the licence number you checked and the role, which
    activates the account. An admin role needs a second factor enrolled; nobody verifies themselves."""
    return verify_user(db, actor, user_id, body.licence_number, body.role)


@router.post("/{user_id}/role", response_model=ChangeOut)
def role_route(user_id: str, body: RoleIn, db: DbDep, actor: Manager) -> ChangeOut:
    """Change a user's role. All their sessions are revoked; the change is audited."""
    return set_role(db, actor, user_id, body.role)


@router.post("/{user_id}/disable", response_model=ChangeOut)
def disable_route(user_id: str, body: DisableIn, db: DbDep, actor: Manager) -> ChangeOut:
    """Disable an account (or reject a registration) with a reason. All its sessions are revoked."""
    return disable_user(db, actor, user_id, body.reason)


@router.post("/{user_id}/enable", response_model=ChangeOut)
def enable_route(user_id: str, db: DbDep, actor: Manager) -> ChangeOut:
    """Re-enable a disabled account: active again when it was verified before, else pending."""
    return enable_user(db, actor, user_id)


@router.post("/{user_id}/totp/reset", response_model=ChangeOut)
def totp_reset_route(user_id: str, db: DbDep, actor: Manager) -> ChangeOut:
    """Remove a user's second factor (e.g. a lost phone) so they can enrol a new one; revokes their
    sessions. Not for administrators (they must always have one)."""
    return reset_totp(db, actor, user_id)


@router.post("/{user_id}/password/reset", response_model=PasswordResetOut)
def password_reset_route(user_id: str, db: DbDep, actor: Manager) -> PasswordResetOut:
    """Reset a forgotten password: returns a new one-time password (shown only in this reply) that the
    user must change at the next sign-in. Revokes their sessions and clears their sign-in lockout."""
    return reset_password(db, actor, user_id)


__all__ = [
    "disable_user",
    "enable_user",
    "list_users",
    "reset_password",
    "reset_totp",
    "router",
    "set_role",
    "verify_user",
]
