"""User administration (``/api/admin/users``): list, verify a pending professional, change a role,
disable / enable, reset a second factor, reset a forgotten password.

Thin: the rules, the session revocations and the audit events are :mod:`neuronav.workflow.accounts`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission, Role
from neuronav.service.deps import AuthFirstRoute, DbDep, Offset, requires
from neuronav.workflow import accounts
from neuronav.workflow.accounts import ChangeOut, PasswordResetOut, UserOut, UserPage

router = APIRouter(prefix="/api/admin/users", tags=["users"], route_class=AuthFirstRoute)

Manager = Annotated[Actor, Depends(requires(Permission.USER_MANAGE))]
Verifier = Annotated[Actor, Depends(requires(Permission.USER_VERIFY))]
StateFilter = Literal["pending", "active", "disabled"]


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


# -- routes --------------------------------------------------------------------------------------


@router.get("", response_model=UserPage)
def list_route(
    db: DbDep,
    _: Manager,
    state: Annotated[StateFilter | None, Query(description="pending, active or disabled")] = None,
    role: Annotated[Role | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the e-mail or name.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> UserPage:
    """List user accounts (administrators), newest first, filtered by state, role or a search text."""
    return accounts.list_users(db, state=state, role=str(role) if role else None, q=q, limit=limit, offset=offset)


@router.get("/{user_id}", response_model=UserOut)
def get_route(user_id: str, db: DbDep, _: Manager) -> UserOut:
    """One user account (administrators)."""
    return accounts.user_out(accounts.load_user(db, user_id))


@router.post("/{user_id}/verify", response_model=ChangeOut)
def verify_route(user_id: str, body: VerifyIn, db: DbDep, actor: Verifier) -> ChangeOut:
    """Verify a pending professional: record the licence number you checked and the role, which
    activates the account. An admin role needs a second factor enrolled; nobody verifies themselves."""
    return accounts.verify_user(db, actor, user_id, body.licence_number, body.role)


@router.post("/{user_id}/role", response_model=ChangeOut)
def role_route(user_id: str, body: RoleIn, db: DbDep, actor: Manager) -> ChangeOut:
    """Change a user's role. All their sessions are revoked; the change is audited."""
    return accounts.set_role(db, actor, user_id, body.role)


@router.post("/{user_id}/disable", response_model=ChangeOut)
def disable_route(user_id: str, body: DisableIn, db: DbDep, actor: Manager) -> ChangeOut:
    """Disable an account (or reject a registration) with a reason. All its sessions are revoked."""
    return accounts.disable_user(db, actor, user_id, body.reason)


@router.post("/{user_id}/enable", response_model=ChangeOut)
def enable_route(user_id: str, db: DbDep, actor: Manager) -> ChangeOut:
    """Re-enable a disabled account: active again when it was verified before, else pending."""
    return accounts.enable_user(db, actor, user_id)


@router.post("/{user_id}/totp/reset", response_model=ChangeOut)
def totp_reset_route(user_id: str, db: DbDep, actor: Manager) -> ChangeOut:
    """Remove a user's second factor (e.g. a lost phone) so they can enrol a new one; revokes their
    sessions. Not for administrators (they must always have one)."""
    return accounts.reset_totp(db, actor, user_id)


@router.post("/{user_id}/password/reset", response_model=PasswordResetOut)
def password_reset_route(user_id: str, db: DbDep, actor: Manager) -> PasswordResetOut:
    """Reset a forgotten password: returns a new one-time password (shown only in this reply) that the
    user must change at the next sign-in. Revokes their sessions and clears their sign-in lockout."""
    return accounts.reset_password(db, actor, user_id)


__all__ = ["router"]
