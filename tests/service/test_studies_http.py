"""Over HTTP: a technician uploads, the embedded worker analyses, a radiologist reads, exports, signs;
a neurologist reads the signed report; each role sees only what it may; bad uploads are refused whole."""

from __future__ import annotations

import io
import subprocess
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.storage.store import ObjectStore
from tests.conftest import require_binary, zip_phantom
from tests.service.conftest import Person, audit_events


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The service settings with room for a whole phantom study (the shared ones cap uploads at 100 kB)."""
    return settings.model_copy(update={"max_upload_bytes": 200 * 1024 * 1024})


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return zip_phantom(tmp_path_factory.mktemp("phantom"), 303, "metastasis")


def wait_done(client: TestClient, analysis_id: str, headers: dict[str, str], timeout: float = 240) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/api/analyses/{analysis_id}", headers=headers).json()
        if body["state"] in ("done", "failed"):
            return body
        time.sleep(1)
    raise AssertionError("analysis did not finish")


@pytest.mark.slow
def test_upload_analyse_read_export_sign(
    client: TestClient, staff: dict[str, Person], settings: Settings, study_zip: bytes, tmp_path: Path
) -> None:
    tech, rad, neuro, admin = staff["technician"], staff["radiologist"], staff["neurologist"], staff["admin"]
    r = client.post(
        "/api/studies", headers=tech.headers, files=[("files", ("study.zip", study_zip, "application/zip"))]
    )
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["created"] and up["analysis_queued"]
    study_id, analysis_id = up["study"]["id"], up["study"]["analysis"]["id"]
    again = client.post(
        "/api/studies", headers=tech.headers, files=[("files", ("copy.zip", study_zip, "application/zip"))]
    )
    assert again.status_code == 201 and not again.json()["created"] and again.json()["study"]["id"] == study_id

    status = wait_done(client, analysis_id, tech.headers)  # the uploader follows the progress
    assert status["state"] == "done", status
    assert client.get(f"/api/studies/{study_id}", headers=tech.headers).json().get("patient_name") is None

    listing = client.get("/api/studies", headers=rad.headers).json()
    assert listing["total"] == 1 and listing["items"][0]["flagged"] is True
    detail = client.get(f"/api/studies/{study_id}", headers=rad.headers).json()
    first = pydicom.dcmread(
        io.BytesIO(zipfile.ZipFile(io.BytesIO(study_zip)).read(zipfile.ZipFile(io.BytesIO(study_zip)).namelist()[0]))
    )
    assert detail["patient_name"] == str(first.PatientName)
    report_id = detail["report_id"]
    assert detail["report_status"] == "preliminary"

    assert client.get(f"/api/reports/{report_id}", headers=neuro.headers).status_code == 403  # not signed yet
    assert client.get(f"/api/reports/{report_id}", headers=tech.headers).status_code == 403
    assert client.get(f"/api/studies/{study_id}", headers=admin.headers).status_code == 403  # no break-glass

    pdf = client.get(f"/api/reports/{report_id}/export/pdf", headers=rad.headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert f'filename="{report_id}-v1-preliminary-draft-report.pdf"' in pdf.headers["content-disposition"]
    (tmp_path / "export.pdf").write_bytes(pdf.content)  # the radiologist's PDF names the patient on page 1
    page1 = subprocess.run(
        [require_binary("pdftotext"), "-f", "1", "-l", "1", str(tmp_path / "export.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"MRN {first.PatientID}" in " ".join(page1.split())
    # a research copy on request: the HL7 and JSON name no patient (and the export says so in the audit)
    research = client.get(f"/api/reports/{report_id}/export/hl7", params={"pseudonymous": True}, headers=rad.headers)
    clinical = client.get(f"/api/reports/{report_id}/export/hl7", headers=rad.headers)
    assert research.status_code == clinical.status_code == 200
    assert first.PatientID in clinical.text and first.PatientID not in research.text
    assert str(first.PatientName).split("^")[0] not in research.text
    exports = [e.detail for e in audit_events(settings, "report.export") if e.detail.get("format") == "hl7"]
    assert {d["identified"] for d in exports} == {True, False}
    sr = client.get(f"/api/reports/{report_id}/export/sr", headers=rad.headers)
    assert sr.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(sr.content))
    assert ds.PatientID == first.PatientID and ds.StudyInstanceUID == first.StudyInstanceUID
    # every other format, through the API as a PACS or an EMR integration fetches it
    got = {
        fmt: client.get(f"/api/reports/{report_id}/export/{fmt}", headers=rad.headers)
        for fmt in ("json", "seg", "epdf", "sc", "fhir", "fhir-r5", "hl7")
    }
    assert {fmt: r.status_code for fmt, r in got.items()} == dict.fromkeys(got, 200)
    assert got["json"].json()["report_id"] == report_id
    seg = pydicom.dcmread(io.BytesIO(got["seg"].content))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == first.StudyInstanceUID and seg.NumberOfFrames > 0
    epdf = pydicom.dcmread(io.BytesIO(got["epdf"].content))
    assert epdf.MIMETypeOfEncapsulatedDocument == "application/pdf" and bytes(epdf.EncapsulatedDocument)[:4] == b"%PDF"
    with zipfile.ZipFile(io.BytesIO(got["sc"].content)) as sc:
        frames = [pydicom.dcmread(io.BytesIO(sc.read(n))) for n in sc.namelist()]
    assert frames and all(f.StudyInstanceUID == first.StudyInstanceUID and f.Rows > 0 for f in frames)
    for fmt in ("fhir", "fhir-r5"):
        bundle = got[fmt].json()
        assert bundle["resourceType"] == "Bundle"
        assert got[fmt].headers["content-type"].startswith("application/fhir+json")
        assert "DiagnosticReport" in {e["resource"]["resourceType"] for e in bundle["entry"]}
    hl7 = got["hl7"].content.decode()
    assert hl7.startswith("MSH|^~\\&|") and "ORU^R01" in hl7.split("\r")[0] and "\rOBX|" in hl7

    edited = client.post(
        f"/api/reports/{report_id}/edit",
        headers=rad.headers,
        json={"changes": {"/narrative/impression": "Solitary metastasis."}},
    )
    assert edited.status_code == 200 and edited.json()["status"] == "preliminary"  # an edit moves no status
    reviewed = client.post(f"/api/reports/{report_id}/review", headers=rad.headers)
    assert reviewed.status_code == 200 and reviewed.json()["status"] == "reviewed"
    sign_body = {"password": rad.password}
    assert client.post(f"/api/reports/{report_id}/sign", headers=tech.headers, json=sign_body).status_code == 403
    assert client.post(f"/api/reports/{report_id}/sign", headers=rad.headers).status_code == 422  # no password
    wrong = client.post(f"/api/reports/{report_id}/sign", headers=rad.headers, json={"password": "not mine at all"})
    assert wrong.status_code == 403 and "password" in wrong.json()["detail"]
    assert client.get(f"/api/reports/{report_id}", headers=rad.headers).json()["signature"] is None
    signed = client.post(f"/api/reports/{report_id}/sign", headers=rad.headers, json=sign_body).json()
    assert signed["status"] == "final" and signed["signature"]["content_sha256"]
    assert signed["signature"]["signed_by"] == "Dr Radiologist" and signed["signature"]["meaning"]
    assert signed["signature"]["reauthenticated_by"] == "password"
    final_pdf = client.get(f"/api/reports/{report_id}/export/pdf", headers=rad.headers)
    assert f'filename="{report_id}-v1-final-report.pdf"' in final_pdf.headers["content-disposition"]
    again_edit = client.post(
        f"/api/reports/{report_id}/edit", headers=rad.headers, json={"changes": {"/narrative/impression": "x"}}
    )
    assert again_edit.status_code == 409 or again_edit.status_code == 400

    final = client.get(f"/api/reports/{report_id}", headers=neuro.headers)
    assert final.status_code == 200 and final.json()["narrative"]["impression"] == "Solitary metastasis."
    amended = client.post(f"/api/reports/{report_id}/amend", headers=rad.headers, json={"reason": "size corrected"})
    assert amended.json()["version"] == 2
    versions = client.get(f"/api/reports/{report_id}/versions", headers=rad.headers).json()
    assert [(v["version"], v["signed"]) for v in versions] == [(1, True), (2, False)]
    v1 = client.get(f"/api/reports/{report_id}?version=1", headers=rad.headers).json()
    assert v1["status"] == "final"

    actions = {e.action for e in audit_events(settings)}
    assert {"study.upload", "study.read", "report.export", "report.edit", "report.sign", "report.amend"} <= actions
    assert {"report.review", "reauth"} <= actions


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ([("files", ("notes.txt", b"hello", "text/plain"))], 400, "no DICOM images found"),
        ([("files", ("broken.zip", b"PK\x03\x04garbage", "application/zip"))], 400, "broken.zip"),
        # 20 MB of zeros in 20 kB: over the 200:1 compression-ratio cap
        ([("files", ("bomb.zip", _zip({"slice.dcm": bytes(20_000_000)}), "application/zip"))], 400, "zip bomb"),
        ([("files", ("up.zip", _zip({"../../etc/evil.dcm": b"DICM"}), "application/zip"))], 400, "evil.dcm"),
        ([("files", ("../../escape.dcm", b"\x00" * 200, "application/dicom"))], 400, "no DICOM images found"),
    ],
    ids=["not-dicom", "broken-zip", "zip-bomb", "zip-path-traversal", "traversal-filename"],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    client: TestClient,
    staff: dict[str, Person],
    settings: Settings,
    files: list[tuple[str, tuple[str, bytes, str]]],
    status: int,
    message: str,
) -> None:
    r = client.post("/api/studies", headers=staff["technician"].headers, files=files)
    assert r.status_code == status and message in r.json()["detail"], r.text
    assert client.get("/api/studies", headers=staff["radiologist"].headers).json()["total"] == 0
    assert list(ObjectStore.from_settings(settings).iter_keys()) == []  # nothing stored, not even in part
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())  # the spooled upload is gone too
    assert not list(settings.data_dir.parent.rglob("escape.dcm")) and not list(settings.data_dir.rglob("evil.dcm"))
    assert client.get("/healthz").status_code == 200  # still serving


def test_an_upload_needs_multipart(client: TestClient, staff: dict[str, Person]) -> None:
    for body, kind in ((b"\x00" * 10, None), (b"{}", "application/json"), (b"PK\x03\x04", "application/zip")):
        headers = {**staff["technician"].headers, **({"content-type": kind} if kind else {})}
        r = client.post("/api/studies", headers=headers, content=body)
        assert r.status_code == 415, r.text
        assert "multipart/form-data" in r.json()["detail"] and (kind or "without a content type") in r.json()["detail"]
    assert client.get("/api/studies", headers=staff["radiologist"].headers).json()["total"] == 0
