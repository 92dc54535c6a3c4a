"""DICOM SEG of the AI segmentation: segments, voxels, geometry and references, read back from the file."""

from __future__ import annotations

import dataclasses
from io import BytesIO
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage

from neuronav import __version__
from neuronav.errors import ReportError
from neuronav.report import codes
from neuronav.report.build import build_report
from neuronav.report.dicom_seg import make_seg
from neuronav.report.model import Report
from tests.report.conftest import Analysed

BRATS_TEXT = {label: text for label, text, _ in codes.BRATS_SEGMENTS}
LPS = np.diag([-1.0, -1.0, 1.0])  # RAS ↔ LPS (DICOM patient coordinates)


def _bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _labels(path: Path) -> tuple[npt.NDArray[np.uint8], Any]:
    img: Any = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.uint8), img


def _analysis_copy(analysed: Analysed, tmp_path: Path, labels: npt.NDArray[np.uint8], affine: Any = None) -> Path:
    """An analysis folder whose segmentation.nii.gz holds ``labels`` (on the original affine by default)."""
    _, img = _labels(analysed.analysis_dir / analysed.findings.segmentation.label_file)
    out = tmp_path / "analysis"
    out.mkdir()
    new = nib.Nifti1Image(labels, img.affine if affine is None else affine, img.header)
    nib.save(new, str(out / analysed.findings.segmentation.label_file))
    return out


@pytest.fixture(scope="module")
def built(analysed: Analysed) -> tuple[Report, Dataset]:
    """The report of the phantom study and its SEG, written to bytes and read back with pydicom."""
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    seg = make_seg(report, analysed.analysis_dir, analysed.source)
    return report, pydicom.dcmread(BytesIO(_bytes(seg)))


@pytest.fixture(scope="module")
def label_map(analysed: Analysed) -> npt.NDArray[np.uint8]:
    labels, _ = _labels(analysed.analysis_dir / analysed.findings.segmentation.label_file)
    return labels


def _frames_by_source(ds: Dataset) -> dict[tuple[str, int], npt.NDArray[np.uint8]]:
    """(source SOPInstanceUID, segment number) → frame, decoded without highdicom's readers."""
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    out: dict[tuple[str, int], npt.NDArray[np.uint8]] = {}
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        (derivation,) = item.DerivationImageSequence
        (src,) = derivation.SourceImageSequence
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        key = (str(src.ReferencedSOPInstanceUID), segment)
        assert key not in out, f"two frames for {key}"
        out[key] = np.asarray(pixels[n], dtype=np.uint8)
    return out


def test_segments_one_per_brats_label_present(built: tuple[Report, Dataset], label_map: npt.NDArray[np.uint8]) -> None:
    report, ds = built
    seg = hd.seg.Segmentation.from_dataset(ds)
    present = sorted(int(v) for v in np.unique(label_map) if v)
    assert present == [1, 2, 3]  # the glioma phantom has every sub-region
    assert ds.SOPClassUID == SegmentationStorage and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert seg.number_of_segments == len(present)
    for number, label in enumerate(present, start=1):
        desc = seg.get_segment_description(number)
        assert desc.segment_label == BRATS_TEXT[label]
        assert desc.tracking_id == f"BraTS label {label}: {BRATS_TEXT[label]}"
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        assert desc.segmented_property_category.value == "49755003"  # Morphologically Abnormal Structure
        assert desc.segmented_property_type.value == {1: "6574001", 2: "79654002", 3: "108369006"}[label]
        assert [c.value for c in desc.anatomic_regions] == [codes.BRAIN.value]
        (algorithm,) = ds.SegmentSequence[number - 1].SegmentationAlgorithmIdentificationSequence
        producers = report.findings.segmentation.produced_by
        assert algorithm.AlgorithmName == " + ".join(p.name for p in producers)
        assert algorithm.AlgorithmVersion == " + ".join(p.version for p in producers)
        assert all(p.sha256 and p.sha256 in algorithm.AlgorithmParameters for p in producers)


def test_seg_header_names_neuronav_status_and_version(built: tuple[Report, Dataset]) -> None:
    report, ds = built
    assert ds.Manufacturer == "NeuroNav" and ds.ManufacturerModelName == "NeuroNav"
    assert ds.SoftwareVersions == __version__
    assert "NeuroNav AI segmentation" in ds.SeriesDescription
    assert "not for clinical use" in ds.SeriesDescription
    assert "PRELIMINARY v1" in ds.SeriesDescription
    assert report.report_id in ds.ContentDescription and "PRELIMINARY v1" in ds.ContentDescription
    assert ds.ContentLabel == "NEURONAV_AI_SEG"
    assert all(len(str(ds[k].value).encode()) <= 64 for k in ("SeriesDescription", "ContentDescription"))


def test_seg_pixels_equal_the_label_map_per_label(
    built: tuple[Report, Dataset], label_map: npt.NDArray[np.uint8], analysed: Analysed
) -> None:
    """Voxel (i, j, k) ↔ row j, column i of source slice k, exactly, for every label (two independent reads)."""
    _, ds = built
    uids = [str(d.SOPInstanceUID) for d in analysed.source.datasets]
    expected = label_map.transpose(2, 1, 0)  # [k, row j, column i]
    frames = _frames_by_source(ds)
    for number, label in enumerate((1, 2, 3), start=1):
        volume = np.zeros_like(expected, dtype=bool)
        for k, uid in enumerate(uids):
            if (uid, number) in frames:
                volume[k] = frames[(uid, number)] > 0
        assert np.array_equal(volume, expected == label), f"label {label}"
        assert int(volume.sum()) == int((label_map == label).sum())
    # the same through highdicom's reader
    seg = hd.seg.Segmentation.from_dataset(ds)
    stack = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2, 3], assert_missing_frames_are_empty=True
    )
    for number, label in enumerate((1, 2, 3), start=1):
        assert np.array_equal(stack[..., number - 1] > 0, expected == label)


def test_seg_frame_geometry_is_the_source_slice_geometry(built: tuple[Report, Dataset], analysed: Analysed) -> None:
    _, ds = built
    by_uid = {str(d.SOPInstanceUID): (k, d) for k, d in enumerate(analysed.source.datasets)}
    shared = ds.SharedFunctionalGroupsSequence[0]
    first = analysed.source.first
    np.testing.assert_allclose(
        np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float),
        np.asarray(first.ImageOrientationPatient, float),
    )
    np.testing.assert_allclose(
        np.asarray(shared.PixelMeasuresSequence[0].PixelSpacing, float), np.asarray(first.PixelSpacing, float)
    )
    assert (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
    affine = analysed.source.affine
    for item in ds.PerFrameFunctionalGroupsSequence:
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        k, src = by_uid[uid]
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(position, np.asarray(src.ImagePositionPatient, float), atol=1e-4)
        # and from the label map's own affine: voxel (0, 0, k) in RAS → LPS
        corner = LPS @ (affine[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine[:3, 3])
        np.testing.assert_allclose(position, corner, atol=1e-3)


def test_seg_references_the_source_series_patient_and_study(built: tuple[Report, Dataset], analysed: Analysed) -> None:
    _, ds = built
    src = analysed.source.first
    uids = {str(d.SOPInstanceUID) for d in analysed.source.datasets}
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "AccessionNumber"):
        assert ds[keyword].value == src[keyword].value, keyword
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == analysed.source.series_instance_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence} == uids
    referenced = {
        str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for item in ds.PerFrameFunctionalGroupsSequence
    }
    assert referenced <= uids


def test_absent_label_has_no_segment(analysed: Analysed, label_map: npt.NDArray[np.uint8], tmp_path: Path) -> None:
    labels = label_map.copy()
    labels[labels == 1] = 0  # no necrotic core
    folder = _analysis_copy(analysed, tmp_path, labels)
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    ds = pydicom.dcmread(BytesIO(_bytes(make_seg(report, folder, analysed.source))))
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [BRATS_TEXT[2], BRATS_TEXT[3]]
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2]
    assert [s.TrackingID for s in ds.SegmentSequence] == [
        f"BraTS label 2: {BRATS_TEXT[2]}",
        f"BraTS label 3: {BRATS_TEXT[3]}",
    ]
    frames = _frames_by_source(ds)
    uids = [str(d.SOPInstanceUID) for d in analysed.source.datasets]
    oedema = np.stack([frames.get((u, 1), np.zeros(label_map.shape[1::-1], np.uint8)) for u in uids]) > 0
    assert np.array_equal(oedema, labels.transpose(2, 1, 0) == 2)


def test_no_tumour_is_refused_with_a_clear_message(
    analysed: Analysed, label_map: npt.NDArray[np.uint8], tmp_path: Path
) -> None:
    folder = _analysis_copy(analysed, tmp_path, np.zeros_like(label_map))
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    with pytest.raises(ReportError, match="no tumour segmented: nothing to put in a DICOM SEG"):
        make_seg(report, folder, analysed.source)


def test_label_map_off_the_source_grid_is_refused(
    analysed: Analysed, label_map: npt.NDArray[np.uint8], tmp_path: Path
) -> None:
    affine = analysed.source.affine.copy()
    affine[0, 3] += 2.0
    folder = _analysis_copy(analysed, tmp_path, label_map, affine)
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    with pytest.raises(ReportError, match="not on the grid of the reference series"):
        make_seg(report, folder, analysed.source)


def test_unknown_label_values_are_refused(analysed: Analysed, label_map: npt.NDArray[np.uint8], tmp_path: Path) -> None:
    labels = label_map.copy()
    labels[0, 0, 0] = 7
    folder = _analysis_copy(analysed, tmp_path, labels)
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    with pytest.raises(ReportError, match=r"values \[7\] that are not BraTS labels"):
        make_seg(report, folder, analysed.source)


def test_nifti_report_and_other_series_are_refused(built: tuple[Report, Dataset], analysed: Analysed) -> None:
    report, _ = built
    nifti = report.model_copy(
        update={
            "study_info": report.study_info.model_copy(update={"input_kind": "nifti", "reference_series_uid": None})
        }
    )
    with pytest.raises(ReportError, match="made from NIfTI files"):
        make_seg(nifti, analysed.analysis_dir, analysed.source)
    other = dataclasses.replace(analysed.source, series_instance_uid="1.2.3.4")
    with pytest.raises(ReportError, match="is not the reference series"):
        make_seg(report, analysed.analysis_dir, other)


def test_missing_label_map_is_refused(built: tuple[Report, Dataset], analysed: Analysed, tmp_path: Path) -> None:
    report, _ = built
    with pytest.raises(ReportError, match=r"label map .* is missing"):
        make_seg(report, tmp_path, analysed.source)
