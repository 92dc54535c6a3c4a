"""The audit trail: an append-only, hash-chained log of every access to patient data and every
security event (who, role, when, from where, what, outcome).

Each event's ``hash`` is SHA-256 over the previous event's hash and the event's own canonical JSON
(sequence number included), so altering, deleting or reordering any stored event breaks the chain
from that point: :func:`verify` names the first event where it breaks. Appends are serialised so two
writers cannot fork the chain: on PostgreSQL by a transaction-scoped advisory lock taken before the
last hash is read; on SQLite every transaction begins IMMEDIATE (:mod:`neuronav.db.session`), so
the database's single writer lock is held from the read of the last hash to the commit. ``detail``
must never hold PHI: ids, counts and reasons only. :func:`to_fhir` exports an event as a FHIR R5
AuditEvent.

Append-only is enforced by the database too (migration 0006): triggers refuse UPDATE and DELETE of
``audit_events`` (and TRUNCATE on PostgreSQL) through any connection, the application's included.
Whoever can drop or disable those triggers (the schema's owner) could still rewrite events: the chain
shows where. Deleting the newest events leaves an intact but shorter chain: an :class:`Anchor` (the
newest event's number and hash, ``neuronav audit head``) kept outside the database shows that, given
to :func:`verify` later (``neuronav audit verify --anchor``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from neuronav.db.models import AuditEventRow

GENESIS = "0" * 64
Outcome = Literal["success", "failure", "denied"]
_LOCK_KEY = 0x4E4E_4155  # "NNAU": the advisory lock of the audit chain (PostgreSQL)


def _canonical(event: AuditEventRow) -> bytes:
    at = event.at  # aware UTC (db.models.UTCDateTime)
    body = {
        "seq": event.seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "client": event.client,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "detail": event.detail,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(prev_hash: str, event: AuditEventRow) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + _canonical(event)).hexdigest()


def record(
    session: Session,
    action: str,
    *,
    outcome: Outcome = "success",
    actor_id: str | None = None,
    actor_role: str | None = None,
    client: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEventRow:
    """Append one event (flushed in the caller's transaction; committed with it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = session.execute(
        select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
    ).first()
    prev_seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
    event = AuditEventRow(
        seq=prev_seq + 1,
        at=datetime.now(UTC),
        actor_id=actor_id,
        actor_role=actor_role,
        client=client,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        detail=dict(detail or {}),
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = chain_hash(prev_hash, event)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"audit event {self.seq}: {self.problem}"


@dataclass(frozen=True)
class Anchor:
    """An event's sequence number and hash, kept outside the database (``neuronav audit head``): the
    chain must still hold that event with that hash, so cutting off or rewriting the tail shows."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or int(seq) < 1 or len(digest) != 64:
            raise ValueError(f"an audit anchor is SEQ:SHA256 as `neuronav audit head` prints it, not {text!r}")
        try:
            bytes.fromhex(digest)
        except ValueError as exc:
            raise ValueError(f"an audit anchor's hash is 64 hex digits, not {digest!r}") from exc
        return cls(int(seq), digest.lower())


def head(session: Session) -> Anchor | None:
    """The newest event as an :class:`Anchor` (None while the log is empty)."""
    last = session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq.desc()).limit(1)).first()
    return Anchor(last.seq, last.hash) if last is not None else None


def verify(session: Session, *, batch: int = 5000, anchor: Anchor | None = None) -> ChainProblem | None:
    """The first altered, deleted, inserted or reordered event; None when the chain is intact (and holds
    ``anchor``, an event recorded earlier outside the database, unchanged)."""
    prev_hash, expected_seq = GENESIS, 1
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEventRow).where(AuditEventRow.seq > last_seq).order_by(AuditEventRow.seq).limit(batch)
        ).all()
        if not rows:
            return _check_anchor(session, anchor, last_seq)
        for event in rows:
            if event.seq != expected_seq:
                return ChainProblem(expected_seq, f"missing (the next stored event is {event.seq}): deleted")
            if event.prev_hash != prev_hash:
                return ChainProblem(event.seq, "does not follow the event before it: deleted, inserted or reordered")
            if chain_hash(prev_hash, event) != event.hash:
                return ChainProblem(event.seq, "its content was altered after it was written")
            prev_hash, expected_seq, last_seq = event.hash, event.seq + 1, event.seq
        session.expunge_all()


def _check_anchor(session: Session, anchor: Anchor | None, last_seq: int) -> ChainProblem | None:
    if anchor is None:
        return None
    if anchor.seq > last_seq:
        return ChainProblem(
            anchor.seq, f"recorded earlier as {anchor}, now missing: the newest events were cut off (last {last_seq})"
        )
    event = session.get(AuditEventRow, anchor.seq)
    if event is None or event.hash != anchor.hash:
        return ChainProblem(anchor.seq, f"differs from {anchor} recorded earlier: the log was rewritten from there")
    return None


_FHIR_ACTIONS = {"read": "R", "export": "R", "create": "C", "upload": "C", "update": "U", "edit": "U", "sign": "U"}


def to_fhir(event: AuditEventRow) -> dict[str, Any]:
    """The event as a FHIR R5 AuditEvent resource (JSON)."""
    verb = event.action.rsplit(".", 1)[-1]
    at = event.at
    outcome_code = {"success": "0", "failure": "8", "denied": "4"}[event.outcome]
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"neuronav-audit-{event.seq}",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                        "code": "rest" if not event.action.startswith("login") else "110114",
                        "display": "RESTful Operation"
                        if not event.action.startswith("login")
                        else "User Authentication",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "urn:neuronav:audit-action", "code": event.action}]},
        "action": _FHIR_ACTIONS.get(verb, "E"),
        "recorded": at.astimezone(UTC).isoformat(),
        "outcome": {
            "code": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-outcome",
                "code": outcome_code,
            }
        },
        "agent": [
            {
                "who": {"identifier": {"system": "urn:neuronav:user", "value": event.actor_id or "anonymous"}},
                "requestor": True,
                **({"role": [{"text": event.actor_role}]} if event.actor_role else {}),
                **({"networkString": event.client} if event.client else {}),
            }
        ],
        "source": {"observer": {"display": "NeuroNav"}},
        "extension": [
            {"url": "urn:neuronav:audit-hash", "valueString": event.hash},
            {"url": "urn:neuronav:audit-prev-hash", "valueString": event.prev_hash},
        ],
    }
    if event.target_id:
        resource["entity"] = [
            {
                "what": {
                    "identifier": {"system": f"urn:neuronav:{event.target_type or 'object'}", "value": event.target_id}
                }
            }
        ]
    return resource
