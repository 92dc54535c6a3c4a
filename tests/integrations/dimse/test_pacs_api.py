"""Search the PACS and pull a study from the worklist's API (``/api/pacs``), against a real Orthanc: the
service (its DICOM listener started by the app, as ``serve`` does) searches by C-FIND and pulls by C-MOVE;
the pulled study is the technician's upload, its analysis queued; roles, strict input and the audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.db.models import StudyRow
from neuronav.db.session import migrate, session_scope
from neuronav.service import create_app
from neuronav.workflow import jobs
from neuronav.workflow.nodes import NodeIn, add_node
from tests.integrations.dimse.conftest import dicom_settings, phantom_files
from tests.peers import Orthanc, free_port
from tests.service.conftest import People, Person, audit_events

pytestmark = [pytest.mark.pacs, pytest.mark.slow]


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, TestClient, list[str]]]:
    settings = dicom_settings(tmp_path, monkeypatch, NEURONAV_DICOM_PORT=str(free_port()), NEURONAV_PACS_NODE="pacs")
    migrate(settings.database)
    dispatched: list[str] = []
    monkeypatch.setattr(jobs, "dispatch", lambda _s, analysis_id: dispatched.append(analysis_id))
    with TestClient(create_app(settings)) as client:
        yield settings, client, dispatched


def _staff(settings: Settings, client: TestClient) -> dict[str, Person]:
    people = People(settings, client)
    out = {}
    for role in ("technician", "radiologist", "neurologist", "admin"):
        out[role] = people.create(role)
        out[role].headers = people.direct_headers(out[role])
    return out


def test_search_and_pull_from_the_worklist(
    service: tuple[Settings, TestClient, list[str]], orthanc: Orthanc, phantom_dicom: Path
) -> None:
    settings, client, dispatched = service
    staff = _staff(settings, client)
    tech, rad = staff["technician"].headers, staff["radiologist"].headers
    # no PACS node registered yet: 409 naming the setting
    r = client.get("/api/pacs/studies", params={"patient_id": "X"}, headers=tech)
    assert r.status_code == 409 and "NEURONAV_PACS_NODE" in r.json()["detail"]
    with session_scope(settings.database) as db:
        add_node(db, None, NodeIn(name="pacs", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                                  incoming=True))  # fmt: skip
    orthanc.clear()
    assert settings.dicom_port is not None
    orthanc.set_modality("neuronav", settings.dicom_ae_title, "127.0.0.1", settings.dicom_port)
    flair = phantom_files(next(p for p in sorted(phantom_dicom.iterdir()) if p.name.endswith("_FLAIR")))
    orthanc.upload(flair)
    first = pydicom.dcmread(flair[0], stop_before_pixels=True)

    # who may search: technicians and radiologists
    params = {"patient_id": str(first.PatientID)}
    assert client.get("/api/pacs/studies", params=params, headers=staff["neurologist"].headers).status_code == 403
    assert client.get("/api/pacs/studies", params=params, headers=staff["admin"].headers).status_code == 403
    r = client.get("/api/pacs/studies", params=params, headers=tech)
    assert r.status_code == 200, r.text
    (found,) = r.json()["studies"]
    assert found["study_uid"] == first.StudyInstanceUID and found["instances"] == len(flair)
    assert found["held"] is False and found["study_id"] is None and "MR" in found["modalities"]
    # by name prefix (as the worklist's search) and by date
    family = str(first.PatientName).split("^")[0]
    r = client.get("/api/pacs/studies", params={"name": family[:5], "date": str(first.StudyDate)}, headers=rad)
    assert [s["study_uid"] for s in r.json()["studies"]] == [first.StudyInstanceUID]
    # strict input: unknown parameters, wildcards in an exact key, no key at all, a date that is not one
    assert client.get("/api/pacs/studies", params={**params, "sql": "1"}, headers=tech).status_code == 422
    assert client.get("/api/pacs/studies", params={"patient_id": "PH*"}, headers=tech).status_code == 422
    assert client.get("/api/pacs/studies", params={"date": "20231301"}, headers=tech).status_code == 422
    r = client.get("/api/pacs/studies", params={**params, "date": "20230230"}, headers=tech)
    assert r.status_code == 400 and "20230230 is not a day of the calendar" in r.json()["detail"]
    r = client.get("/api/pacs/studies", params={"modality": "MR"}, headers=tech)
    assert r.status_code == 400 and "give a patient id" in r.json()["detail"]

    # pull: C-MOVE to the app's listener, received as the technician's upload, analysis queued
    body = {"study_uid": str(first.StudyInstanceUID)}
    assert client.post("/api/pacs/retrieve", json={**body, "x": 1}, headers=tech).status_code == 422
    assert client.post("/api/pacs/retrieve", json=body, headers=staff["neurologist"].headers).status_code == 403
    r = client.post("/api/pacs/retrieve", json=body, headers=tech)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == "received" and out["instances"] == len(flair) and out["study_id"]
    assert out["analysis_id"] and dispatched == [out["analysis_id"]]
    with session_scope(settings.database) as db:
        row = db.get(StudyRow, out["study_id"])
        assert row is not None and row.uploaded_by == staff["technician"].id and row.n_files == len(flair)
    r = client.get(f"/api/studies/{out['study_id']}", headers=tech)
    assert r.status_code == 200  # the technician sees their pull as their upload
    # searched again: held now, with its id for this technician
    (again,) = client.get("/api/pacs/studies", params=params, headers=tech).json()["studies"]
    assert again["held"] is True and again["study_id"] == out["study_id"]
    # every search and pull audited, without the values searched for
    searches = audit_events(settings, "pacs.search")
    assert searches and all(str(first.PatientID) not in str(e.detail) for e in searches)
    assert {e.actor_id for e in audit_events(settings, "pacs.retrieve")} == {staff["technician"].id}

    # a study the PACS does not hold: 404 naming it
    r = client.post("/api/pacs/retrieve", json={"study_uid": "1.2.3.4.5"}, headers=rad)
    assert r.status_code == 404 and "holds no study with UID 1.2.3.4.5" in r.json()["detail"]
