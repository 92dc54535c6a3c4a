"""Preprocessing: registration accuracy against known transforms, masks, channels, round trips.

Test images are made from the MNI152 template itself: resampled through a known affine onto an
oblique grid, so the true scanner → MNI map is known exactly. A synthetic "T2"/"FLAIR" inverts the
template's contrast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from neuronav.analysis.grid import load_template
from neuronav.analysis.preprocess import WORKING_GRID, Preprocessed, preprocess
from neuronav.analysis.registration import resample
from neuronav.errors import InputError
from neuronav.volume.core import Volume

LANDMARKS_MNI = np.array(
    [[0, -18, 18], [40, -20, 30], [-40, -20, 30], [0, 50, 10], [0, -80, 10], [0, -20, 60], [0, -20, -30]], float
)


def _rigid(rot_deg: tuple[float, float, float], trans: tuple[float, float, float], scale: float = 1.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rot_deg, degrees=True).as_matrix() * scale
    m[:3, 3] = trans
    return m


def _grid(
    spacing: float, oblique_deg: float, extent_mm: tuple[float, float, float], centre: tuple[float, ...]
) -> tuple:
    shape = tuple(int(np.ceil(e / spacing)) for e in extent_mm)
    g = np.eye(4)
    g[:3, :3] = Rotation.from_euler("z", oblique_deg, degrees=True).as_matrix() * spacing
    g[:3, 3] = -g[:3, :3] @ (np.array(shape) / 2.0) + np.array(centre)
    return shape, g


def _render(world_to_mni: np.ndarray, shape: tuple, grid: np.ndarray, contrast: str = "t1") -> np.ndarray:
    t = load_template()
    data = np.asarray(resample(t.t1, t.affine, shape, grid, world_to_mni), dtype=np.float32)
    if contrast == "t2":
        data = np.where(data > 0.05, 1.1 - data, 0.0).astype(np.float32)
    return (data * 1000).astype(np.float32)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:3, :3].T + m[:3, 3]


# the study: scanner frame of T1c/T1/T2 → MNI is W2M; FLAIR sits in a frame moved by a rigid MOVE
W2M = _rigid((12.0, -6.0, 8.0), (8.0, -25.0, 30.0), 1.05)
FLAIR_TO_REF = _rigid((4.0, -3.0, 5.0), (4.0, -3.0, 5.0))


@pytest.fixture(scope="module")
def study() -> dict[str, Volume]:
    shape, g = _grid(1.5, 10.0, (200, 230, 200), (5.0, 20.0, -20.0))
    t1 = _render(W2M, shape, g)
    t2 = _render(W2M, shape, g, "t2")
    # FLAIR: its own grid (1.2 × 1.2 × 3 mm, axial), content moved by FLAIR_TO_REF
    fshape = (160, 180, 60)
    fg = np.diag([1.2, 1.2, 3.0, 1.0])
    fg[:3, 3] = -fg[:3, :3] @ (np.array(fshape) / 2.0) + np.array([0.0, 15.0, -10.0])
    flair = _render(W2M @ FLAIR_TO_REF, fshape, fg, "t2")
    return {
        "T1c": Volume(data=t1, affine=g),
        "T2": Volume(data=t2, affine=g),
        "FLAIR": Volume(data=flair[::-1], affine=fg @ np.diag([-1.0, 1, 1, 1]) @ _shift_x(fshape[0])),
    }


def _shift_x(n: int) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = -(n - 1)
    return m


@pytest.fixture(scope="module")
def result(study: dict[str, Volume], tmp_path_factory: pytest.TempPathFactory) -> tuple[Preprocessed, Path]:
    debug = tmp_path_factory.mktemp("debug")
    steps: list[str] = []
    res = preprocess(study, debug_dir=debug, progress=lambda s, f: steps.append(s))
    assert steps[-1] == "preprocess done"
    return res, debug


def test_world_to_mni_recovers_known_transform(result: tuple[Preprocessed, Path]) -> None:
    res, _ = result
    world = _apply(np.linalg.inv(W2M), LANDMARKS_MNI)
    err = np.linalg.norm(_apply(res.world_to_mni, world) - LANDMARKS_MNI, axis=1)
    assert err.max() < 2.5, err


def test_coregistration_recovers_rigid_misalignment(result: tuple[Preprocessed, Path]) -> None:
    res, _ = result
    assert res.reference == "T1c"
    world = _apply(np.linalg.inv(W2M), LANDMARKS_MNI)
    flair_pts = _apply(np.linalg.inv(FLAIR_TO_REF), world)
    err = np.linalg.norm(_apply(res.coreg["FLAIR"], flair_pts) - world, axis=1)
    assert err.max() < 1.5, err
    np.testing.assert_allclose(res.coreg["T1c"], np.eye(4))
    # T2 shares the reference's frame: identity or very close to it
    err_t2 = np.linalg.norm(_apply(res.coreg["T2"], world) - world, axis=1)
    assert err_t2.max() < 1.0


def test_channels_and_mask(result: tuple[Preprocessed, Path]) -> None:
    res, _ = result
    assert set(res.channels) == {"T1c", "T2", "FLAIR"}
    for ch in res.channels.values():
        assert ch.shape == WORKING_GRID.shape == (96, 112, 96)
        assert ch.dtype == np.float32
        inside = ch[res.brain_mask]
        assert abs(float(inside.mean())) < 0.1
        assert 0.8 < float(inside.std()) < 1.2
        assert float(np.abs(ch[~res.brain_mask]).max()) == 0.0
        assert float(np.abs(ch).max()) <= 5.0
    assert res.brain_mask.dtype == np.bool_
    litres = res.brain_mask.sum() * WORKING_GRID.voxel_volume_ml / 1000
    # the MNI152 brain mask (CSF included) is 1.88 L; we dilate it by 2 mm and cut background
    assert 1.1 < litres < 2.2
    # T1c (template T1) and its inverted-contrast copy anticorrelate inside the brain
    inner = ndi.binary_erosion(res.brain_mask, iterations=4)
    r = np.corrcoef(res.channels["T1c"][inner], res.channels["T2"][inner])[0, 1]
    assert r < -0.7


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_round_trip_to_reference(result: tuple[Preprocessed, Path], study: dict[str, Volume]) -> None:
    res, _ = result
    ref = study["T1c"]
    centre = _apply(np.linalg.inv(W2M), np.array([[30.0, -10.0, 20.0]]))[0]
    ijk = np.indices(ref.shape).reshape(3, -1).T
    dist = np.linalg.norm(ref.index_to_ras(ijk) - centre, axis=1).reshape(ref.shape)
    blob = (dist < 15.0).astype(np.uint8)
    on_grid = np.asarray(res.from_reference(blob.astype(np.float32), order=1)) > 0.5
    back = res.to_reference(on_grid.astype(np.uint8), order=0)
    assert back.shape == ref.shape and back.dtype == np.uint8
    assert _dice(back > 0, blob > 0) > 0.9
    prob = res.to_reference(on_grid.astype(np.float32), order=1)
    assert prob.dtype == np.float32 and _dice(prob > 0.5, blob > 0) > 0.9
    # the working grid's MNI position of the blob is where the known transform puts it
    grid_centre = np.array(np.nonzero(on_grid)).mean(axis=1)
    mni = WORKING_GRID.affine[:3, :3] @ grid_centre + WORKING_GRID.affine[:3, 3]
    assert np.linalg.norm(mni - [30.0, -10.0, 20.0]) < 2.0
    np.testing.assert_allclose(res.working_to_world(), np.linalg.inv(res.world_to_mni) @ WORKING_GRID.affine)


def test_debug_dir(result: tuple[Preprocessed, Path], study: dict[str, Volume]) -> None:
    res, debug = result
    for name in (
        "01_reoriented_T1c",
        "02_coregistered_FLAIR",
        "03_mni_T2",
        "04_biascorrected_FLAIR",
        "05_normalised_T1c",
    ):
        assert (debug / f"{name}.nii.gz").exists(), name
    img = nib.load(str(debug / "05_normalised_T1c.nii.gz"))
    np.testing.assert_allclose(img.affine, WORKING_GRID.affine)
    np.testing.assert_allclose(np.asarray(img.dataobj), res.channels["T1c"])
    mask = nib.load(str(debug / "brain_mask.nii.gz"))
    assert np.array_equal(np.asarray(mask.dataobj) > 0, res.brain_mask)
    reo = nib.load(str(debug / "01_reoriented_FLAIR.nii.gz"))
    assert nib.aff2axcodes(reo.affine) == ("R", "A", "S")
    co = nib.load(str(debug / "02_coregistered_FLAIR.nii.gz"))
    np.testing.assert_allclose(co.affine, study["T1c"].canonical().affine)
    doc = json.loads((debug / "preprocess.json").read_text())
    np.testing.assert_allclose(doc["world_to_mni"], res.world_to_mni)
    assert set(doc["coreg"]) == {"T1c", "T2", "FLAIR"} and doc["timings_s"]["register_mni"] > 0


def test_only_t1_is_refused(study: dict[str, Volume]) -> None:
    with pytest.raises(InputError, match=r"T1c, FLAIR or T2; given: T1"):
        preprocess({"T1": study["T1c"]})
    with pytest.raises(InputError, match="given: nothing"):
        preprocess({})


def test_single_slice_and_tiny_fov_refused() -> None:
    slab = Volume(data=np.ones((256, 256, 1), np.float32), affine=np.eye(4))
    with pytest.raises(InputError, match=r"does not look like a brain MRI: .*single slice"):
        preprocess({"FLAIR": slab})
    tiny = Volume(data=np.random.default_rng(0).random((40, 40, 40)).astype(np.float32), affine=np.eye(4))
    with pytest.raises(InputError, match=r"does not look like a brain MRI: .*field of view"):
        preprocess({"T2": tiny})


def test_non_head_object_refused() -> None:
    rng = np.random.default_rng(1)
    idx = np.indices((120, 120, 120)) - 60
    sphere = (np.linalg.norm(idx, axis=0) < 50).astype(np.float32) * (1 + 0.1 * rng.random((120, 120, 120)))
    vol = Volume(data=sphere.astype(np.float32), affine=np.diag([1.5, 1.5, 1.5, 1.0]))
    with pytest.raises(InputError, match=r"does not look like a brain MRI: .*MNI152"):
        preprocess({"T2": vol})


def test_real_brain_nibabel_anatomical() -> None:
    """nibabel's anatomical.nii: a real SPM-normalised brain, cropped to 66×82×50 mm around the
    centre. Its own coordinates are already MNI-like, so the registration must stay near identity."""
    path = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")
    img = nib.load(path)
    vol = Volume(data=np.asarray(img.dataobj, dtype=np.float32), affine=img.affine)
    from neuronav.analysis import registration as reg

    canon = vol.canonical()
    res = reg.register_to_mni(reg.make_reg_image(canon.data, canon.affine))
    world_to_mni = np.linalg.inv(res.mni_to_world)
    ijk = np.array(vol.shape) / 2.0 - 0.5
    centre = vol.index_to_ras(ijk)
    assert np.linalg.norm(_apply(world_to_mni, centre[None])[0] - centre) < 5.0
    # the FOV centre lies in the deep brain, near the MNI brain centre (0, -18, 18)
    assert np.linalg.norm(_apply(world_to_mni, centre[None])[0] - [0, -18, 18]) < 25.0
    # registration works, but the crop images too little of the brain to be analysed
    with pytest.raises(InputError, match="of the brain"):
        preprocess({"T1": vol, "T2": vol})
