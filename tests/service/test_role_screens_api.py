"""What each role's screens ask of the API answers that role (issue 16): the neurologist's worklist
(study:list, every study), the technician's worklist (study:status, their own uploads), and the audit
log naming the people it lists."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from neuronav.config import Settings
from tests.service.conftest import People, Person
from tests.service.test_deid_export import stored_study


def test_worklist_lists_what_each_role_may_see(
    app: FastAPI, client: TestClient, settings: Settings, people: People, staff: dict[str, Person]
) -> None:
    tech, other = staff["technician"], people.create("technician")
    mine, theirs = stored_study(app, settings, tech, files=1), stored_study(app, settings, other, files=1)
    listed = {}
    for role in ("technician", "radiologist", "neurologist"):
        page = client.get("/api/studies", headers=staff[role].headers)
        assert page.status_code == 200, f"{role}: {page.text}"
        listed[role] = {s["id"] for s in page.json()["items"]}
    assert listed["technician"] == {mine}  # the status of their own uploads
    assert listed["radiologist"] == listed["neurologist"] == {mine, theirs}  # study:list: every study
    refused = client.get("/api/studies", headers=staff["admin"].headers)  # no patient data by role
    assert refused.status_code == 403 and "study:list" in refused.json()["detail"]


def test_audit_log_names_the_actor_and_the_user_acted_on(client: TestClient, staff: dict[str, Person]) -> None:
    admin, neuro = staff["admin"], staff["neurologist"]
    changed = client.post(f"/api/admin/users/{neuro.id}/role", json={"role": "radiologist"}, headers=admin.headers)
    assert changed.status_code == 200, changed.text
    page = client.get("/api/audit", params={"action": "user.role_change"}, headers=admin.headers)
    assert page.status_code == 200, page.text
    event = page.json()["items"][0]
    assert event["actor_id"] == admin.id and event["target_id"] == neuro.id
    names = (
        client.get(f"/api/admin/users/{admin.id}", headers=admin.headers).json()["display_name"],
        client.get(f"/api/admin/users/{neuro.id}", headers=admin.headers).json()["display_name"],
    )
    assert (event["actor_name"], event["target_name"]) == names
    anonymous = client.get("/api/audit", params={"action": "login"}, headers=admin.headers).json()["items"]
    assert all(e["actor_name"] is None for e in anonymous if e["actor_id"] is None)
