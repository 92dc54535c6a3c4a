"""What real scanners send, compared with dcm2niix: Philips private scaling, uncompressed YBR_FULL_422.

The inputs are made here with pydicom (no data set in git): a series written by
:func:`~neuronav.volume.dicom_write.write_dicom_series`, then changed the way the vendor's files are.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import convert_color_space

from neuronav.errors import DicomReadError
from neuronav.volume import Volume
from tests.conftest import require_binary
from tests.volume.test_dicom_geometry import dcm2niix_volume, make_affine, make_image, ours, write

PHILIPS_CREATOR = "Philips MR Imaging DD 001"


@pytest.mark.dcm2niix
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-vr", "implicit-vr"])
def test_philips_private_scaling_applied_like_dcm2niix(tmp_path: Path, implicit: bool) -> None:
    """Philips precise values FP = (PV × RS + RI) / (RS × SS), SS the private MR Scale Slope (2005,100E)."""
    truth = Volume(make_image((36, 40, 8), seed=11), make_affine("oblique", (1.0, 1.0, 3.0)))
    write(truth, tmp_path / "dcm")
    for f in sorted((tmp_path / "dcm").glob("*.dcm")):
        ds = dcmread(f)
        ds.Manufacturer = "Philips Medical Systems"
        ds.RescaleSlope, ds.RescaleIntercept = "1.53724", "0"
        block = ds.private_block(0x2005, PHILIPS_CREATOR, create=True)
        block.add_new(0x0E, "FL", 0.00734)  # one per series (dcm2niix applies the first slice's to all)
        if implicit:
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
        ds.save_as(f, implicit_vr=implicit, little_endian=True)
    mine = ours(tmp_path / "dcm")
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    canon = mine.canonical()
    np.testing.assert_allclose(canon.affine, ref.affine, atol=1e-3)
    assert mine.data.dtype == np.float32
    np.testing.assert_allclose(canon.data, ref.get_fdata(), rtol=1e-5, atol=1e-3)
    # and the values are the precise ones, not the displayed ones (PV × RS + RI)
    stored = truth.canonical().data.astype(np.float64)
    assert not np.allclose(canon.data, stored * 1.53724, rtol=1e-3)


def _ybr_422(grey: np.ndarray) -> bytes:
    """Rows × columns grey values as uncompressed YBR_FULL_422 (Y0 Y1 Cb Cr per pair of pixels)."""
    ybr = convert_color_space(np.repeat(grey[..., None], 3, axis=-1), "RGB", "YBR_FULL")
    rows, cols = grey.shape
    cb = ybr[..., 1].reshape(rows, cols // 2, 2).mean(-1).round().astype(np.uint8)
    cr = ybr[..., 2].reshape(rows, cols // 2, 2).mean(-1).round().astype(np.uint8)
    return np.stack([ybr[:, 0::2, 0], ybr[:, 1::2, 0], cb, cr], axis=-1).astype(np.uint8).tobytes()


@pytest.mark.dcm2niix
def test_ybr_full_422_uncompressed_is_read(tmp_path: Path) -> None:
    """The same slices as MONOCHROME2 (dcm2niix 1.0.20220720 cannot read uncompressed YBR_FULL_422) and as
    YBR_FULL_422: our volume of the YBR series equals dcm2niix's volume of the grey one."""
    image = (make_image((40, 36, 7), seed=13).astype(np.float32) / 3000 * 255).round().astype(np.uint8)
    truth = Volume(image, make_affine("coronal", (0.8, 0.8, 4.0)))
    write(truth, tmp_path / "grey")
    (tmp_path / "ybr").mkdir()
    for f in sorted((tmp_path / "grey").glob("*.dcm")):
        ds = dcmread(f)
        grey = ds.pixel_array.astype(np.uint8)  # the values are 0…255 already
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        ds.PixelData = grey.tobytes()
        ds.save_as(f)  # the grey twin, 8 bits
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
        ds.PixelData = _ybr_422(grey)
        ds.save_as(tmp_path / "ybr" / f.name)
    mine = ours(tmp_path / "ybr")
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "grey", tmp_path / "nii"))
    np.testing.assert_allclose(mine.canonical().affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(mine.canonical().data, np.asarray(ref.dataobj))
    np.testing.assert_array_equal(mine.canonical().data, truth.canonical().data)


def test_colour_ybr_image_is_refused_with_a_reason(tmp_path: Path) -> None:
    truth = Volume(np.full((16, 12, 3), 100, np.int16), make_affine("axial", (1.0, 1.0, 2.0)))
    write(truth, tmp_path / "dcm")
    for f in sorted((tmp_path / "dcm").glob("*.dcm")):
        ds = dcmread(f)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        rgb = np.zeros((int(ds.Rows), int(ds.Columns), 3), np.uint8)
        rgb[..., 0] = 200  # red: real chroma
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
        ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
        ds.PixelData = np.stack([ybr[:, 0::2, 0], ybr[:, 1::2, 0], ybr[:, 0::2, 1], ybr[:, 0::2, 2]], -1).tobytes()
        ds.save_as(f)
    with pytest.raises(DicomReadError, match="colour image"):
        ours(tmp_path / "dcm")


def _write_mosaic(truth: Volume, path: Path, *, implicit: bool) -> None:
    """``truth`` as one Siemens mosaic image: slice k in tile k of a ceil(√n)-square grid (as the scanner tiles)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid

    cols, rows, n = truth.shape
    grid = int(np.ceil(np.sqrt(n)))
    mosaic = np.zeros((grid * rows, grid * cols), np.uint16)
    for k in range(n):
        r, c = divmod(k, grid)
        mosaic[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = truth.data[:, :, k].T
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ truth.affine
    sx, sy, sz = (float(np.linalg.norm(lps[:3, i])) for i in range(3))
    row_dir, col_dir = lps[:3, 0] / sx, lps[:3, 1] / sy
    corner = lps[:3, 3] - row_dir * sx * (grid * cols - cols) / 2 - col_dir * sy * (grid * rows - rows) / 2
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = MRImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.PatientID, ds.PatientName = "MR", "SIEMENS", "T", "Test^Mosaic"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 7, 1, 1
    ds.ImagePositionPatient = [f"{v:.6f}" for v in corner]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
    ds.SliceThickness = ds.SpacingBetweenSlices = f"{sz:.6f}"
    ds.EchoTime, ds.RepetitionTime = 30, 2000
    ds.Rows, ds.Columns = mosaic.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", n)
    ds.PixelData = mosaic.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)


@pytest.mark.dcm2niix
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-vr", "implicit-vr"])
@pytest.mark.parametrize("plane", ["axial", "oblique"])
def test_siemens_mosaic_unpacked_like_dcm2niix(tmp_path: Path, plane: str, implicit: bool) -> None:
    """One mosaic file of 10 slices (a 4 × 4 grid, 6 tiles empty) becomes a 3D volume, not a 1-slice image."""
    truth = Volume(make_image((20, 24, 10), seed=17).astype(np.uint16), make_affine(plane, (2.0, 2.0, 3.0)))
    _write_mosaic(truth, tmp_path / "dcm" / "mosaic.dcm", implicit=implicit)
    mine = ours(tmp_path / "dcm")
    assert mine.shape == (20, 24, 10)
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))
    np.testing.assert_allclose(mine.canonical().affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(mine.canonical().data, np.asarray(ref.dataobj))
    np.testing.assert_allclose(mine.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(mine.data, truth.data)


def _multi_volume_series(folder: Path, kind: str, n: int = 3) -> list[Volume]:
    """``n`` volumes written as ONE series: echoes (EchoNumbers, EchoTime) or phases (same slice positions,
    TemporalPositionIdentifier and AcquisitionNumber) — in one folder, files interleaved by name."""
    from neuronav.volume.dicom_write import new_uid, write_dicom_series

    affine = make_affine("oblique", (1.0, 1.0, 3.0))
    study = {
        "StudyInstanceUID": new_uid(),
        "PatientID": "T",
        "PatientName": "Test^Multi",
        "FrameOfReferenceUID": new_uid(),
    }
    uid = new_uid()
    truths = []
    for m in range(n):
        truth = Volume(make_image((20, 24, 6), seed=20 + m), affine)
        extra: dict[str, object] = (
            {"EchoNumbers": m + 1, "EchoTime": 12.0 * (m + 1)}
            if kind == "echo"
            else {"TemporalPositionIdentifier": m + 1, "NumberOfTemporalPositions": n, "AcquisitionNumber": m + 1}
        )
        series = {"SeriesInstanceUID": uid, "SeriesNumber": 3, **extra}
        files = write_dicom_series(
            truth, folder, study=study, series=series, file_prefix=f"{'ZYX'[m]}", slice_order="descending"
        )
        for f in files:  # as scanners number them: InstanceNumber runs on through the volumes
            ds = dcmread(f)
            ds.InstanceNumber = int(ds.InstanceNumber) + m * truth.shape[2]
            if kind == "phase":
                ds.AcquisitionNumber = m + 1
            ds.save_as(f)
        truths.append(truth)
    return truths


@pytest.mark.dcm2niix
def test_multi_echo_series_split_like_dcm2niix(tmp_path: Path) -> None:
    from neuronav.ingest import scan
    from neuronav.volume.dicom import volume_from_series, volumes_from_series

    truths = _multi_volume_series(tmp_path / "dcm", "echo")
    (series,) = scan([tmp_path / "dcm"]).all_series
    volumes = volumes_from_series(series)
    assert len(volumes) == 3
    binary = require_binary("dcm2niix")
    subprocess.run(
        [binary, "-z", "n", "-b", "n", "-f", "ref", "-o", str(tmp_path), str(tmp_path / "dcm")],
        capture_output=True,
        check=True,
    )
    for m, volume in enumerate(volumes, start=1):
        ref = nib.as_closest_canonical(nib.load(tmp_path / f"ref_e{m}.nii"))  # dcm2niix: one file per echo
        np.testing.assert_allclose(volume.canonical().affine, ref.affine, atol=1e-3)
        np.testing.assert_array_equal(volume.canonical().data, np.asarray(ref.dataobj))
        np.testing.assert_array_equal(volume.data, truths[m - 1].data)
    np.testing.assert_array_equal(volume_from_series(series).data, volumes[0].data)  # the first echo


@pytest.mark.dcm2niix
def test_multi_phase_series_split_like_dcm2niix(tmp_path: Path) -> None:
    from neuronav.ingest import scan
    from neuronav.volume.dicom import check_series_geometry, volumes_from_series

    truths = _multi_volume_series(tmp_path / "dcm", "phase")
    (series,) = scan([tmp_path / "dcm"]).all_series
    assert check_series_geometry(series) is None  # was: "images share a slice position", refused
    volumes = volumes_from_series(series)
    ref = nib.as_closest_canonical(dcm2niix_volume(tmp_path / "dcm", tmp_path / "nii"))  # 4D
    assert ref.shape[3] == len(volumes) == 3
    for t, volume in enumerate(volumes):
        np.testing.assert_allclose(volume.canonical().affine, ref.affine, atol=1e-3)
        np.testing.assert_array_equal(volume.canonical().data, np.asarray(ref.dataobj)[..., t])
        np.testing.assert_array_equal(volume.data, truths[t].data)
