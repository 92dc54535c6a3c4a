"""GET /api/studies/{id}/export/deidentified: the stored (encrypted) DICOM, de-identified, as a zip;
who may export; the two options; the audit event without patient data; nothing left in the temp folder."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date

import numpy as np
import pydicom
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from neuronav.config import Settings
from neuronav.db.models import StoredObjectRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.pseudonym import pseudonym_key, pseudonymise
from neuronav.storage.store import ObjectStore
from neuronav.volume.dicom_write import new_uid
from neuronav.workflow.exports import SUMMARY_NAME
from tests.service.conftest import People, Person, audit_events

PATIENT_ID = "MRN-5566778"
PHI = (b"Doe^Jane", PATIENT_ID.encode(), b"19700101", b"Secret Hospital", b"Referrer^Rita")
N_FILES = 3


def mr_file(study_uid: str, series_uid: str, n: int) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = "MR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientAge = "055Y"
    ds.PatientSex = "F"
    ds.InstitutionName = "Secret Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StudyDate = ds.SeriesDate = "20260115"
    ds.StudyTime = "101500"
    ds.SeriesNumber, ds.InstanceNumber = 3, n + 1
    ds.add_new(0x00291010, "LO", "private vendor data")
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(64, dtype=np.uint16) + n).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def stored_study(app: FastAPI, settings: Settings, uploader: Person, *, files: int = N_FILES) -> str:
    """A study whose upload is stored encrypted, as receive_upload leaves it (without an analysis)."""
    store: ObjectStore = app.state.store
    study_uid, series_uid = new_uid(), new_uid()
    with session_scope(settings.database) as db:
        study = StudyRow(
            content_sha256=new_uid()[-20:].rjust(64, "0"),
            patient_pseudonym=pseudonymise(PATIENT_ID, pseudonym_key(settings)),
            sequences={},
            uploaded_by=uploader.id,
        )
        db.add(study)
        db.flush()
        for n in range(files):
            obj = store.put(mr_file(study_uid, series_uid, n), kind="upload")
            db.add(
                StoredObjectRow(
                    key=obj.key, study_id=study.id, kind="upload", name=f"IM{n}", sha256=obj.sha256, size_bytes=obj.size
                )
            )
        return study.id


@pytest.fixture
def study_id(app: FastAPI, client: TestClient, settings: Settings, staff: dict[str, Person]) -> str:
    return stored_study(app, settings, staff["technician"])


def url(study_id: str) -> str:
    return f"/api/studies/{study_id}/export/deidentified"


def leftovers(settings: Settings) -> list[str]:
    tmp = settings.data_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def read_zip(content: bytes) -> tuple[dict[str, pydicom.Dataset], dict[str, object]]:
    zf = zipfile.ZipFile(io.BytesIO(content))
    names = zf.namelist()
    summary = json.loads(zf.read(SUMMARY_NAME))
    datasets = {n: pydicom.dcmread(io.BytesIO(zf.read(n))) for n in names if n.endswith(".dcm")}
    for raw in (zf.read(n) for n in names):
        assert not any(phi in raw for phi in PHI)
    return datasets, summary


def test_a_radiologist_exports_the_study_de_identified(
    client: TestClient, staff: dict[str, Person], settings: Settings, study_id: str
) -> None:
    response = client.get(url(study_id), headers=staff["radiologist"].headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert f'filename="{study_id}-deidentified.zip"' in response.headers["content-disposition"]
    datasets, summary = read_zip(response.content)
    assert len(datasets) == N_FILES and summary["written"] == N_FILES
    assert summary["options"] == {"retain_dates": True, "retain_patient_characteristics": True}
    pseudonym = pseudonymise(PATIENT_ID, pseudonym_key(settings))
    for name, ds in datasets.items():
        study_uid, series_uid, sop = name.removesuffix(".dcm").split("/")
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (study_uid, series_uid, sop)
        assert study_uid.startswith("2.25.")
        assert ds.PatientID == pseudonym and str(ds.PatientName) == pseudonym  # the study's own pseudonym
        assert ds.PatientIdentityRemoved == "YES" and ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence} == {"113100", "113107", "113108"}
        shift = (
            date(2026, 1, 15) - date.fromisoformat(ds.StudyDate[:4] + "-" + ds.StudyDate[4:6] + "-" + ds.StudyDate[6:])
        ).days
        assert 1 <= shift <= 365
        assert ds.PatientAge == "055Y" and ds.PatientSex == "F"
        assert 0x00291010 not in ds and "InstitutionName" not in ds
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == 1

    event = audit_events(settings, "study.export_deidentified")[-1]
    assert (event.actor_id, event.target_id, event.outcome) == (staff["radiologist"].id, study_id, "success")
    assert event.detail["files"] == N_FILES and event.detail["retain_dates"] is True
    assert event.detail["sha256"] and event.detail["bytes"] == len(response.content)
    text = json.dumps(event.detail)
    assert not any(phi.decode() in text for phi in PHI) and pseudonym not in text
    assert leftovers(settings) == []  # decrypted files and the zip are gone once it is sent


def test_the_options_can_be_switched_off(
    client: TestClient, staff: dict[str, Person], settings: Settings, study_id: str
) -> None:
    response = client.get(
        url(study_id),
        params={"retain_dates": "false", "retain_patient_characteristics": "false"},
        headers=staff["neurologist"].headers,
    )
    assert response.status_code == 200, response.text
    datasets, summary = read_zip(response.content)
    assert summary["options"] == {"retain_dates": False, "retain_patient_characteristics": False}
    for ds in datasets.values():
        assert ds.StudyDate == "" and ds.SeriesDate == "19000101" and "PatientAge" not in ds
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence} == {"113100"}
    event = audit_events(settings, "study.export_deidentified")[-1]
    assert event.detail["retain_dates"] is False and event.detail["retain_patient_characteristics"] is False
    bad = client.get(url(study_id), params={"retain_dates": "perhaps"}, headers=staff["neurologist"].headers)
    assert bad.status_code == 422


def test_who_may_export(
    client: TestClient, people: People, staff: dict[str, Person], settings: Settings, study_id: str, app: FastAPI
) -> None:
    technician = client.get(url(study_id), headers=staff["technician"].headers)  # even their own upload
    assert technician.status_code == 403
    admin = staff["admin"].headers
    refused = client.get(url(study_id), headers=admin)
    assert refused.status_code == 403 and "break-glass" in refused.json()["detail"]

    other_study = stored_study(app, settings, staff["technician"], files=1)
    scoped = client.post(
        "/api/admin/breakglass",
        json={"reason": "Emergency: second opinion now", "study_id": other_study},
        headers=admin,
    )
    assert scoped.status_code == 201
    assert client.get(url(study_id), headers=admin).status_code == 403  # the grant is for another study
    assert client.get(url(other_study), headers=admin).status_code == 200
    opened = client.post("/api/admin/breakglass", json={"reason": "Emergency: second opinion now"}, headers=admin)
    assert opened.status_code == 201
    assert client.get(url(study_id), headers=admin).status_code == 200
    access = [e for e in audit_events(settings, "breakglass.access") if e.target_id == study_id]
    assert access and access[-1].detail["permission"] == "study:export_deidentified"

    missing = client.get(url("f" * 32), headers=staff["radiologist"].headers)
    assert missing.status_code == 404
    assert leftovers(settings) == []


def test_a_study_without_stored_dicom_is_refused_cleanly(
    client: TestClient, app: FastAPI, staff: dict[str, Person], settings: Settings
) -> None:
    empty = stored_study(app, settings, staff["technician"], files=0)
    response = client.get(url(empty), headers=staff["radiologist"].headers)
    assert response.status_code == 400 and "no stored upload" in response.json()["detail"]
    assert leftovers(settings) == []


def test_object_rules_on_every_study_route(
    client: TestClient, app: FastAPI, people: People, staff: dict[str, Person], settings: Settings
) -> None:
    """Every route naming a study, walked with a real study: a technician who did not upload it, and an
    administrator whose break-glass is limited to another study, are refused on each (found from the
    app's routes, so a new route is walked too)."""
    import re

    from tests.service.test_admin import _routes

    study = stored_study(app, settings, staff["technician"], files=1)
    other = stored_study(app, settings, staff["technician"], files=1)
    second_tech = people.create("technician")
    people.login(second_tech)
    admin = staff["admin"].headers
    scoped = client.post(
        "/api/admin/breakglass", json={"reason": "Emergency: the other study", "study_id": other}, headers=admin
    )
    assert scoped.status_code == 201
    routes = [(method, path) for method, path in _routes(app) if "{study_id}" in path]
    assert len(routes) >= 7, routes
    failures = []
    for method, path in routes:
        url_ = re.sub(r"\{image\}", "reference", path.replace("{study_id}", study))
        body = {"kind": "text", "text": "x", "point_ras_mm": [0, 0, 0]} if method == "POST" else None
        for who, headers, reason in (
            ("technician who did not upload it", second_tech.headers, "uploaded by someone else"),
            ("admin, break-glass for another study", admin, "another study"),
        ):
            r = client.request(method, url_, headers=headers, json=body)
            client.cookies.clear()
            if r.status_code != 403:
                failures.append(f"{method} {path} as {who}: {r.status_code} {r.text[:100]}")
            elif who.startswith("admin") and method == "GET" and reason not in r.json()["detail"]:
                failures.append(f"{method} {path} as {who}: refused for another reason: {r.json()['detail']}")
    assert not failures, "\n".join(failures)
    # the uploader and a radiologist pass the same object rules (answers other than 403: 404 no analysis, …)
    assert client.get(f"/api/studies/{study}", headers=staff["technician"].headers).status_code == 200
    assert client.get(f"/api/studies/{study}", headers=staff["radiologist"].headers).status_code == 200
