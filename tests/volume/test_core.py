"""The Volume type and NIfTI I/O."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuronav.errors import NiftiReadError
from neuronav.volume import Volume, load_nifti, save_nifti


def oblique_affine() -> np.ndarray:
    aff = np.array([[0.0, 0.0, -2.0, 50.0], [-1.5, 0.0, 0.0, 20.0], [0.0, 1.2, 0.0, -30.0], [0, 0, 0, 1]])
    return aff


def test_spacing_and_voxel_volume() -> None:
    v = Volume(np.zeros((4, 5, 6), np.float32), oblique_affine())
    assert v.spacing == pytest.approx((1.5, 1.2, 2.0))
    assert v.voxel_volume_ml == pytest.approx(1.5 * 1.2 * 2.0 / 1000)


def test_index_ras_round_trip() -> None:
    v = Volume(np.zeros((4, 5, 6), np.float32), oblique_affine())
    ijk = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.0, 0.25]])
    np.testing.assert_allclose(v.ras_to_index(v.index_to_ras(ijk)), ijk, atol=1e-9)
    np.testing.assert_allclose(v.index_to_ras([0, 0, 0]), [50.0, 20.0, -30.0])


def test_canonical_keeps_world_positions() -> None:
    rng = np.random.default_rng(0)
    v = Volume(rng.normal(size=(4, 5, 6)).astype(np.float32), oblique_affine())
    c = v.canonical()
    assert c.orientation_codes == "RAS"
    # every voxel keeps its value at the same world position
    for ijk in [(0, 0, 0), (3, 4, 5), (2, 1, 3)]:
        world = v.index_to_ras(ijk)
        cijk = np.rint(c.ras_to_index(world)).astype(int)
        assert c.data[tuple(cijk)] == v.data[ijk]


def test_rejects_bad_geometry() -> None:
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((2, 2)), np.eye(4))


def test_nifti_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    v = Volume(rng.integers(0, 900, (7, 8, 9)).astype(np.int16), oblique_affine())
    path = save_nifti(v, tmp_path / "a" / "img.nii.gz")
    assert path.exists() and not list(path.parent.glob(".partial*"))
    back = load_nifti(path)
    np.testing.assert_array_equal(back.data, v.data)
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-5)
    hdr = nib.load(str(path)).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1


def test_load_nifti_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not nifti")
    with pytest.raises(NiftiReadError, match=r"broken\.nii\.gz"):
        load_nifti(bad)
    four_d = tmp_path / "4d.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), str(four_d))
    with pytest.raises(NiftiReadError, match="expected a 3D image"):
        load_nifti(four_d)
