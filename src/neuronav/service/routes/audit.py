"""The audit log for administrators (``/api/audit``): search it, verify its hash chain, export FHIR.

Reading the log is itself audited (``audit.read``, ``audit.verify``, ``audit.export``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.db.models import AuditEventRow
from neuronav.errors import InputError
from neuronav.security.permissions import Permission
from neuronav.service.deps import CurrentUser, DbDep, audit_event, requires, utc

router = APIRouter(prefix="/api/audit", tags=["audit"])

Auditor = Annotated[CurrentUser, Depends(requires(Permission.AUDIT_READ))]
OutcomeFilter = Literal["success", "failure", "denied"]
_FHIR_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c1e-9a55-6e6575726f6e")  # fixed: the same event, the same fullUrl


class EventOut(BaseModel):
    seq: int
    at: datetime
    actor_id: str | None
    actor_role: str | None
    client: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    detail: dict[str, Any]
    hash: str


class EventPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[EventOut]


class ProblemOut(BaseModel):
    seq: int
    problem: str


class VerifyOut(BaseModel):
    intact: bool
    events: int
    first_broken: ProblemOut | None


def _filtered(
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[AuditEventRow]:
    since, until = utc(since), utc(until)
    if since is not None and until is not None and until < since:
        raise InputError("'until' is before 'since'")
    stmt = select(AuditEventRow)
    if actor is not None:
        stmt = stmt.where(AuditEventRow.actor_id == actor)
    if action is not None:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(AuditEventRow.action.like(prefix + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditEventRow.action == action)
    if outcome is not None:
        stmt = stmt.where(AuditEventRow.outcome == outcome)
    if target_id is not None:
        stmt = stmt.where(AuditEventRow.target_id == target_id)
    if since is not None:
        stmt = stmt.where(AuditEventRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEventRow.at < until)
    return stmt


def _out(event: AuditEventRow) -> EventOut:
    return EventOut(
        seq=event.seq,
        at=utc(event.at) or event.at,
        actor_id=event.actor_id,
        actor_role=event.actor_role,
        client=event.client,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        outcome=event.outcome,
        detail=event.detail,
        hash=event.hash,
    )


def search(db: Session, user: CurrentUser, *, limit: int, offset: int, newest_first: bool, **filters: Any) -> EventPage:
    """Events matching the filters (exact actor id / outcome / target id; action exact or ``prefix*``)."""
    stmt = _filtered(**filters)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = AuditEventRow.seq.desc() if newest_first else AuditEventRow.seq.asc()
    rows = db.scalars(stmt.order_by(order).limit(limit).offset(offset)).all()
    page = EventPage(total=total, limit=limit, offset=offset, items=[_out(e) for e in rows])
    audit_event(db, user, "audit.read", detail={"filters": _plain(filters), "returned": len(rows)})
    return page


def _plain(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None}


def verify_chain(db: Session, user: CurrentUser) -> VerifyOut:
    """Check the whole hash chain; names the first altered, deleted, inserted or reordered event."""
    problem = audit.verify(db)
    count = db.scalar(select(func.count()).select_from(AuditEventRow)) or 0
    audit_event(
        db,
        user,
        "audit.verify",
        outcome="success" if problem is None else "failure",
        detail={"events": count, "first_broken": problem.seq if problem else None},
    )
    return VerifyOut(
        intact=problem is None,
        events=count,
        first_broken=ProblemOut(seq=problem.seq, problem=problem.problem) if problem else None,
    )


def fhir_bundle(
    db: Session, user: CurrentUser, *, since: datetime | None, until: datetime | None, limit: int, offset: int
) -> dict[str, Any]:
    """A FHIR ``Bundle`` (type collection) of R5 AuditEvents in ``[since, until)``, oldest first."""
    stmt = _filtered(since=since, until=until)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(AuditEventRow.seq).limit(limit).offset(offset)).all()
    audit_event(
        db, user, "audit.export", detail={"filters": _plain({"since": since, "until": until}), "returned": len(rows)}
    )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(),
        "total": total,
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid5(_FHIR_NAMESPACE, e.hash)}", "resource": audit.to_fhir(e)} for e in rows
        ],
    }
    if offset + len(rows) < total:
        bundle["link"] = [{"relation": "next", "url": f"?offset={offset + len(rows)}&limit={limit}"}]
    return bundle


Since = Annotated[datetime | None, Query(description="From this time (inclusive, ISO 8601; UTC if no zone).")]
Until = Annotated[datetime | None, Query(description="Before this time (exclusive).")]


@router.get("", response_model=EventPage)
def search_route(
    db: DbDep,
    user: Auditor,
    actor: Annotated[str | None, Query(max_length=32, description="Actor's user id.")] = None,
    action: Annotated[str | None, Query(max_length=61, description="Action, e.g. login, or a prefix: user.*")] = None,
    outcome: Annotated[OutcomeFilter | None, Query()] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    order: Annotated[Literal["newest", "oldest"], Query()] = "newest",
) -> EventPage:
    """Search the audit log (administrators): who did what, when, from where, with what outcome."""
    return search(
        db,
        user,
        limit=limit,
        offset=offset,
        newest_first=order == "newest",
        actor=actor,
        action=action,
        outcome=outcome,
        target_id=target_id,
        since=since,
        until=until,
    )


@router.get("/verify", response_model=VerifyOut)
def verify_route(db: DbDep, user: Auditor) -> VerifyOut:
    """Verify the audit log's hash chain from the first event; reports the first broken event."""
    return verify_chain(db, user)


@router.get("/fhir", response_class=JSONResponse, responses={200: {"content": {"application/fhir+json": {}}}})
def fhir_route(
    db: DbDep,
    user: Auditor,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    """The audit events of a time range as a FHIR R5 Bundle of AuditEvent resources."""
    bundle = fhir_bundle(db, user, since=since, until=until, limit=limit, offset=offset)
    return JSONResponse(bundle, media_type="application/fhir+json")


__all__ = ["fhir_bundle", "router", "search", "verify_chain"]
