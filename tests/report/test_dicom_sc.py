"""DICOM Secondary Capture overlay series: one image per source slice, labels exactly where the segmentation is."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from neuronav.errors import ReportError
from neuronav.report.build import build_report
from neuronav.report.dicom_sc import (
    TEXT_ORIGIN,
    annotation_lines,
    annotation_mask,
    make_secondary_captures,
    native_view,
    series_window,
)
from neuronav.report.figures import AnalysisImages, load_analysis_images, window
from neuronav.report.lifecycle import sign
from neuronav.report.model import Report
from tests.conftest import require_binary
from tests.report.conftest import Analysed


@dataclass(frozen=True)
class Made:
    report: Report
    images: AnalysisImages
    datasets: list[pydicom.FileDataset]  # the Secondary Captures, written to bytes and read again
    labels: npt.NDArray[np.uint8]  # segmentation.nii.gz read natively: [i, j, k] = column i, row j of slice k


def write(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def made(analysed: Analysed) -> Made:
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    images = load_analysis_images(analysed.analysis_dir)
    datasets = [
        pydicom.dcmread(io.BytesIO(write(ds))) for ds in make_secondary_captures(report, images, analysed.source)
    ]
    seg: Any = nib.load(str(analysed.analysis_dir / "segmentation.nii.gz"))
    return Made(report, images, datasets, np.asarray(seg.dataobj, dtype=np.uint8))


def text_box(made: Made) -> tuple[slice, slice]:
    mask = annotation_mask(annotation_lines(made.report), int(made.datasets[0].Columns) - TEXT_ORIGIN[1])
    r0, c0 = TEXT_ORIGIN
    return slice(r0, r0 + mask.shape[0]), slice(c0, c0 + mask.shape[1])


def coloured(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.asarray((rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2]), dtype=bool)


def test_one_image_per_source_slice_in_a_new_series_of_the_same_study(analysed: Analysed, made: Made) -> None:
    source = analysed.source.datasets
    assert len(made.datasets) == len(source) == made.labels.shape[2]
    series = {ds.SeriesInstanceUID for ds in made.datasets}
    assert len(series) == 1 and analysed.source.series_instance_uid not in series
    assert len({ds.SOPInstanceUID for ds in made.datasets}) == len(source)
    assert [int(ds.InstanceNumber) for ds in made.datasets] == list(range(1, len(source) + 1))
    for ds, src in zip(made.datasets, source, strict=True):
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert (ds.Rows, ds.Columns) == (src.Rows, src.Columns)
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated) == (3, "RGB", 8)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID"):
            assert ds[keyword].value == src[keyword].value, keyword
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "FrameOfReferenceUID"):
            assert ds[keyword].value == src[keyword].value, keyword
        assert list(ds.PatientOrientation) == ["L", "P"]  # IOP 1\0\0\0\1\0: rows run to the left, columns back
        ref = ds.SourceImageSequence[0]
        assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src.SOPClassUID, src.SOPInstanceUID)
        assert ds.BurnedInAnnotation == "YES" and ds.Manufacturer == "NeuroNav"
    first = made.datasets[0]
    assert first.SeriesDescription == "NeuroNav AI overlay (not for clinical use) PRELIMINARY v1"
    assert first.RelatedSeriesSequence[0].SeriesInstanceUID == analysed.source.series_instance_uid


def test_coloured_pixels_are_exactly_the_segmented_voxels_of_each_slice(made: Made) -> None:
    rows, cols = text_box(made)
    outside = np.ones((made.datasets[0].Rows, made.datasets[0].Columns), bool)
    outside[rows, cols] = False
    with_labels = 0
    for k, ds in enumerate(made.datasets):
        rgb = ds.pixel_array
        labels = made.labels[:, :, k].T  # native [i, j] → DICOM [row j, column i]
        np.testing.assert_array_equal(coloured(rgb) & outside, (labels > 0) & outside, err_msg=f"slice {k}")
        with_labels += int((labels[outside] > 0).any())
        red, green, blue = (rgb[..., c].astype(int) for c in range(3))
        assert (red > green)[labels == 1].all() and (green > red)[labels == 2].all()
        assert ((red >= green) & (green > blue))[labels == 3].all()
    assert with_labels > 10  # the test is not vacuous: the lesion spans many slices


def test_the_grey_image_is_the_source_slice_windowed_once_for_the_series(analysed: Analysed, made: Made) -> None:
    rows, cols = text_box(made)
    levels: list[tuple[float, int]] = []
    for k in (40, 96, 150):
        rgb = made.datasets[k].pixel_array
        uid = analysed.source.datasets[k].SOPInstanceUID  # the source keeps headers only: read the pixels
        inst = next(i for i in analysed.series.instances if i.sop_instance_uid == uid)
        source = pydicom.dcmread(inst.source.path).pixel_array.astype(float)
        keep = ~coloured(rgb)
        keep[rows, cols] = False
        levels += zip(source[keep].tolist(), rgb[..., 0][keep].tolist(), strict=True)
    levels.sort()
    grey = np.asarray([g for _, g in levels])
    assert (np.diff(grey) >= 0).all()  # one monotone window over all slices: same value, same grey
    assert grey.min() == 0 and grey.max() == 255


def test_the_warning_is_burnt_into_every_image_and_names_the_status(analysed: Analysed, made: Made) -> None:
    rows, cols = text_box(made)
    for ds in made.datasets:
        corner = ds.pixel_array[rows, cols]
        assert coloured(corner).sum() > 100  # cyan text on a black box
    signed = sign(made.report, who="Dr Test", role="radiologist")
    assert annotation_lines(signed)[-1] == "FINAL v1" and annotation_lines(made.report)[-1] == "PRELIMINARY v1"
    final = make_secondary_captures(signed, made.images, analysed.source)
    assert final[0].SeriesDescription.endswith("FINAL v1")
    final_corner = np.frombuffer(final[0].PixelData, np.uint8).reshape(final[0].Rows, final[0].Columns, 3)
    assert not np.array_equal(final_corner[rows, cols], made.datasets[0].pixel_array[rows, cols])


def test_highdicom_reads_the_series_as_a_volume_on_the_source_geometry(analysed: Analysed, made: Made) -> None:
    overlay = hd.get_volume_from_series(made.datasets, dtype=np.uint8)
    original = hd.get_volume_from_series([pydicom.dcmread(i.source.path) for i in analysed.series.instances])
    assert overlay.spatial_shape == original.spatial_shape and overlay.shape[-1] == 3
    np.testing.assert_allclose(overlay.affine, original.affine, atol=1e-4)
    assert hd.imread(io.BytesIO(write(made.datasets[0]))).get_frame(1).shape == (240, 240, 3)


@pytest.mark.dcmtk
def test_dcmtk_dumps_and_renders_an_image_as_pydicom_decodes_it(made: Made, tmp_path: Path) -> None:
    from PIL import Image

    k = int(np.argmax((made.labels > 0).sum(axis=(0, 1))))
    path = tmp_path / "IM0001.dcm"
    path.write_bytes(write(made.datasets[k]))
    dump = subprocess.run([require_binary("dcmdump"), str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    png = tmp_path / "IM0001.png"
    proc = subprocess.run([require_binary("dcm2pnm"), "+on", str(path), str(png)], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(png).convert("RGB")), made.datasets[k].pixel_array)


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([-1.0, -1.0, 1.0, 1.0]),  # axial DICOM (LPS rows/columns) as read into RAS
        np.array([[0, 0, -1.2, 50], [1.0, 0, 0, -20], [0, -1.0, 0, 30], [0, 0, 0, 1]]),  # sagittal
        np.array([[1.0, 0, 0, -10], [0, 0, 2.0, 5], [0, -1.0, 0, 7], [0, 0, 0, 1]]),  # coronal, 2 mm slices
    ],
)
def test_native_view_undoes_the_reorientation_to_ras(affine: npt.NDArray[np.float64]) -> None:
    rng = np.random.default_rng(3)
    native = rng.integers(0, 255, size=(5, 6, 7)).astype(np.uint8)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(native, affine))
    ras = np.asarray(canonical.dataobj)
    view = native_view(ras, canonical.affine, affine, native.shape)
    np.testing.assert_array_equal(view, native)


def test_native_view_refuses_another_grid() -> None:
    volume = np.zeros((4, 5, 6), np.uint8)
    with pytest.raises(ReportError, match="not on the grid"):
        native_view(volume, np.eye(4), np.eye(4), (5, 4, 6))
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    with pytest.raises(ReportError, match="not on the grid"):
        native_view(volume, np.eye(4), shifted, (4, 5, 6))
    oblique = np.eye(4)
    oblique[:2, :2] = [[0.9, -0.44], [0.44, 0.9]]
    with pytest.raises(ReportError, match="not on the grid"):
        native_view(volume, np.eye(4), oblique, (4, 5, 6))


def test_series_window_agrees_with_the_figures_window() -> None:
    rng = np.random.default_rng(5)
    volume = (rng.gamma(2.0, 300.0, size=(40, 50, 30)) * (rng.random((40, 50, 30)) > 0.3)).astype(np.float32)
    diff = series_window(volume).astype(int) - window(volume).astype(int)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01
    assert not series_window(np.zeros((3, 3, 3), np.float32)).any()


def test_images_of_another_grid_are_refused(analysed: Analysed, made: Made) -> None:
    swapped = AnalysisImages(
        reference=made.images.reference[:, :, :-1],
        labels=made.images.labels[:, :, :-1],
        heatmap=made.images.heatmap[:, :, :-1],
        affine=made.images.affine,
    )
    with pytest.raises(ReportError, match="not on the grid of the source series"):
        make_secondary_captures(made.report, swapped, analysed.source)
