"""Over HTTP, after a real analysis: the viewer's manifest and images (each sequence as acquired), the
readers' measurements and annotations (values computed from the image, per author), and including one
in the report; every refusal with its reason."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.db.models import StudyRow
from neuronav.db.session import session_scope
from tests.conftest import zip_phantom
from tests.service.conftest import People, Person, audit_events
from tests.service.test_studies_http import wait_done


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": 200 * 1024 * 1024})


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return zip_phantom(tmp_path_factory.mktemp("phantom"), 404, "glioma")


def _nifti(content: bytes, tmp_path: Path, name: str) -> nib.Nifti1Image:
    assert content[:2] == b"\x1f\x8b"  # gzip
    path = tmp_path / f"{name}.nii.gz"
    path.write_bytes(content)
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image)
    return img


@pytest.mark.slow
def test_viewer_images_annotations_and_report_inclusion(
    client: TestClient,
    staff: dict[str, Person],
    people: People,
    settings: Settings,
    study_zip: bytes,
    tmp_path: Path,
) -> None:
    tech, rad, neuro = staff["technician"], staff["radiologist"], staff["neurologist"]
    up = client.post("/api/studies", headers=tech.headers, files=[("files", ("s.zip", study_zip, "application/zip"))])
    assert up.status_code == 201, up.text
    study_id = up.json()["study"]["id"]
    assert wait_done(client, up.json()["study"]["analysis"]["id"], tech.headers)["state"] == "done"

    # -- the manifest: images, lesions by permission, priors ------------------------------------
    # the technician who uploaded it checks the images' quality: the acquired images only
    own = client.get(f"/api/studies/{study_id}/viewer", headers=tech.headers)
    assert own.status_code == 200, own.text
    own_manifest = own.json()
    assert own_manifest["images"] == ["reference", "sequence-FLAIR", "sequence-T1", "sequence-T1c", "sequence-T2"]
    assert own_manifest["lesions"] is None and own_manifest["report_id"] is None
    assert own_manifest["report_status"] is None and own_manifest["priors"] == []
    manifest = client.get(f"/api/studies/{study_id}/viewer", headers=rad.headers).json()
    assert manifest["sequences"] == ["FLAIR", "T1", "T1c", "T2"]
    assert {"reference", "segmentation", "heatmap", "sequence-T1c"} <= set(manifest["images"])
    assert manifest["lesions"] and manifest["lesions"][0]["index"] == 1
    assert manifest["report_status"] == "preliminary" and manifest["priors"] == []
    # a neurologist sees the images, but not the AI's lesions before the report is signed
    early = client.get(f"/api/studies/{study_id}/viewer", headers=neuro.headers).json()
    assert early["lesions"] is None
    assert "segmentation" not in early["images"] and "heatmap" not in early["images"] and "reference" in early["images"]
    for image in ("segmentation", "heatmap"):  # nor the AI's images, which show the same
        refused = client.get(f"/api/studies/{study_id}/images/{image}", headers=neuro.headers)
        assert refused.status_code == 403 and "once the report is signed" in refused.json()["detail"]
        denied = audit_events(settings, "access.denied")[-1]
        assert denied.actor_id == neuro.id and denied.target_id == study_id and denied.detail == {"image": image}
    assert client.get(f"/api/studies/{study_id}/images/reference", headers=neuro.headers).status_code == 200

    # -- images: each sequence as acquired; the segmentation on the reference grid -------------
    seg = _nifti(
        client.get(f"/api/studies/{study_id}/images/segmentation", headers=rad.headers).content, tmp_path, "seg"
    )
    ref = _nifti(client.get(f"/api/studies/{study_id}/images/reference", headers=rad.headers).content, tmp_path, "ref")
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine)
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels > 0).any()
    centroid = manifest["lesions"][0]["centroid_ras_mm"]
    ijk = np.rint(np.linalg.inv(seg.affine) @ [*centroid, 1.0])[:3].astype(int)
    assert labels[tuple(ijk)] > 0 or (labels[tuple(slice(max(0, c - 3), c + 4) for c in ijk)] > 0).any()
    flair = _nifti(
        client.get(f"/api/studies/{study_id}/images/sequence-FLAIR", headers=rad.headers).content, tmp_path, "fl"
    )
    assert flair.ndim == 3 and np.asarray(flair.dataobj).std() > 0
    bad = client.get(f"/api/studies/{study_id}/images/sequence-DWI", headers=rad.headers)
    assert bad.status_code == 404 and "sequence-T1c" in bad.json()["detail"]
    assert client.get(f"/api/studies/{study_id}/images/sequence-T2", headers=tech.headers).status_code == 200
    for image in ("segmentation", "heatmap"):  # never the AI's images
        refused = client.get(f"/api/studies/{study_id}/images/{image}", headers=tech.headers)
        assert refused.status_code == 403 and "AI result" in refused.json()["detail"]
    other = people.create("technician")  # another technician: not their upload
    for path in ("viewer", "images/reference"):
        refused = client.get(f"/api/studies/{study_id}/{path}", headers=people.direct_headers(other))
        assert refused.status_code == 403 and "uploaded by someone else" in refused.json()["detail"]

    # -- measurements and annotations ------------------------------------------------------------
    base = f"/api/studies/{study_id}/annotations"
    a, b = [float(v) for v in centroid], [float(centroid[0]) + 6.0, float(centroid[1]) + 8.0, float(centroid[2])]
    dist = client.post(base, headers=rad.headers, json={"kind": "distance", "points_mm": [a, b], "text": "long axis"})
    assert dist.status_code == 201, dist.text
    assert dist.json()["values"]["length_mm"] == pytest.approx(10.0, abs=0.01)

    # an roi on the axial plane through the centroid, checked against every voxel of the image
    lo, hi = [a[0] - 5.0, a[1] - 5.0, a[2]], [a[0] + 5.0, a[1] + 5.0, a[2]]
    roi = client.post(
        base, headers=neuro.headers, json={"kind": "roi", "points_mm": [lo, hi], "plane": "axial", "image": "reference"}
    )
    assert roi.status_code == 201, roi.text
    data = np.asarray(ref.dataobj, dtype=float)
    grid = np.indices(data.shape).reshape(3, -1)
    world = ref.affine[:3, :3] @ grid + ref.affine[:3, 3:4]
    half = 0.5 * np.abs(ref.affine[2, :3]).sum()
    inside = (
        (world[0] >= lo[0])
        & (world[0] <= hi[0])
        & (world[1] >= lo[1])
        & (world[1] <= hi[1])
        & (np.abs(world[2] - a[2]) <= half)
    )
    values = roi.json()["values"]
    assert values["n_voxels"] == int(inside.sum()) > 0
    assert values["mean"] == pytest.approx(data.reshape(-1)[inside].mean(), abs=1e-2)

    note = client.post(base, headers=neuro.headers, json={"kind": "text", "points_mm": [a], "text": "compare with MRS"})
    assert note.status_code == 201
    empty = client.post(base, headers=neuro.headers, json={"kind": "text", "points_mm": [a]})
    assert empty.status_code == 400 and "needs its text" in empty.json()["detail"]
    assert (
        client.post(base, headers=tech.headers, json={"kind": "text", "points_mm": [a], "text": "x"}).status_code == 403
    )

    listed = client.get(base, headers=rad.headers).json()
    assert [(x["kind"], x["author_role"]) for x in listed] == [
        ("distance", "radiologist"),
        ("roi", "neurologist"),
        ("text", "neurologist"),
    ]
    assert listed[1]["author"] == "Dr Neurologist"

    # only the author changes or deletes; others are refused and nothing changes
    note_id = note.json()["id"]
    assert client.delete(f"/api/annotations/{note_id}", headers=rad.headers).status_code == 403
    patched = client.patch(
        f"/api/annotations/{note_id}", headers=neuro.headers, json={"text": "compare with MR spectroscopy"}
    )
    assert patched.status_code == 200 and patched.json()["text"] == "compare with MR spectroscopy"

    # moved by its author (dragged on the image): the values are computed again at the new place
    roi_id = roi.json()["id"]
    lo2, hi2 = [lo[0] + 7.0, lo[1] - 3.0, lo[2]], [hi[0] + 7.0, hi[1] - 3.0, hi[2]]
    assert (
        client.patch(f"/api/annotations/{roi_id}", headers=rad.headers, json={"points_mm": [lo2, hi2]}).status_code
        == 403
    )
    short = client.patch(f"/api/annotations/{roi_id}", headers=neuro.headers, json={"points_mm": [lo2]})
    assert short.status_code == 400 and "needs 2 point" in short.json()["detail"]
    moved = client.patch(f"/api/annotations/{roi_id}", headers=neuro.headers, json={"points_mm": [lo2, hi2]})
    assert moved.status_code == 200, moved.text
    inside2 = (
        (world[0] >= lo2[0])
        & (world[0] <= hi2[0])
        & (world[1] >= lo2[1])
        & (world[1] <= hi2[1])
        & (np.abs(world[2] - a[2]) <= half)
    )
    assert moved.json()["points_mm"] == [lo2, hi2] and moved.json()["plane"] == "axial"
    assert moved.json()["values"]["n_voxels"] == int(inside2.sum()) > 0
    assert moved.json()["values"]["mean"] == pytest.approx(data.reshape(-1)[inside2].mean(), abs=1e-2)
    assert moved.json()["values"]["mean"] != pytest.approx(values["mean"], abs=1e-2)
    again = next(x for x in client.get(base, headers=rad.headers).json() if x["id"] == roi_id)
    assert again["values"] == moved.json()["values"] and again["points_mm"] == [lo2, hi2]
    assert audit_events(settings, "annotation.move")[-1].detail == {"annotation": roi_id, "kind": "roi"}

    # -- the radiologist includes one in the report (a recorded edit of the comment) -------------
    assert client.post(f"/api/annotations/{dist.json()['id']}/include", headers=neuro.headers).status_code == 403
    inc = client.post(f"/api/annotations/{dist.json()['id']}/include", headers=rad.headers)
    assert inc.status_code == 200 and inc.json()["include_in_report"] is True
    report_id = manifest["report_id"]
    report = client.get(f"/api/reports/{report_id}", headers=rad.headers).json()
    assert (
        "Reader measurement (Dr Radiologist): distance 10.0 mm — long axis."
        in report["narrative"]["radiologist_comment"]
    )
    assert report["edits"][-1]["path"] == "/narrative/radiologist_comment" and report["status"] == "preliminary"
    (row,) = report["reader_measurements"]  # and a structured row, which the SR, FHIR and HL7 write
    assert (row["value"], row["unit"], row["reader"]) == (10.0, "mm", "Dr Radiologist")
    twice = client.post(f"/api/annotations/{dist.json()['id']}/include", headers=rad.headers)
    assert twice.status_code == 409
    # once in the report, a measurement keeps its place and values (the report has them)
    fixed = client.patch(
        f"/api/annotations/{dist.json()['id']}", headers=rad.headers, json={"points_mm": [a, [b[0] + 5.0, b[1], b[2]]]}
    )
    assert fixed.status_code == 409 and "in the report" in fixed.json()["detail"]
    assert next(x for x in client.get(base, headers=rad.headers).json() if x["id"] == dist.json()["id"])[
        "points_mm"
    ] == [a, b]

    signing = {"password": rad.password}
    assert client.post(f"/api/reports/{report_id}/sign", headers=rad.headers, json=signing).status_code == 200
    late = client.post(f"/api/annotations/{roi.json()['id']}/include", headers=rad.headers)
    assert late.status_code == 409 and "amend" in late.json()["detail"]
    # once signed, the neurologist sees the lesions too
    signed_view = client.get(f"/api/studies/{study_id}/viewer", headers=neuro.headers).json()
    assert signed_view["lesions"] and {"segmentation", "heatmap"} <= set(signed_view["images"])
    assert client.get(f"/api/studies/{study_id}/images/segmentation", headers=neuro.headers).status_code == 200
    assert client.delete(f"/api/annotations/{note_id}", headers=neuro.headers).status_code == 204
    assert len(client.get(base, headers=rad.headers).json()) == 2

    # -- a prior of the same patient appears in the manifest -----------------------------------
    with session_scope(settings.database) as db:
        current = db.get(StudyRow, study_id)
        assert current is not None and current.study_date
        db.add(
            StudyRow(
                content_sha256="0" * 64,
                patient_pseudonym=current.patient_pseudonym,
                study_date="20010101",
                description="earlier",
                state="done",
                uploaded_by=current.uploaded_by,
                uploaded_at=current.uploaded_at,
            )
        )
        db.add(
            StudyRow(
                content_sha256="1" * 64,
                patient_pseudonym="NNP-someone-else",
                study_date="20010101",
                state="done",
                uploaded_by=current.uploaded_by,
                uploaded_at=current.uploaded_at,
            )
        )
    priors = client.get(f"/api/studies/{study_id}/viewer", headers=rad.headers).json()["priors"]
    assert [(p["study_date"], p["description"]) for p in priors] == [("20010101", "earlier")]

    # -- every read of this patient's data above is in the audit log, by whom --------------------
    versions = client.get(f"/api/reports/{report_id}/versions", headers=neuro.headers)
    assert versions.status_code == 200 and [v["version"] for v in versions.json()] == [1]
    events = audit_events(settings)
    on_study = {(e.action, e.actor_id) for e in events if e.target_id == study_id}
    for action, person in (
        ("study.viewer", rad),
        ("study.viewer", neuro),
        ("study.image", rad),
        ("study.image", neuro),
        ("annotation.list", rad),
        ("annotation.create", neuro),
        ("annotation.delete", neuro),
    ):
        assert (action, person.id) in on_study, (action, person.role)
    on_report = {(e.action, e.actor_id) for e in events if e.target_id == report_id}
    assert {("report.read", rad.id), ("report.sign", rad.id), ("report.versions", neuro.id)} <= on_report
    images = {e.detail["image"] for e in events if e.action == "study.image" and e.actor_id == rad.id}
    assert {"reference", "segmentation", "sequence-FLAIR"} <= images

    # -- an administrator's break-glass limited to another study opens none of this one ----------
    with session_scope(settings.database) as db:
        other = db.query(StudyRow).filter(StudyRow.description == "earlier").one().id
    admin = staff["admin"].headers
    analysis_id = up.json()["study"]["analysis"]["id"]
    this_study = (
        f"/api/studies/{study_id}/images/reference",
        f"/api/studies/{study_id}/viewer",
        f"/api/analyses/{analysis_id}/result",
        f"/api/studies/{study_id}",
    )
    assert all(client.get(route, headers=admin).status_code == 403 for route in this_study)  # no break-glass
    scoped = client.post(
        "/api/admin/breakglass", json={"reason": "Emergency: the earlier study", "study_id": other}, headers=admin
    )
    assert scoped.status_code == 201
    for route in this_study:
        refused = client.get(route, headers=admin)
        assert refused.status_code == 403 and "another study" in refused.json()["detail"], route
    listing = client.get("/api/studies", headers=admin).json()
    assert listing["total"] == 1 and [item["id"] for item in listing["items"]] == [other]
    everything = client.post("/api/admin/breakglass", json={"reason": "Emergency: all of them"}, headers=admin)
    assert everything.status_code == 201
    assert all(client.get(route, headers=admin).status_code == 200 for route in this_study)
    bg_reads = {e.action for e in audit_events(settings, "breakglass.access") if e.target_id == study_id}
    assert bg_reads  # each of those reads through the grant is recorded as such
    assert ("analysis.read", staff["admin"].id) in {(e.action, e.actor_id) for e in audit_events(settings)}
    assert client.get("/api/studies", headers=admin).json()["total"] == 3
