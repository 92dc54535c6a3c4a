"""The synthetic study generator: truth, lesion types, determinism, geometry, DICOM output."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from neuronav.errors import InputError
from neuronav.phantom import GEOMETRY_PROFILES, PhantomStudy, generate_study
from neuronav.phantom._anatomy import load_anatomy
from neuronav.phantom._lesions import choose_shapes
from tests.conftest import require_binary
from tests.phantom.conftest import GLIOMA_SEED

NAMES = ["T1", "T2", "FLAIR", "T1c"]


def _labels_1mm(study: PhantomStudy) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(study.out_dir / "truth" / "labels_1mm.nii.gz")
    return np.asarray(img.dataobj), img.affine


def _volumes_from_map(labels: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    vox_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    n = np.bincount(labels.ravel(), minlength=4)
    return {
        "label1": n[1] * vox_ml,
        "label2": n[2] * vox_ml,
        "label3": n[3] * vox_ml,
        "whole_tumour": (n[1] + n[2] + n[3]) * vox_ml,
        "tumour_core": (n[1] + n[3]) * vox_ml,
        "enhancing": n[3] * vox_ml,
    }


def _sample_nearest(img: nib.Nifti1Image, ras: np.ndarray) -> np.ndarray:
    ijk = np.rint(ras @ np.linalg.inv(img.affine)[:3, :3].T + np.linalg.inv(img.affine)[:3, 3]).astype(int)
    data = np.asarray(img.dataobj)
    ok = np.all((ijk >= 0) & (ijk < np.array(data.shape)), axis=1)
    return np.asarray(data[tuple(ijk[ok].T)], dtype=np.float64)


# --- truth --------------------------------------------------------------------------------------


@pytest.fixture(params=["glioma", "meningioma", "metastasis", "normal"])
def any_study(request: pytest.FixtureRequest) -> PhantomStudy:
    study: PhantomStudy = request.getfixturevalue(request.param)
    return study


def test_truth_volumes_equal_label_map_counts(any_study: PhantomStudy) -> None:
    study = any_study
    labels, affine = _labels_1mm(study)
    expected = _volumes_from_map(labels, affine)
    for key, value in expected.items():
        assert study.truth["volumes_ml"][key] == pytest.approx(value, abs=1e-3), key
    on_disk = json.loads((study.out_dir / "truth.json").read_text())
    assert on_disk == study.truth
    assert sum(les["volume_ml"] for les in study.truth["lesions"]) == pytest.approx(expected["whole_tumour"], abs=1e-3)


def test_glioma_is_intra_axial_with_core_rim_and_oedema(glioma: PhantomStudy) -> None:
    t = glioma.truth
    assert t["lesion_type"] == "glioma" and t["lesion_count"] == 1
    v = t["volumes_ml"]
    assert 10.0 < v["whole_tumour"] < 100.0
    assert v["label1"] > 1.0 and v["label2"] > 5.0 and v["label3"] > 2.0
    assert v["label2"] > 0.3 * v["whole_tumour"]  # large oedema
    labels, _ = _labels_1mm(glioma)
    anatomy = load_anatomy()  # the 1 mm map is on the template grid (same voxels, rotated affine)
    assert labels.shape == anatomy.shape
    assert np.all(anatomy.brain[labels > 0])  # intra-axial: every voxel inside the brain
    les = t["lesions"][0]
    c = np.array(les["centroid_template_mm"])
    ijk = tuple(np.rint(c - anatomy.affine[:3, 3]).astype(int))
    assert anatomy.brain[ijk]
    assert les["hemisphere"] == ("right" if c[0] > 0 else "left")
    # The enhancing rim surrounds the core: most core voxels have no oedema/background neighbour.
    core = labels == 1
    touching = core & (np.roll(labels, 1, 0) == 0) | core & (np.roll(labels, -1, 0) == 0)
    assert touching.sum() < 0.05 * core.sum()


def test_meningioma_is_extra_axial_and_homogeneously_enhancing(meningioma: PhantomStudy) -> None:
    t = meningioma.truth
    v = t["volumes_ml"]
    assert t["lesion_count"] == 1 and t["lesions"][0]["location"] in ("convexity", "falx")
    assert v["enhancing"] >= 0.85 * v["tumour_core"] > 2.0
    labels, _ = _labels_1mm(meningioma)
    anatomy = load_anatomy()
    tumour = (labels == 1) | (labels == 3)
    if t["lesions"][0]["location"] == "convexity":
        outside = tumour & ~anatomy.brain
        assert outside.sum() > 0.02 * tumour.sum()  # reaches the dura, outside the brain
    else:  # based on the falx: it reaches the midline and stays on one side of it
        x = np.argwhere(tumour)[:, 0] + anatomy.affine[0, 3]
        assert np.min(np.abs(x)) < 1.5
        assert min(np.mean(x > 0.5), np.mean(x < -0.5)) < 0.02
    assert not np.any(tumour & (anatomy.classes >= 4) & (anatomy.classes <= 8))  # never in bone/scalp
    assert not t["haemorrhage"]["present"] and t["haemorrhage"]["volume_ml"] == 0.0


def test_metastases_are_small_with_large_oedema(metastasis: PhantomStudy) -> None:
    t = metastasis.truth
    assert 1 <= t["lesion_count"] <= 3
    v = t["volumes_ml"]
    assert v["label3"] > 0.1
    assert v["label2"] > 2.0 * v["tumour_core"]  # oedema disproportionate to the lesion
    for les in t["lesions"]:
        assert les["tumour_core_ml"] < 8.0
        assert les["location"] == "grey-white junction"
    if t["lesion_count"] > 1:
        cs = np.array([les["centroid_template_mm"] for les in t["lesions"]])
        assert np.min(np.linalg.norm(cs[:, None] - cs[None], axis=-1) + np.eye(len(cs)) * 1e3) > 10.0


def test_normal_study_has_no_tumour_and_no_shift(normal: PhantomStudy) -> None:
    t = normal.truth
    assert t["lesion_count"] == 0 and t["lesions"] == []
    assert all(value == 0.0 for value in t["volumes_ml"].values())
    assert t["whole_tumour_centroid"] is None
    assert t["midline_shift_mm"] == 0.0
    assert not t["haemorrhage"]["present"]
    labels, _ = _labels_1mm(normal)
    assert not labels.any()
    for s in normal.series:
        assert not np.asarray(nib.load(s.label_path).dataobj).any()


def test_large_lesion_shifts_the_midline_away_from_itself(glioma: PhantomStudy) -> None:
    t = glioma.truth
    assert t["volumes_ml"]["whole_tumour"] > 30.0
    shift = t["midline_shift_mm"]
    assert abs(shift) > 0.5
    # Positive = towards the patient's right: a left lesion pushes the septum right.
    assert np.sign(shift) == (1.0 if t["lesions"][0]["hemisphere"] == "left" else -1.0)
    after = np.array(t["midline_shift_reference"]["after_template_mm"])
    before = np.array(t["midline_shift_reference"]["before_template_mm"])
    assert after[0] - before[0] == pytest.approx(shift, abs=1e-3)


def test_whole_tumour_centroid_is_in_scanner_space(glioma: PhantomStudy) -> None:
    """The recorded centroid is where the tumour is in the written images (rotated head)."""
    c = np.array(glioma.truth["whole_tumour_centroid"]["ras_mm"])
    t1c = glioma.series_named("T1c")
    img = nib.load(t1c.label_path)
    data = np.asarray(img.dataobj)
    ijk = np.argwhere(data > 0).astype(float)
    centroid = (ijk @ img.affine[:3, :3].T + img.affine[:3, 3]).mean(axis=0)
    assert np.linalg.norm(centroid - c) < 1.5


# --- haemorrhage -----------------------------------------------------------------------------------


def test_haemorrhage_lies_in_the_core_and_is_t1_bright_t2_dark(glioma: PhantomStudy) -> None:
    t = glioma.truth
    assert t["haemorrhage"]["present"] and t["haemorrhage"]["volume_ml"] > 0.1
    hem_img = nib.load(glioma.out_dir / t["haemorrhage"]["mask"])
    hem = np.asarray(hem_img.dataobj) > 0
    labels, _ = _labels_1mm(glioma)
    assert np.all(labels[hem] == 1)  # BraTS labels unchanged: haemorrhage is inside label 1
    assert hem.sum() / 1000.0 == pytest.approx(t["haemorrhage"]["volume_ml"], abs=1e-3)
    aff = hem_img.affine
    # Compare image intensity in the haemorrhage with the rest of the core (eroded to avoid edges).
    from scipy.ndimage import binary_erosion

    rest = binary_erosion(labels == 1) & ~binary_erosion(hem, iterations=-1) & ~hem
    hem_core = binary_erosion(hem)
    assert hem_core.sum() > 20 and rest.sum() > 20
    to_ras = lambda m: np.argwhere(m) @ aff[:3, :3].T + aff[:3, 3]  # noqa: E731
    for name, brighter in (("T1", True), ("T2", False)):
        img = nib.load(glioma.series_named(name).path)
        h = np.median(_sample_nearest(img, to_ras(hem_core)))
        r = np.median(_sample_nearest(img, to_ras(rest)))
        assert (h > 1.5 * r) if brighter else (h < 0.5 * r), (name, h, r)


def test_haemorrhage_needs_a_lesion(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="haemorrhage"):
        generate_study(tmp_path, seed=1, lesion="none", haemorrhage=True)


# --- determinism -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_study_even_when_overwritten(glioma: PhantomStudy, tmp_path: Path) -> None:
    before = {
        s.name: (
            np.asarray(nib.load(s.path).dataobj).copy(),
            nib.load(s.path).affine,
            np.asarray(nib.load(s.label_path).dataobj).copy(),
        )
        for s in glioma.series
    }
    out = tmp_path / "again"
    shutil.copytree(glioma.out_dir, out)  # an earlier phantom in the folder is replaced, not mixed in
    again = generate_study(out, seed=GLIOMA_SEED, lesion="glioma", fmt="nifti", haemorrhage=True)
    assert again.truth == glioma.truth
    for s in again.series:
        data, affine, labels = before[s.name]
        assert np.array_equal(np.asarray(nib.load(s.path).dataobj), data)
        assert np.array_equal(nib.load(s.path).affine, affine)
        assert np.array_equal(np.asarray(nib.load(s.label_path).dataobj), labels)


def test_different_seeds_give_different_lesions() -> None:
    anatomy = load_anatomy()
    for kind in ("glioma", "meningioma", "metastasis"):
        a = choose_shapes(np.random.default_rng(1), anatomy, kind, need_core=False)
        b = choose_shapes(np.random.default_rng(2), anatomy, kind, need_core=False)
        assert np.linalg.norm(np.array(a[0].centre) - np.array(b[0].centre)) > 1.0
        assert a[0].r_tumour != b[0].r_tumour


# --- series geometry -----------------------------------------------------------------------------------


def test_each_label_map_is_on_its_series_grid(glioma: PhantomStudy) -> None:
    assert [s.name for s in glioma.series] == NAMES
    for s in glioma.series:
        img, lab = nib.load(s.path), nib.load(s.label_path)
        assert img.shape == lab.shape
        np.testing.assert_allclose(img.affine, lab.affine, atol=1e-5)
        assert np.asarray(lab.dataobj).dtype == np.uint8
        assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2, 3}
        assert np.count_nonzero(np.asarray(lab.dataobj)) > 0
    sag = glioma.series_named("T1")
    assert nib.aff2axcodes(nib.load(sag.path).affine)[2] in ("R", "L")  # sagittal slices
    t2 = nib.load(glioma.series_named("T2").path)
    assert np.linalg.norm(t2.affine[:3, 2]) == pytest.approx(5.0)


def test_images_have_mri_contrast(glioma: PhantomStudy) -> None:
    """WM brighter than GM brighter than CSF on T1; CSF bright on T2, dark on FLAIR."""
    anatomy = load_anatomy()
    _, world_affine = _labels_1mm(glioma)
    labels, _ = _labels_1mm(glioma)
    healthy = labels == 0
    masks = {k: (getattr(anatomy, k) > 0.95) & healthy for k in ("wm", "gm", "csf")}
    med = {}
    for name in ("T1", "T2", "FLAIR"):
        img = nib.load(glioma.series_named(name).path)
        med[name] = {
            k: np.median(_sample_nearest(img, np.argwhere(m)[::7] @ world_affine[:3, :3].T + world_affine[:3, 3]))
            for k, m in masks.items()
        }
    assert med["T1"]["wm"] > med["T1"]["gm"] > med["T1"]["csf"]
    assert med["T2"]["csf"] > med["T2"]["gm"] > med["T2"]["wm"]
    assert med["FLAIR"]["gm"] > med["FLAIR"]["csf"] and med["FLAIR"]["wm"] > med["FLAIR"]["csf"]
    flair = nib.load(glioma.series_named("FLAIR").path)
    oedema = np.argwhere(labels == 2)[::5] @ world_affine[:3, :3].T + world_affine[:3, 3]
    assert np.median(_sample_nearest(flair, oedema)) > 1.2 * med["FLAIR"]["wm"]


def test_clinical_profile_is_about_600_files() -> None:
    p = GEOMETRY_PROFILES["clinical"]
    assert [s.name for s in p.series] == NAMES
    n = sum(s.shape[2] for s in p.series if not s.multiframe)
    assert 500 <= n <= 700
    assert set(GEOMETRY_PROFILES) == {"clinical", "iso1mm", "varied"}
    assert {s.orientation for s in GEOMETRY_PROFILES["varied"].series} >= {"sagittal", "coronal", "oblique"}


# --- DICOM ---------------------------------------------------------------------------------------------------


@pytest.mark.dcm2niix
def test_dicom_geometry_matches_dcm2niix(varied_dicom: PhantomStudy, tmp_path: Path) -> None:
    exe = require_binary("dcm2niix")
    assert varied_dicom.truth["head_rotation"]["angles_deg"] != [0.0, 0.0, 0.0]
    for s in varied_dicom.series:
        out = tmp_path / s.name
        out.mkdir()
        subprocess.run(
            [exe, "-z", "n", "-f", "x", "-o", str(out), str(s.path)], check=True, capture_output=True, timeout=120
        )
        converted = sorted(out.glob("x*.nii"))
        assert len(converted) == 1, [p.name for p in out.iterdir()]
        ref = nib.as_closest_canonical(nib.load(converted[0]))
        lab = nib.as_closest_canonical(nib.load(s.label_path))
        assert ref.shape[:3] == lab.shape, s.name
        np.testing.assert_allclose(ref.affine, lab.affine, atol=1e-3, err_msg=s.name)


def test_dicom_metadata(varied_dicom: PhantomStudy) -> None:
    study_uids, frames = set(), set()
    by_name = {}
    for s in varied_dicom.series:
        files = sorted(s.path.glob("IM*.dcm"))
        assert len(files) == s.n_files
        dss = [pydicom.dcmread(f) for f in files]
        by_name[s.name] = dss
        for ds in dss:
            assert str(ds.PatientName) == "Phantom^Seed0042"
            assert ds.StudyDescription == "MRI BRAIN WITH AND WITHOUT CONTRAST"
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
                assert uid.startswith("2.25.") and len(uid) <= 64 and uid.is_valid
            study_uids.add(ds.StudyInstanceUID)
            frames.add(ds.FrameOfReferenceUID)
            assert ("ContrastBolusAgent" in ds) == (s.name == "T1c")
        assert len({ds.SOPInstanceUID for ds in dss}) == len(dss)
    assert len(study_uids) == 1 and len(frames) == 1
    assert by_name["T1c"][0].SOPClassUID == pydicom.uid.EnhancedMRImageStorage
    assert by_name["T1c"][0].NumberOfFrames == 216
    assert by_name["T1c"][0].ContrastBolusAgent == "Gadobutrol"
    # 'descending' series: the first instance is the last slice along the slice normal.
    flair = by_name["FLAIR"]
    normal = np.cross(*np.array(flair[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    pos = [
        float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float)))
        for ds in sorted(flair, key=lambda d: d.InstanceNumber)
    ]
    assert all(a > b for a, b in itertools.pairwise(pos))
    assert varied_dicom.truth["series"][2]["orientation"] == "oblique"
    assert varied_dicom.truth["study_instance_uid"] in study_uids


@pytest.mark.slow
def test_dicom_uids_and_pixels_are_deterministic(varied_dicom: PhantomStudy, tmp_path: Path) -> None:
    again = generate_study(tmp_path / "again", seed=42, lesion="meningioma", fmt="dicom", profile="varied")
    assert again.truth == varied_dicom.truth
    for a, b in zip(varied_dicom.series, again.series, strict=True):
        fa, fb = sorted(a.path.glob("*.dcm")), sorted(b.path.glob("*.dcm"))
        assert [f.name for f in fa] == [f.name for f in fb]
        for x, y in zip(fa[:: max(1, len(fa) // 5)], fb[:: max(1, len(fb) // 5)], strict=True):
            dx, dy = pydicom.dcmread(x), pydicom.dcmread(y)
            assert dx.SOPInstanceUID == dy.SOPInstanceUID
            assert dx.PixelData == dy.PixelData


# --- arguments and progress ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": 1, "lesion": "astrocytoma"}, "lesion type"),
        ({"seed": 1, "fmt": "png"}, "format"),
        ({"seed": 1, "profile": "fancy"}, "profile"),
        ({"seed": -3}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 1, "haemorrhage": "yes"}, "haemorrhage"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        generate_study(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # nothing written


def test_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        generate_study(tmp_path, seed=1, lesion="none")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_progress_is_reported_in_order(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    generate_study(
        tmp_path,
        seed=3,
        lesion="none",
        fmt="nifti",
        profile="varied",
        progress=lambda stage, f: seen.append((stage, f)),
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any("FLAIR" in stage for stage, _ in seen)
