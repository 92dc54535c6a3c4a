"""The audit chain: every event hash-chained; verify names the first altered, deleted or reordered one."""

from __future__ import annotations

import concurrent.futures

import pytest
from sqlalchemy import delete, select, text, update

from neuronav import audit
from neuronav.db.models import AuditEventRow
from neuronav.db.session import migrate, session_scope
from tests.conftest import lift_audit_append_only


def write_events(url: str, n: int) -> None:
    with session_scope(url) as s:
        for i in range(n):
            audit.record(
                s,
                "study.read",
                actor_id=f"user{i % 3}",
                actor_role="radiologist",
                client="10.0.0.1",
                target_type="study",
                target_id=f"s{i}",
                detail={"i": i},
            )


def test_an_intact_chain_verifies(db_url: str) -> None:
    migrate(db_url)
    write_events(db_url, 20)
    with session_scope(db_url) as s:
        assert audit.verify(s) is None
        assert [e.seq for e in s.scalars(select(AuditEventRow).order_by(AuditEventRow.seq))] == list(range(1, 21))


@pytest.mark.parametrize("tamper", ["alter", "delete", "reorder", "delete_last_two_and_rechain_one"])
def test_tampering_is_found_at_the_first_broken_event(db_url: str, tamper: str) -> None:
    migrate(db_url)
    write_events(db_url, 10)
    with session_scope(db_url) as s:
        lift_audit_append_only(s)  # someone with the schema owner's rights
        if tamper == "alter":
            s.execute(update(AuditEventRow).where(AuditEventRow.seq == 4).values(outcome="denied"))
            expected, word = 4, "altered"
        elif tamper == "delete":
            s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 6))
            expected, word = 6, "deleted"
        elif tamper == "reorder":
            e3, e5 = s.get(AuditEventRow, 3), s.get(AuditEventRow, 5)
            assert e3 is not None and e5 is not None
            a3 = (e3.action, e3.target_id, e3.detail, e3.hash, e3.prev_hash)
            a5 = (e5.action, e5.target_id, e5.detail, e5.hash, e5.prev_hash)
            s.execute(update(AuditEventRow).where(AuditEventRow.seq == 3).values(hash="tmp"))
            s.execute(
                update(AuditEventRow)
                .where(AuditEventRow.seq == 5)
                .values(action=a3[0], target_id=a3[1], detail=a3[2], hash=a3[3], prev_hash=a3[4])
            )
            s.execute(
                update(AuditEventRow)
                .where(AuditEventRow.seq == 3)
                .values(action=a5[0], target_id=a5[1], detail=a5[2], hash=a5[3], prev_hash=a5[4])
            )
            expected, word = 3, "reordered"
        else:  # an attacker deletes the newest events and forges a new one on top: still the old head is gone
            s.execute(delete(AuditEventRow).where(AuditEventRow.seq >= 9))
            expected, word = None, ""
    with session_scope(db_url) as s:
        problem = audit.verify(s)
        if expected is None:
            assert problem is None  # truncating the tail shows only against an anchor kept elsewhere (below)
        else:
            assert problem is not None and problem.seq == expected and word in str(problem), problem


@pytest.mark.parametrize("statement", ["update", "delete"])
def test_the_database_refuses_to_change_or_delete_an_event(db_url: str, statement: str) -> None:
    """Through the application's own connection, an audit event can be added, never changed or removed."""
    from sqlalchemy.exc import DBAPIError

    migrate(db_url)
    write_events(db_url, 3)
    change = (
        update(AuditEventRow).where(AuditEventRow.seq == 2).values(outcome="denied")
        if statement == "update"
        else delete(AuditEventRow).where(AuditEventRow.seq == 3)
    )
    with pytest.raises(DBAPIError, match="audit_events is append-only"), session_scope(db_url) as s:
        s.execute(change)
    if "postgresql" in db_url:
        with pytest.raises(DBAPIError, match="audit_events is append-only"), session_scope(db_url) as s:
            s.execute(text("TRUNCATE audit_events"))
    with session_scope(db_url) as s:
        assert audit.verify(s) is None
        assert [(e.seq, e.outcome) for e in s.scalars(select(AuditEventRow).order_by(AuditEventRow.seq))] == [
            (1, "success"),
            (2, "success"),
            (3, "success"),
        ]
    write_events(db_url, 1)  # appending still works
    with session_scope(db_url) as s:
        assert audit.verify(s) is None and len(s.scalars(select(AuditEventRow)).all()) == 4


def test_an_anchor_kept_elsewhere_shows_a_cut_off_or_rewritten_tail(db_url: str) -> None:
    migrate(db_url)
    write_events(db_url, 10)
    with session_scope(db_url) as s:
        kept = audit.head(s)
        assert kept is not None and kept.seq == 10
        assert audit.verify(s, anchor=kept) is None
        assert audit.Anchor.parse(str(kept)) == kept
    with session_scope(db_url) as s:  # someone with the schema owner's rights cuts off the newest events
        lift_audit_append_only(s)
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq >= 9))
    with session_scope(db_url) as s:
        assert audit.verify(s) is None  # the shorter chain is intact in itself
        problem = audit.verify(s, anchor=kept)
        assert problem is not None and problem.seq == 10 and "cut off" in str(problem), problem
    write_events(db_url, 2)  # and forges two new ones in their place, correctly chained
    with session_scope(db_url) as s:
        assert audit.verify(s) is None
        problem = audit.verify(s, anchor=kept)
        assert problem is not None and problem.seq == 10 and "rewritten" in str(problem), problem
    for bad in ("10", f"0:{'a' * 64}", "3:abc", f"3:{'z' * 64}"):
        with pytest.raises(ValueError, match="anchor"):
            audit.Anchor.parse(bad)


def test_concurrent_writers_keep_one_chain(db_url: str) -> None:
    migrate(db_url)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: write_events(db_url, 10), range(4)))
    with session_scope(db_url) as s:
        assert audit.verify(s) is None
        assert len(s.scalars(select(AuditEventRow)).all()) == 40


def test_fhir_audit_event_export_validates(sqlite_url: str) -> None:
    from fhir.resources.auditevent import AuditEvent as FhirAuditEvent

    migrate(sqlite_url)
    with session_scope(sqlite_url) as s:
        ev = audit.record(s, "login", outcome="failure", client="10.1.1.1", detail={"reason": "bad password"})
        resource = audit.to_fhir(ev)
    FhirAuditEvent.model_validate(resource)
    assert resource["outcome"]["code"]["code"] == "4" or resource["outcome"]["code"]["code"] == "8"
    assert resource["agent"][0]["networkString"] == "10.1.1.1"
