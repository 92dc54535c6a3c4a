"""Administration (``/api/admin``): the break-glass.

An administrator holds no patient-data permission by role. In an emergency they open a
**break-glass** with a reason (at least 10 characters), optionally limited to one study: for at most
60 minutes their session gains the read-only :data:`~neuronav.security.permissions.BREAKGLASS_PERMISSIONS`.
Thin: opening, closing, storing and auditing a grant is :mod:`neuronav.workflow.breakglass`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from neuronav.security.access import Actor
from neuronav.security.permissions import BREAKGLASS_MIN_REASON, Permission
from neuronav.service.deps import AuthFirstRoute, BreakGlassDep, DbDep, requires
from neuronav.workflow.breakglass import BreakGlassOut, breakglass_out, close_breakglass, open_breakglass

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=AuthFirstRoute)

# BREAKGLASS_MIN_REASON characters other than white space, anywhere in the text
REASON_PATTERN = rf"\S(\s*\S){{{BREAKGLASS_MIN_REASON - 1}}}"
BreakGlassUser = Annotated[Actor, Depends(requires(Permission.BREAKGLASS_USE))]


class BreakGlassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        max_length=1000,
        pattern=REASON_PATTERN,
        description=f"Why you need this patient's data (audited): at least {BREAKGLASS_MIN_REASON} characters "
        "besides white space.",
    )
    study_id: str | None = Field(default=None, max_length=32, description="Limit the access to this study.")

    @field_validator("reason")
    @classmethod
    def _reason_long_enough(cls, value: str) -> str:
        text = " ".join(value.split())
        if len(text.replace(" ", "")) < BREAKGLASS_MIN_REASON:
            raise ValueError(f"a break-glass needs a reason of at least {BREAKGLASS_MIN_REASON} characters")
        return text


class ClosedOut(BaseModel):
    closed: bool


@router.post("/breakglass", response_model=BreakGlassOut, status_code=201)
def open_route(body: BreakGlassIn, db: DbDep, registry: BreakGlassDep, user: BreakGlassUser) -> BreakGlassOut:
    """Open a break-glass: with a reason (≥ 10 characters), optionally for one study, this session may
    read patient data (no export, edits or annotations) for 60 minutes. Audited, as is every access."""
    return breakglass_out(open_breakglass(db, registry, user, body.reason, body.study_id))


@router.get("/breakglass", response_model=BreakGlassOut | None)
def current_route(user: BreakGlassUser) -> BreakGlassOut | None:
    """The break-glass open for this session, or null."""
    return breakglass_out(user.breakglass) if user.breakglass is not None else None


@router.delete("/breakglass", response_model=ClosedOut)
def close_route(db: DbDep, registry: BreakGlassDep, user: BreakGlassUser) -> ClosedOut:
    """Close this session's break-glass before it expires (audited)."""
    return ClosedOut(closed=close_breakglass(db, registry, user))


__all__ = ["router"]
