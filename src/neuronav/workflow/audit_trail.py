"""The audit log read by administrators: search it, verify its hash chain, export it as FHIR.

Reading the log is itself audited (``audit.read``, ``audit.verify``, ``audit.export``). The log and
its chain are :mod:`neuronav.audit`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.db.models import AuditEventRow, UserRow
from neuronav.errors import InputError
from neuronav.security.access import Actor
from neuronav.workflow.access import audit_event

_FHIR_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c1e-9a55-6e6575726f6e")  # fixed: the same event, the same fullUrl


def _utc(value: datetime | None) -> datetime | None:
    """A time given without a zone is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EventOut(BaseModel):
    seq: int
    at: datetime
    actor_id: str | None
    actor_role: str | None
    actor_name: str | None = None  # the account's display name (None: anonymous, or the account is gone)
    client: str | None
    action: str
    target_type: str | None
    target_id: str | None
    target_name: str | None = None  # a user target's display name
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
    actor_id: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[AuditEventRow]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until < since:
        raise InputError("'until' is before 'since'")
    stmt = select(AuditEventRow)
    if actor_id is not None:
        stmt = stmt.where(AuditEventRow.actor_id == actor_id)
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


def event_out(event: AuditEventRow) -> EventOut:
    return EventOut(
        seq=event.seq,
        at=event.at,
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


def search(db: Session, actor: Actor, *, limit: int, offset: int, newest_first: bool, **filters: Any) -> EventPage:
    """Events matching the filters (exact actor id / outcome / target id; action exact or ``prefix*``)."""
    stmt = _filtered(**filters)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = AuditEventRow.seq.desc() if newest_first else AuditEventRow.seq.asc()
    rows = db.scalars(stmt.order_by(order).limit(limit).offset(offset)).all()
    names = _user_names(db, {e.actor_id for e in rows} | {e.target_id for e in rows if e.target_type == "user"})
    items = [
        event_out(e).model_copy(
            update={
                "actor_name": names.get(e.actor_id or ""),
                "target_name": names.get(e.target_id or "") if e.target_type == "user" else None,
            }
        )
        for e in rows
    ]
    page = EventPage(total=total, limit=limit, offset=offset, items=items)
    audit_event(db, actor, "audit.read", detail={"filters": _plain(filters), "returned": len(rows)})
    return page


def _user_names(db: Session, ids: set[str | None]) -> dict[str, str]:
    """The display names of the accounts among ``ids`` (one query): the log shows who, not an id."""
    wanted = sorted(i for i in ids if i)
    if not wanted:
        return {}
    rows = db.execute(select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(wanted))).all()
    return {row.id: row.display_name for row in rows}


def _plain(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None}


def verify_chain(db: Session, actor: Actor) -> VerifyOut:
    """Check the whole hash chain; names the first altered, deleted, inserted or reordered event."""
    problem = audit.verify(db)
    count = db.scalar(select(func.count()).select_from(AuditEventRow)) or 0
    audit_event(
        db,
        actor,
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
    db: Session, actor: Actor, *, since: datetime | None, until: datetime | None, limit: int, offset: int
) -> dict[str, Any]:
    """A FHIR ``Bundle`` (type collection) of R5 AuditEvents in ``[since, until)``, oldest first."""
    stmt = _filtered(since=since, until=until)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.scalars(stmt.order_by(AuditEventRow.seq).limit(limit).offset(offset)).all()
    audit_event(
        db, actor, "audit.export", detail={"filters": _plain({"since": since, "until": until}), "returned": len(rows)}
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


__all__ = ["EventOut", "EventPage", "VerifyOut", "fhir_bundle", "search", "verify_chain"]
