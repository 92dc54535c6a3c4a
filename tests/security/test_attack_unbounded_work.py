"""Attack: making the service do unbounded work, and learning about studies by re-uploading them
(issue 17, finding 9).

* ``POST /api/studies/{id}/analyses?force=true`` queued a new job on every call: refused (409) while
  one is queued or running (and counted against the per-user analysis rate limit).
* Re-uploading a study whose analysis failed queued it again every time: at most
  ``NEURONAV_FAILED_REQUEUES`` times, never while one is pending.
* A technician re-uploading another technician's study got back its id, pseudonym and state: now a 409
  that says only that the study is in NeuroNav already and to ask a radiologist (audited). The study
  stays one record with one analysis and one report, which is what a reading room expects.

No analysis runs here: the job hand-over is replaced, so jobs stay queued until a test moves them on.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import session_scope
from tests.conftest import zip_phantom
from tests.service.conftest import People, Person, audit_events


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": 200 * 1024 * 1024, "failed_requeues": 2})


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return zip_phantom(tmp_path_factory.mktemp("phantom"), 909, "metastasis")


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The analysis ids handed to the worker (none is run)."""
    ids: list[str] = []
    monkeypatch.setattr("neuronav.workflow.jobs.dispatch", lambda settings, analysis_id: ids.append(analysis_id))
    return ids


def upload(client: TestClient, person: Person, study_zip: bytes) -> Any:
    return client.post(
        "/api/studies", headers=person.headers, files=[("files", ("study.zip", study_zip, "application/zip"))]
    )


def set_state(settings: Settings, analysis_id: str, state: str) -> None:
    with session_scope(settings.database) as db:
        analysis = db.get(AnalysisRow, analysis_id)
        assert analysis is not None
        analysis.state = state


def analyses(settings: Settings, study_id: str) -> list[str]:
    with session_scope(settings.database) as db:
        stmt = select(AnalysisRow.id).where(AnalysisRow.study_id == study_id).order_by(AnalysisRow.created_at)
        return list(db.scalars(stmt))


def test_a_forced_analysis_is_refused_while_one_is_queued_or_running(
    client: TestClient, people: People, settings: Settings, dispatched: list[str]
) -> None:
    technician, radiologist = people.create("technician"), people.create("radiologist")
    radiologist.headers = people.direct_headers(radiologist)
    with session_scope(settings.database) as db:
        study = StudyRow(content_sha256="f" * 64, sequences={}, uploaded_by=technician.id, state="queued")
        db.add(study)
        db.flush()
        analysis = AnalysisRow(study_id=study.id, cache_key="k", model="m", state="queued")
        db.add(analysis)
        db.flush()
        study_id, analysis_id = study.id, analysis.id
    force = f"/api/studies/{study_id}/analyses?force=true"
    for state in ("queued", "running"):
        set_state(settings, analysis_id, state)
        refused = client.post(force, headers=radiologist.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "ConflictError" and state in refused.json()["detail"]
    assert analyses(settings, study_id) == [analysis_id] and dispatched == []  # nothing queued by the refusals
    set_state(settings, analysis_id, "done")
    again = client.post(force, headers=radiologist.headers)
    assert again.status_code == 202 and again.json()["id"] != analysis_id
    assert client.post(force, headers=radiologist.headers).status_code == 409  # the new one is queued
    assert len(analyses(settings, study_id)) == 2 and dispatched == [again.json()["id"]]


@pytest.mark.slow
def test_re_uploading_a_failed_study_re_queues_it_a_bounded_number_of_times(
    client: TestClient, people: People, settings: Settings, study_zip: bytes, dispatched: list[str]
) -> None:
    technician = people.create("technician")
    technician.headers = people.direct_headers(technician)
    first = upload(client, technician, study_zip).json()
    study_id, analysis_id = first["study"]["id"], first["study"]["analysis"]["id"]
    assert upload(client, technician, study_zip).json()["analysis_queued"] is False  # pending: not again
    queued_again = 0
    for _ in range(settings.failed_requeues + 2):
        set_state(settings, analysis_id, "failed")
        again = upload(client, technician, study_zip)
        assert again.status_code == 201 and again.json()["study"]["id"] == study_id
        if not again.json()["analysis_queued"]:
            assert again.json()["study"]["analysis"]["state"] == "failed"  # the uploader sees why
            break
        queued_again += 1
        analysis_id = again.json()["study"]["analysis"]["id"]
    assert queued_again == settings.failed_requeues
    assert len(analyses(settings, study_id)) == 1 + settings.failed_requeues


@pytest.mark.slow
def test_another_technicians_study_sent_again_reveals_nothing_of_it(
    client: TestClient, people: People, settings: Settings, study_zip: bytes, dispatched: list[str]
) -> None:
    owner, other = people.create("technician"), people.create("technician")
    owner.headers, other.headers = people.direct_headers(owner), people.direct_headers(other)
    first = upload(client, owner, study_zip).json()
    study = first["study"]
    refused = upload(client, other, study_zip)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "ConflictError" and "ask a radiologist" in refused.json()["detail"]
    for secret in (study["id"], study["patient_pseudonym"], study["analysis"]["id"], owner.email, owner.id):
        assert secret not in refused.text
    denied = [e for e in audit_events(settings, "study.upload") if e.outcome == "denied"]
    assert denied[-1].actor_id == other.id and denied[-1].target_id == study["id"]  # for the auditors
    assert len(analyses(settings, study["id"])) == 1 and dispatched == [study["analysis"]["id"]]
    # the uploader's own re-upload is answered as before; the other technician's worklist stays empty
    assert upload(client, owner, study_zip).json()["study"]["id"] == study["id"]
    assert client.get("/api/studies", headers=other.headers).json()["total"] == 0
