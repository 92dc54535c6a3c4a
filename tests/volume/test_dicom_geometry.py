"""DICOM series → Volume matches dcm2niix: same voxels after reorientation, affines within 1e-3 mm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from neuronav.ingest import scan
from neuronav.volume import Volume
from neuronav.volume.dicom import volume_from_series
from neuronav.volume.dicom_write import new_uid, write_dicom_series
from tests.conftest import require_binary

# LPS direction cosines of the in-plane axes (row direction, column direction) of each acquisition
PLANES = {
    "axial": ((1, 0, 0), (0, 1, 0)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
}
RESOLUTIONS = {
    "3d_1mm": ((1.0, 1.0, 1.0), (48, 56, 40)),
    "2d_5mm": ((0.9, 0.9, 5.0), (64, 60, 12)),
}


def make_affine(plane: str, spacing: tuple[float, float, float]) -> np.ndarray:
    if plane == "oblique":
        row, col = np.asarray(PLANES["axial"][0], float), np.asarray(PLANES["axial"][1], float)
        rot = Rotation.from_euler("xyz", [17.0, -8.0, 11.0], degrees=True).as_matrix()
        row, col = rot @ row, rot @ col
    else:
        row, col = (np.asarray(v, float) for v in PLANES[plane])
    normal = np.cross(row, col)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[0], col * spacing[1], normal * spacing[2]
    lps[:3, 3] = [-31.5, -20.25, -14.0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def make_image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.normal(size=shape), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 3000
    return img.astype(np.int16)


def dcm2niix_volume(dicom_dir: Path, out_dir: Path) -> nib.Nifti1Image:
    binary = require_binary("dcm2niix")
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [binary, "-z", "n", "-b", "n", "-f", "ref", "-o", str(out_dir), str(dicom_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    files = sorted(out_dir.glob("ref*.nii"))
    assert proc.returncode == 0 and len(files) == 1, proc.stdout + proc.stderr
    return nib.load(str(files[0]))


def ours(dicom_dir: Path) -> Volume:
    inv = scan([dicom_dir])
    assert not inv.problems
    assert len(inv.all_series) == 1
    return volume_from_series(inv.all_series[0])


def write(volume: Volume, folder: Path, **kwargs: object) -> None:
    write_dicom_series(
        volume,
        folder,
        study={"StudyInstanceUID": new_uid(), "PatientID": "T", "PatientName": "Test^Geometry"},
        series={"SeriesInstanceUID": new_uid(), "SeriesNumber": 3, "SeriesDescription": "geometry"},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.dcm2niix
@pytest.mark.parametrize("resolution", sorted(RESOLUTIONS))
@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("plane", ["axial", "sagittal", "coronal", "oblique"])
def test_matches_dcm2niix(tmp_path: Path, plane: str, order: str, resolution: str) -> None:
    spacing, shape = RESOLUTIONS[resolution]
    truth = Volume(make_image(shape), make_affine(plane, spacing))
    write(truth, tmp_path / "dcm", slice_order=order)

    mine = ours(tmp_path / "dcm")
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    canon = mine.canonical()

    assert canon.shape == ref.shape
    np.testing.assert_allclose(canon.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(canon.data, np.asarray(ref.dataobj))
    # and both equal the volume that was written
    np.testing.assert_allclose(mine.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(canon.data, truth.canonical().data)
    assert mine.spacing == pytest.approx(spacing, abs=1e-4)


@pytest.mark.dcm2niix
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_enhanced_multiframe_matches_dcm2niix(tmp_path: Path, order: str) -> None:
    truth = Volume(make_image((40, 44, 16), seed=3), make_affine("oblique", (1.1, 1.1, 3.0)))
    write(truth, tmp_path / "dcm", multiframe=True, slice_order=order)
    mine = ours(tmp_path / "dcm")
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    np.testing.assert_allclose(mine.canonical().affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(mine.canonical().data, np.asarray(ref.dataobj))
    assert len(mine.source_uids) == 1


@pytest.mark.dcm2niix
def test_rescale_slope_intercept_applied_like_dcm2niix(tmp_path: Path) -> None:
    values = make_image((32, 32, 10), seed=5).astype(np.float32) / 7.0 - 120.0  # float → slope/intercept
    truth = Volume(values, make_affine("axial", (1.0, 1.0, 2.0)))
    write(truth, tmp_path / "dcm")
    mine = ours(tmp_path / "dcm")
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    assert mine.data.dtype == np.float32
    np.testing.assert_allclose(mine.canonical().data, ref.get_fdata(), rtol=1e-5, atol=1e-3)
    # quantisation to 12 bits: within half a step of the original values
    step = (values.max() - values.min()) / 4095
    np.testing.assert_allclose(mine.data, values, atol=step / 2 + 1e-4)


def test_slices_sorted_by_position_not_by_file_or_instance_number(tmp_path: Path) -> None:
    truth = Volume(make_image((20, 24, 9), seed=7), make_affine("sagittal", (1.0, 1.0, 1.5)))
    write(truth, tmp_path / "dcm", slice_order="descending")
    # shuffle the file names so that directory order says nothing
    files = sorted((tmp_path / "dcm").glob("*.dcm"))
    rng = np.random.default_rng(1)
    for n, f in enumerate(rng.permutation(len(files))):
        files[f].rename(tmp_path / "dcm" / f"x{n:03d}.tmp")
    for f in (tmp_path / "dcm").glob("*.tmp"):
        f.rename(f.with_suffix(".dcm"))
    mine = ours(tmp_path / "dcm")
    np.testing.assert_array_equal(mine.canonical().data, truth.canonical().data)
    np.testing.assert_allclose(mine.affine, truth.affine, atol=1e-4)


@pytest.mark.dcm2niix
def test_slice_spacing_comes_from_positions_not_slice_thickness(tmp_path: Path) -> None:
    """5 mm slices with a 1 mm gap (6 mm apart): the volume must be 6 mm apart, like dcm2niix."""
    from pydicom import dcmread

    truth = Volume(make_image((40, 44, 10), seed=9), make_affine("oblique", (0.9, 0.9, 6.0)))
    write(truth, tmp_path / "dcm")
    for f in (tmp_path / "dcm").glob("*.dcm"):
        ds = dcmread(f)
        ds.SliceThickness = "5"
        ds.SpacingBetweenSlices = "5"  # wrong on purpose: positions say 6
        ds.save_as(f)
    mine = ours(tmp_path / "dcm")
    assert mine.spacing[2] == pytest.approx(6.0, abs=1e-4)
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    np.testing.assert_allclose(mine.canonical().affine, ref.affine, atol=1e-3)
    np.testing.assert_allclose(mine.affine, truth.affine, atol=1e-3)
