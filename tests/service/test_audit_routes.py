"""The audit routes: search with filters and pages, chain verification (and tampering found), FHIR export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from neuronav.config import Settings
from neuronav.db.models import AuditEventRow
from neuronav.db.session import session_scope
from tests.conftest import lift_audit_append_only
from tests.service.conftest import People, Person, audit_events


def test_only_admins_read_the_audit_log(client: TestClient, staff: dict[str, Person]) -> None:
    for role in ("technician", "radiologist", "neurologist"):
        for path in ("/api/audit", "/api/audit/verify", "/api/audit/fhir"):
            assert client.get(path, headers=staff[role].headers).status_code == 403, (role, path)
    assert client.get("/api/audit").status_code == 401


def test_search_filters_and_pages(client: TestClient, people: People, staff: dict[str, Person]) -> None:
    headers = staff["admin"].headers
    radiologist = staff["radiologist"]
    client.post("/api/auth/login", json={"email": radiologist.email, "password": "wrong password, sorry"})
    client.cookies.clear()

    logins = client.get("/api/audit", params={"action": "login"}, headers=headers).json()
    assert logins["total"] == 5  # four staff sign-ins and the failure
    assert all(e["action"] == "login" for e in logins["items"])
    assert logins["items"][0]["outcome"] == "failure"  # newest first

    failures = client.get("/api/audit", params={"action": "login", "outcome": "failure"}, headers=headers).json()
    assert failures["total"] == 1 and failures["items"][0]["detail"]["reason"] == "bad password"
    assert failures["items"][0]["client"] == "testclient" and failures["items"][0]["target_id"] == radiologist.id

    mine = client.get("/api/audit", params={"actor": radiologist.id}, headers=headers).json()
    assert mine["total"] == 1 and mine["items"][0]["actor_role"] == "radiologist"

    created = client.get("/api/audit", params={"action": "user.*"}, headers=headers).json()
    assert created["total"] == 4 and {e["action"] for e in created["items"]} == {"user.create"}

    oldest = client.get("/api/audit", params={"order": "oldest", "limit": 2}, headers=headers).json()
    assert [e["seq"] for e in oldest["items"]] == [1, 2] and oldest["total"] >= 10
    second_page = client.get("/api/audit", params={"order": "oldest", "limit": 2, "offset": 2}, headers=headers).json()
    assert [e["seq"] for e in second_page["items"]] == [3, 4]

    now = datetime.now(UTC)
    future = client.get("/api/audit", params={"since": (now + timedelta(hours=1)).isoformat()}, headers=headers).json()
    assert future["total"] == 0
    recent = client.get(
        "/api/audit",
        params={"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()},
        headers=headers,
    ).json()
    assert recent["total"] >= 10
    backwards = client.get(
        "/api/audit",
        params={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert backwards.status_code == 400
    assert client.get("/api/audit", params={"outcome": "maybe"}, headers=headers).status_code == 422
    assert client.get("/api/audit", params={"limit": 501}, headers=headers).status_code == 422


def test_reading_the_log_is_itself_audited(client: TestClient, staff: dict[str, Person], settings: Settings) -> None:
    client.get("/api/audit", params={"action": "login"}, headers=staff["admin"].headers)
    event = audit_events(settings, "audit.read")[-1]
    assert event.actor_id == staff["admin"].id and event.detail["filters"] == {"action": "login"}


def test_verify_reports_an_intact_chain_then_the_first_tampered_event(
    client: TestClient, staff: dict[str, Person], settings: Settings
) -> None:
    headers = staff["admin"].headers
    intact = client.get("/api/audit/verify", headers=headers).json()
    assert intact["intact"] is True and intact["first_broken"] is None and intact["events"] == 8

    with session_scope(settings.database) as db:  # someone with the schema owner's rights rewrites history
        lift_audit_append_only(db)
        db.execute(update(AuditEventRow).where(AuditEventRow.seq == 3).values(outcome="failure"))
    broken = client.get("/api/audit/verify", headers=headers).json()
    assert broken["intact"] is False
    assert broken["first_broken"]["seq"] == 3 and "altered" in broken["first_broken"]["problem"]
    event = audit_events(settings, "audit.verify")[-1]
    assert event.outcome == "failure" and event.detail["first_broken"] == 3


def test_fhir_export_of_a_time_range(client: TestClient, staff: dict[str, Person]) -> None:
    from fhir.resources.auditevent import AuditEvent as FhirAuditEvent

    headers = staff["admin"].headers
    now = datetime.now(UTC)
    response = client.get(
        "/api/audit/fhir",
        params={"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert bundle["total"] == len(bundle["entry"]) >= 8
    for entry in bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        FhirAuditEvent.model_validate(entry["resource"])
    logins = [e["resource"] for e in bundle["entry"] if e["resource"]["code"]["coding"][0]["code"] == "login"]
    assert len(logins) == 4 and all(r["agent"][0]["networkString"] == "testclient" for r in logins)

    paged = client.get("/api/audit/fhir", params={"limit": 3}, headers=headers).json()
    assert len(paged["entry"]) == 3 and paged["link"][0]["relation"] == "next"
    empty = client.get("/api/audit/fhir", params={"since": (now + timedelta(days=1)).isoformat()}, headers=headers)
    assert empty.json()["total"] == 0 and empty.json()["entry"] == []
