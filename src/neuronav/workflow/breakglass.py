"""Break-glass: an administrator's time-limited, reasoned, audited read access to patient data.

An administrator holds no patient-data permission by role. In an emergency they open a
**break-glass** with a reason (at least 10 characters), optionally limited to one study: for at most
60 minutes their session gains the read-only :data:`~neuronav.security.permissions.BREAKGLASS_PERMISSIONS`
(the rules themselves are :func:`neuronav.security.permissions.open_breakglass`). Opening, closing and
every access through it are audited.

Grants live in the database (table ``breakglass_grants``, one row per session, with its expiry;
:class:`BreakGlassRegistry`), so every server process honours a grant opened through any other, and a
restart keeps it until it expires.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neuronav.db.models import BreakGlassGrantRow, StudyRow
from neuronav.db.session import get_row
from neuronav.security import permissions
from neuronav.security.access import Actor
from neuronav.security.errors import SecurityError
from neuronav.security.permissions import BreakGlass
from neuronav.workflow.access import audit_event


class BreakGlassRegistry:
    """Open break-glass grants, one per session, in the request's database session (table
    ``breakglass_grants``): what one server process opens, every other one sees."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def open(self, session_id: str, grant: BreakGlass) -> None:
        """Store ``grant`` for the session, replacing one already open; expired grants are pruned."""
        db = self.db
        db.execute(
            delete(BreakGlassGrantRow)
            .where(BreakGlassGrantRow.expires_at <= datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        stmt = select(BreakGlassGrantRow).where(BreakGlassGrantRow.session_id == session_id).with_for_update()
        row = db.scalar(stmt.execution_options(populate_existing=True))
        if row is None:
            try:
                with db.begin_nested():
                    db.add(_grant_row(session_id, grant))
                    db.flush()
                return
            except IntegrityError:  # opened at the same moment through another process: replace it
                row = db.scalar(stmt)
                if row is None:
                    raise
        for name, value in _grant_values(grant).items():
            setattr(row, name, value)
        db.flush()

    def get(self, session_id: str, now: datetime | None = None) -> BreakGlass | None:
        """The session's grant while it is open; None once it has expired."""
        row = self.db.get(BreakGlassGrantRow, session_id)
        if row is None:
            return None
        grant = _grant(row)
        return grant if grant.active(now or datetime.now(UTC)) else None

    def close(self, session_id: str) -> BreakGlass | None:
        """Remove the session's grant; the grant that was open (None if none was, or it had expired)."""
        row = self.db.get(BreakGlassGrantRow, session_id)
        if row is None:
            return None
        grant = _grant(row)
        self.db.delete(row)
        self.db.flush()
        return grant if grant.active(datetime.now(UTC)) else None


def _grant_values(grant: BreakGlass) -> dict[str, Any]:
    return {
        "breakglass_id": grant.breakglass_id,
        "user_id": grant.user_id,
        "role": str(grant.role),
        "reason": grant.reason,
        "study_id": grant.study_id,
        "opened_at": grant.opened_at,
        "expires_at": grant.expires_at,
    }


def _grant_row(session_id: str, grant: BreakGlass) -> BreakGlassGrantRow:
    return BreakGlassGrantRow(session_id=session_id, **_grant_values(grant))


def _grant(row: BreakGlassGrantRow) -> BreakGlass:
    return BreakGlass(
        breakglass_id=row.breakglass_id,
        user_id=row.user_id,
        role=permissions.parse_role(row.role),
        reason=row.reason,
        opened_at=row.opened_at,
        expires_at=row.expires_at,
        study_id=row.study_id,
    )


class BreakGlassOut(BaseModel):
    """An open break-glass as the API shows it."""

    breakglass_id: str
    reason: str
    opened_at: datetime
    expires_at: datetime
    study_id: str | None
    permissions: list[str]


def breakglass_out(grant: BreakGlass) -> BreakGlassOut:
    return BreakGlassOut(
        breakglass_id=grant.breakglass_id,
        reason=grant.reason,
        opened_at=grant.opened_at,
        expires_at=grant.expires_at,
        study_id=grant.study_id,
        permissions=sorted(str(p) for p in permissions.BREAKGLASS_PERMISSIONS),
    )


def open_breakglass(
    db: Session, registry: BreakGlassRegistry, actor: Actor, reason: str, study_id: str | None
) -> BreakGlass:
    """Open a break-glass for the actor's session (replacing one already open) and audit it."""
    if study_id is not None:
        get_row(db, StudyRow, study_id, "study")
    try:
        grant = permissions.open_breakglass(
            user_id=actor.id, role=actor.role, reason=reason, active=True, verified=actor.verified, study_id=study_id
        )
    except SecurityError as exc:
        audit_event(db, actor, "breakglass.open", outcome="denied", detail={"reason_refused": str(exc)})
        db.commit()
        raise
    registry.open(actor.session_id, grant)
    audit_event(
        db,
        actor,
        "breakglass.open",
        target_type="study" if study_id else "breakglass",
        target_id=study_id or grant.breakglass_id,
        detail={
            "breakglass_id": grant.breakglass_id,
            "reason": grant.reason,
            "expires_at": grant.expires_at.isoformat(),
            "study_id": study_id,
            "session_id": actor.session_id,
        },
    )
    return grant


def close_breakglass(db: Session, registry: BreakGlassRegistry, actor: Actor) -> bool:
    """Close the actor's break-glass (audited); whether one was open."""
    grant = registry.close(actor.session_id)
    if grant is not None:
        audit_event(db, actor, "breakglass.close", target_type="breakglass", target_id=grant.breakglass_id, detail={})
    return grant is not None


__all__ = ["BreakGlassOut", "BreakGlassRegistry", "breakglass_out", "close_breakglass", "open_breakglass"]
