"""Administration (``/api/admin``): the break-glass.

An administrator holds no patient-data permission by role. In an emergency they open a
**break-glass** with a reason (at least 10 characters), optionally limited to one study: for at most
60 minutes their session gains the read-only :data:`~neuronav.security.permissions.BREAKGLASS_PERMISSIONS`.
Opening, closing and every access through it are audited. Grants are stored in the database, one
per session (table ``breakglass_grants``, :class:`~neuronav.service.deps.BreakGlassRegistry`): every
server process honours them, a restart keeps them, and they end at their expiry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from neuronav.db.models import StudyRow
from neuronav.security import permissions
from neuronav.security.errors import SecurityError
from neuronav.security.permissions import BREAKGLASS_MIN_REASON, BreakGlass, Permission
from neuronav.service.deps import (
    BreakGlassDep,
    BreakGlassRegistry,
    CurrentUser,
    DbDep,
    NotFoundError,
    audit_event,
    requires,
)

router = APIRouter(prefix="/api/admin", tags=["admin"])

BreakGlassUser = Annotated[CurrentUser, Depends(requires(Permission.BREAKGLASS_USE))]


class BreakGlassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=1000, description="Why you need this patient's data (audited).")
    study_id: str | None = Field(default=None, max_length=32, description="Limit the access to this study.")

    @field_validator("reason")
    @classmethod
    def _reason_long_enough(cls, value: str) -> str:
        text = " ".join(value.split())
        if len(text) < BREAKGLASS_MIN_REASON:
            raise ValueError(f"a break-glass needs a reason of at least {BREAKGLASS_MIN_REASON} characters")
        return text


class BreakGlassOut(BaseModel):
    breakglass_id: str
    reason: str
    opened_at: datetime
    expires_at: datetime
    study_id: str | None
    permissions: list[str]


class ClosedOut(BaseModel):
    closed: bool


def _out(grant: BreakGlass) -> BreakGlassOut:
    return BreakGlassOut(
        breakglass_id=grant.breakglass_id,
        reason=grant.reason,
        opened_at=grant.opened_at,
        expires_at=grant.expires_at,
        study_id=grant.study_id,
        permissions=sorted(str(p) for p in permissions.BREAKGLASS_PERMISSIONS),
    )


def open_breakglass(
    db: Session, registry: BreakGlassRegistry, user: CurrentUser, reason: str, study_id: str | None
) -> BreakGlass:
    """Open a break-glass for the caller's session (replacing one already open) and audit it."""
    if study_id is not None and db.get(StudyRow, study_id) is None:
        raise NotFoundError(f"no study {study_id}")
    try:
        grant = permissions.open_breakglass(
            user_id=user.id, role=user.role, reason=reason, active=True, verified=user.verified, study_id=study_id
        )
    except SecurityError as exc:
        audit_event(db, user, "breakglass.open", outcome="denied", detail={"reason_refused": str(exc)})
        db.commit()
        raise
    registry.open(user.session_id, grant)
    audit_event(
        db,
        user,
        "breakglass.open",
        target_type="study" if study_id else "breakglass",
        target_id=study_id or grant.breakglass_id,
        detail={
            "breakglass_id": grant.breakglass_id,
            "reason": grant.reason,
            "expires_at": grant.expires_at.isoformat(),
            "study_id": study_id,
            "session_id": user.session_id,
        },
    )
    return grant


def close_breakglass(db: Session, registry: BreakGlassRegistry, user: CurrentUser) -> bool:
    grant = registry.close(user.session_id)
    if grant is not None:
        audit_event(db, user, "breakglass.close", target_type="breakglass", target_id=grant.breakglass_id, detail={})
    return grant is not None


@router.post("/breakglass", response_model=BreakGlassOut, status_code=201)
def open_route(body: BreakGlassIn, db: DbDep, registry: BreakGlassDep, user: BreakGlassUser) -> BreakGlassOut:
    """Open a break-glass: with a reason (≥ 10 characters), optionally for one study, this session may
    read patient data (no export, edits or annotations) for 60 minutes. Audited, as is every access."""
    return _out(open_breakglass(db, registry, user, body.reason, body.study_id))


@router.get("/breakglass", response_model=BreakGlassOut | None)
def current_route(user: BreakGlassUser) -> BreakGlassOut | None:
    """The break-glass open for this session, or null."""
    return _out(user.breakglass) if user.breakglass is not None else None


@router.delete("/breakglass", response_model=ClosedOut)
def close_route(db: DbDep, registry: BreakGlassDep, user: BreakGlassUser) -> ClosedOut:
    """Close this session's break-glass before it expires (audited)."""
    return ClosedOut(closed=close_breakglass(db, registry, user))


__all__ = ["close_breakglass", "open_breakglass", "router"]
