"""What a report's signature opens, on the routes around the viewer and the report: a neurologist cannot
measure on an AI image of an unsigned report (it would map the segmentation box by box), and an
administrator's break-glass (read-only, no export) does not export a report, not even its PDF."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from neuronav.config import Settings
from tests.service.conftest import People, audit_events
from tests.service.test_route_walk import _objects


def test_no_roi_statistics_on_an_ai_image_before_the_report_is_signed(
    client: TestClient, app: FastAPI, people: People, settings: Settings
) -> None:
    tech, neuro, rad = people.create("technician"), people.create("neurologist"), people.create("radiologist")
    ids = _objects(app, settings, tech, neuro, rad)
    roi = {"kind": "roi", "points_mm": [[-20, -20, 0], [20, 20, 0]], "plane": "axial"}
    for image in ("segmentation", "heatmap"):
        refused = client.post(
            f"/api/studies/{ids['study_id']}/annotations",
            json={**roi, "image": image},
            headers=people.direct_headers(neuro),
        )
        assert refused.status_code == 403, refused.text
        assert "once the report is signed" in refused.json()["detail"]
        event = audit_events(settings, "access.denied")[-1]
        assert event.actor_id == neuro.id and event.detail == {"image": image}
    # the radiologist reads AI results before signing: the same request passes the rule (409: this
    # walk's analysis has no stored images, which is about the record, not the permission)
    allowed = client.post(
        f"/api/studies/{ids['study_id']}/annotations",
        json={**roi, "image": "segmentation"},
        headers=people.direct_headers(rad),
    )
    assert allowed.status_code == 409 and "has no segmentation" in allowed.json()["detail"]


def test_a_break_glass_exports_nothing(client: TestClient, app: FastAPI, people: People, settings: Settings) -> None:
    tech, neuro, admin = people.create("technician"), people.create("neurologist"), people.create("admin")
    ids = _objects(app, settings, tech, neuro, admin)
    headers = people.direct_headers(admin)
    opened = client.post("/api/admin/breakglass", json={"reason": "Emergency: patient deteriorating"}, headers=headers)
    assert opened.status_code == 201
    assert client.get(f"/api/reports/{ids['report_id']}", headers=headers).status_code == 200  # reading: yes
    for fmt in ("pdf", "json", "hl7"):
        exported = client.get(f"/api/reports/{ids['report_id']}/export/{fmt}", headers=headers)
        assert exported.status_code == 403, (fmt, exported.text)
        assert "report:export" in exported.text
