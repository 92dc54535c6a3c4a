"""Over HTTP, after a real analysis: a radiologist corrects the AI's segmentation (rejects a lesion, paints
voxels) and each correction is a new version; the AI's original stays; volumes, lesions, the report and
its DICOM SEG follow the corrected label map; the refusals name their reason. Expected numbers are
computed here from the images the API serves (voxel counts × voxel volume), never taken from the code
under test."""

from __future__ import annotations

import base64
import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from scipy import ndimage as ndi

from neuronav.config import Settings
from tests.conftest import zip_phantom
from tests.service.conftest import Person, audit_events
from tests.service.test_studies_http import wait_done


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": 200 * 1024 * 1024})


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return zip_phantom(tmp_path_factory.mktemp("phantom"), 404, "glioma")


def _image(client: TestClient, study_id: str, image: str, headers: dict[str, str]) -> nib.Nifti1Image:
    response = client.get(f"/api/studies/{study_id}/images/{image}", headers=headers)
    assert response.status_code == 200, response.text
    img = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    assert isinstance(img, nib.Nifti1Image)
    return img


def _nifti_b64(labels: np.ndarray, affine: np.ndarray) -> str:
    img = nib.Nifti1Image(labels.astype(np.uint8), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    return base64.b64encode(gzip.compress(img.to_bytes())).decode("ascii")


def _voxel_ml(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


def _far_cube(labels: np.ndarray, affine: np.ndarray, size: int, min_mm: float) -> tuple[slice, slice, slice]:
    """A size³ block of background at least ``min_mm`` from any labelled voxel."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    dist = ndi.distance_transform_edt(labels == 0, sampling=spacing)
    shape = np.array(labels.shape)
    for i in range(size, shape[0] - 2 * size, 3):
        for j in range(size, shape[1] - 2 * size, 3):
            for k in range(1, shape[2] - size - 1, 2):
                box = (slice(i, i + size), slice(j, j + size), slice(k, k + size))
                if dist[box].min() >= min_mm:
                    return box
    raise AssertionError("no background block far from the tumour")


@pytest.mark.slow
def test_a_radiologist_rejects_a_lesion_and_paints_new_versions_the_original_kept(
    client: TestClient, staff: dict[str, Person], settings: Settings, study_zip: bytes, tmp_path: Path
) -> None:
    tech, rad, neuro = staff["technician"], staff["radiologist"], staff["neurologist"]
    up = client.post("/api/studies", headers=tech.headers, files=[("files", ("s.zip", study_zip, "application/zip"))])
    assert up.status_code == 201, up.text
    study_id = up.json()["study"]["id"]
    assert wait_done(client, up.json()["study"]["analysis"]["id"], tech.headers)["state"] == "done"
    base = f"/api/studies/{study_id}/segmentations"

    manifest = client.get(f"/api/studies/{study_id}/viewer", headers=rad.headers).json()
    assert manifest["segmentations"]["current_version"] == 1
    assert [v["author"] for v in manifest["segmentations"]["versions"]] == ["AI"]
    lesions = manifest["lesions"]
    assert lesions, "the phantom's glioma is segmented"
    report_id = manifest["report_id"]
    before = client.get(f"/api/reports/{report_id}", headers=rad.headers).json()
    v1 = _image(client, study_id, "segmentation", rad.headers)
    labels1 = np.asarray(v1.dataobj).astype(np.uint8)
    affine = np.asarray(v1.affine, dtype=np.float64)
    vox_ml = _voxel_ml(affine)
    # the report's volumes are the voxel counts of the image served (checked independently)
    assert before["findings"]["segmentation"]["volumes"]["whole_tumour_ml"] == pytest.approx(
        np.count_nonzero(labels1) * vox_ml, abs=2e-4
    )

    # -- refusals: the wrong people, the wrong grid, the wrong labels, a stale version ---------------
    for person in (tech, neuro):
        refused = client.post(base, headers=person.headers, json={"parent_version": 1, "rejected_lesions": [1]})
        assert refused.status_code == 403, refused.text
    wrong_shape = client.post(
        base, headers=rad.headers, json={"parent_version": 1, "labels_nifti": _nifti_b64(labels1[:-1], affine)}
    )
    assert wrong_shape.status_code == 400 and "reference grid" in wrong_shape.json()["detail"]
    assert "×".join(map(str, labels1.shape)) in wrong_shape.json()["detail"]
    moved = affine.copy()
    moved[0, 3] += 2.0
    wrong_grid = client.post(
        base, headers=rad.headers, json={"parent_version": 1, "labels_nifti": _nifti_b64(labels1, moved)}
    )
    assert wrong_grid.status_code == 400 and "not on the reference grid" in wrong_grid.json()["detail"]
    five = labels1.copy()
    five[0, 0, 0] = 5
    wrong_labels = client.post(
        base, headers=rad.headers, json={"parent_version": 1, "labels_nifti": _nifti_b64(five, affine)}
    )
    assert wrong_labels.status_code == 400 and "holds 5" in wrong_labels.json()["detail"]
    assert client.post(base, headers=rad.headers, json={"parent_version": 1, "labels_nifti": "%%%"}).status_code == 400
    stale = client.post(base, headers=rad.headers, json={"parent_version": 2, "rejected_lesions": [1]})
    assert stale.status_code == 409 and "version 1" in stale.json()["detail"]
    missing = client.post(base, headers=rad.headers, json={"parent_version": 1, "rejected_lesions": [99]})
    assert missing.status_code == 400 and "no lesion 99" in missing.json()["detail"]
    extra = client.post(base, headers=rad.headers, json={"parent_version": 1, "rejected": [1]})
    assert extra.status_code == 422  # strict input
    assert audit_events(settings, "segmentation.edit") == []  # nothing was saved

    # -- version 2: lesion 1 rejected --------------------------------------------------------------------
    accepted = [les["index"] for les in lesions[1:2]]
    saved = client.post(
        base, headers=rad.headers, json={"parent_version": 1, "rejected_lesions": [1], "accepted_lesions": accepted}
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["current_version"] == 2
    v2_out = saved.json()["versions"][1]
    assert v2_out["author"] == "Dr Radiologist" and v2_out["parent_version"] == 1
    assert v2_out["changes"]["rejected_lesions"] == [1] and v2_out["changes"]["accepted_lesions"] == accepted
    labels2 = np.asarray(_image(client, study_id, "segmentation", rad.headers).dataobj).astype(np.uint8)
    removed = int(np.count_nonzero(labels1) - np.count_nonzero(labels2))
    assert removed > 0 and not np.any(labels2[labels1 == 0])  # only voxels taken away
    assert removed * vox_ml == pytest.approx(lesions[0]["volume_ml"], abs=2e-4)  # lesion 1 with its oedema
    after = client.get(f"/api/reports/{report_id}", headers=rad.headers).json()
    assert after["status"] == before["status"] == "preliminary"  # an edit never moves the status
    seg2 = after["findings"]["segmentation"]
    assert seg2["volumes"]["whole_tumour_ml"] == pytest.approx(np.count_nonzero(labels2) * vox_ml, abs=2e-4)
    assert len(seg2["lesions"]) == len(lesions) - 1
    assert seg2["label_file"] == "segmentation-v2.nii.gz"
    assert seg2["edited"]["edited_by"] == "Dr Radiologist" and seg2["edited"]["rejected_lesions"] == [1]
    assert "Segmentation corrected by Dr Radiologist" in after["narrative"]["findings_text"]
    assert after["edits"][-1]["path"] == "/findings/segmentation" and after["edits"][-1]["who"] == "Dr Radiologist"
    rows = {m["key"]: m["value"] for m in after["measurements"]}
    assert rows["whole_tumour_volume"] == pytest.approx(seg2["volumes"]["whole_tumour_ml"])
    # the AI's original is kept and still served
    original = np.asarray(_image(client, study_id, "segmentation-ai", rad.headers).dataobj).astype(np.uint8)
    assert np.array_equal(original, labels1)

    # -- version 3: a 5×5×5 block of enhancing tumour painted far from the rest ------------------------
    box = _far_cube(labels2, affine, 5, 20.0)
    painted = labels2.copy()
    painted[box] = 3
    saved = client.post(
        base,
        headers=rad.headers,
        json={"parent_version": 2, "labels_nifti": _nifti_b64(painted, affine), "note": "missed enhancing focus"},
    )
    assert saved.status_code == 201, saved.text
    assert [v["version"] for v in saved.json()["versions"]] == [1, 2, 3]
    assert saved.json()["versions"][2]["changes"]["voxels_changed"] == 125
    final = client.get(f"/api/reports/{report_id}", headers=rad.headers).json()
    seg3 = final["findings"]["segmentation"]
    assert seg3["volumes"]["enhancing_ml"] - seg2["volumes"]["enhancing_ml"] == pytest.approx(125 * vox_ml, abs=3e-4)
    assert len(seg3["lesions"]) == len(seg2["lesions"]) + 1  # a focus 20 mm from the rest is its own lesion
    assert seg3["edited"]["version"] == 3 and seg3["edited"]["parent_version"] == 2
    labels3 = np.asarray(_image(client, study_id, "segmentation", rad.headers).dataobj).astype(np.uint8)
    assert np.array_equal(labels3, painted)
    assert np.array_equal(np.asarray(_image(client, study_id, "segmentation-v2", rad.headers).dataobj), labels2)
    manifest = client.get(f"/api/studies/{study_id}/viewer", headers=rad.headers).json()
    assert manifest["segmentations"]["current_version"] == 3 and len(manifest["lesions"]) == len(seg3["lesions"])

    # -- the DICOM SEG is written from the corrected label map ------------------------------------------
    exported = client.get(f"/api/reports/{report_id}/export/seg", headers=rad.headers)
    assert exported.status_code == 200, exported.text
    ds = pydicom.dcmread(io.BytesIO(exported.content))
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    assert int(np.count_nonzero(frames)) == int(np.count_nonzero(labels3))
    assert int(np.count_nonzero(labels3)) != int(np.count_nonzero(labels1))
    # the PDF (key images of the corrected map) and FHIR (its Observations) are written from it as well
    pdf = client.get(f"/api/reports/{report_id}/export/pdf", headers=rad.headers)
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    bundle = client.get(f"/api/reports/{report_id}/export/fhir", headers=rad.headers).json()
    values = [
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"]
    ]
    assert any(v == pytest.approx(seg3["volumes"]["enhancing_ml"]) for v in values)

    # -- audited, and the versions listed ------------------------------------------------------------------
    events = audit_events(settings, "segmentation.edit")
    assert [e.detail["version"] for e in events] == [2, 3] and {e.actor_id for e in events} == {rad.id}
    assert events[0].detail["rejected_lesions"] == [1] and events[1].detail["voxels_changed"] == 125
    listed = client.get(base, headers=rad.headers).json()
    assert [(v["version"], v["author"], v["current"]) for v in listed["versions"]] == [
        (1, "AI", False),
        (2, "Dr Radiologist", False),
        (3, "Dr Radiologist", True),
    ]
    assert client.get(base, headers=neuro.headers).status_code == 403  # a preliminary report's AI results
