"""DICOM Segmentation (SEG) of the AI tumour segmentation, on the images of the reference series.

:func:`make_seg` writes the label map of the analysis (``segmentation.nii.gz``) as a highdicom
``Segmentation`` (BINARY, one frame per segment and source slice that holds any of it) that joins
the patient and study of the source images and references them frame by frame.

Geometry: the label map is on exactly the grid of the reference series: voxel ``(i, j, k)`` is
column ``i`` (along the first ImageOrientationPatient vector) and row ``j`` of ``source.datasets[k]``.
The file's affine and shape are checked against the source series before anything is written.

Segments: one per BraTS label present (:data:`neuronav.report.codes.BRATS_SEGMENTS`), numbered
1…n in label order, so a segment number differs from its BraTS label when a label is absent; the
Tracking ID names the label (``BraTS label 3: Enhancing tumour``). Category: SCT Morphologically
Abnormal Structure; type: SCT Necrosis (label 1), SCT Edema (label 2), SCT Neoplasm (label 3, the
enhancing, viable part of the tumour: a standard type rather than the private ``enhancing-tumour``
code of :mod:`~neuronav.report.codes`, which the SR keeps as the volume's finding site); anatomic
region: SCT Brain; display colours those of the key images. Each segment's
Tracking UID is derived from the report id and the label (:func:`segment_tracking_uid`), so the SR
of the same report tracks the same segments by the same UIDs.

No tumour: a label map without any tumour voxel raises :class:`~neuronav.errors.ReportError`
(an empty SEG would show nothing and is rejected by many viewers); the SEG follows the label map,
not the detection verdict, because the report's volumes are measured on that label map too.

The SEG is what the segmentation models produced; a radiologist's edits of the findings do not
change its voxels. The report status and version at the time of writing (``PRELIMINARY v1``) are
recorded in SeriesDescription (``NeuroNav AI segmentation - not for clinical use - PRELIMINARY v1``,
plain ASCII to stay within the 64 bytes of a DICOM LO) and ContentDescription. ImageComments holds
the report's disclaimers in full (research software; models trained on synthetic data only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code as DicomCode

from neuronav.errors import ReportError
from neuronav.report import codes
from neuronav.report._dicom_common import (
    DEVICE_SERIAL_NUMBER,
    MANUFACTURER,
    MODEL_NAME,
    NOT_FOR_CLINICAL_USE,
    SERIES_NUMBER_SEG,
    SOFTWARE_VERSION,
    lo,
    require_dicom_source,
    result_uid,
    seg_algorithm,
    stable_uid,
    status_text,
)
from neuronav.report.figures import LABEL_COLOURS
from neuronav.report.model import Report, model_info
from neuronav.report.sources import SourceSeries

CONTENT_LABEL = "NEURONAV_AI_SEG"
AFFINE_TOLERANCE_MM = 1e-3
SEGMENT_CATEGORY: DicomCode = dcm_codes.SCT.MorphologicallyAbnormalStructure
SEGMENT_TYPES: dict[int, DicomCode] = {
    1: dcm_codes.SCT.Necrosis,
    2: dcm_codes.SCT.Edema,
    3: dcm_codes.SCT.Neoplasm,
}
ANATOMIC_REGION: DicomCode = dcm_codes.SCT.Brain


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the SEG: its BraTS label, number in the SEG, label text and tracking identity."""

    brats_label: int
    segment_number: int
    label: str
    tracking_id: str
    tracking_uid: str


def segment_tracking_uid(report: Report, brats_label: int) -> str:
    """Tracking UID of a BraTS label's segment: the same in the SEG and the SR of one report."""
    return stable_uid(report.report_id, "segment", str(brats_label))


def tracking_id(brats_label: int) -> str:
    """Tracking ID of a BraTS label's segment (in the SEG and the SR): ``BraTS label 3: Enhancing tumour``."""
    text = {label: text for label, text, _ in codes.BRATS_SEGMENTS}[brats_label]
    return lo(f"BraTS label {brats_label}: {text}")


def load_label_map(report: Report, analysis_dir: Path, source: SourceSeries) -> tuple[npt.NDArray[np.uint8], set[int]]:
    """The label map as frames ``[k, row j, column i]`` of the source slices, and the BraTS labels present.

    ReportError when the file is missing or unreadable, is not on the grid of ``source`` or holds
    values that are not BraTS labels.
    """
    import nibabel as nib

    path = analysis_dir / report.findings.segmentation.label_file
    if not path.is_file():
        raise ReportError(f"DICOM SEG: the label map {path} is missing; run the analysis again")
    try:
        img: Any = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds for a damaged file
        raise ReportError(f"DICOM SEG: the label map {path} cannot be read: {exc}") from exc
    first = source.first
    expected = (int(first.Columns), int(first.Rows), len(source.datasets))
    if data.shape != expected:
        raise ReportError(
            f"DICOM SEG: the label map {path.name} has shape {data.shape}, the reference series "
            f"{expected} (columns, rows, slices): it was not made from these images"
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.allclose(affine, source.affine, atol=AFFINE_TOLERANCE_MM):
        raise ReportError(
            f"DICOM SEG: the label map {path.name} is not on the grid of the reference series (affines differ)"
        )
    if data.dtype.kind == "f" and not np.array_equal(data, np.rint(data)):
        raise ReportError(f"DICOM SEG: the label map {path.name} is not a label map (fractional values)")
    if data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255):
        raise ReportError(f"DICOM SEG: the label map {path.name} holds values outside 0–255")
    labels = np.asarray(data, dtype=np.uint8)
    present = {int(v) for v in np.unique(labels[labels > 0])}  # the tumour is a small part of the volume
    unknown = present - {label for label, _, _ in codes.BRATS_SEGMENTS}
    if unknown:
        raise ReportError(
            f"DICOM SEG: the label map {path.name} holds values {sorted(unknown)} that are not BraTS labels"
        )
    return np.ascontiguousarray(labels.transpose(2, 1, 0)), present


def plan_segments(report: Report, present: set[int]) -> list[SegmentSpec]:
    """The segments for the BraTS labels ``present``, numbered 1…n in label order."""
    specs: list[SegmentSpec] = []
    for label, text, _ in codes.BRATS_SEGMENTS:
        if label in present:
            specs.append(
                SegmentSpec(
                    brats_label=label,
                    segment_number=len(specs) + 1,
                    label=text,
                    tracking_id=tracking_id(label),
                    tracking_uid=segment_tracking_uid(report, label),
                )
            )
    return specs


def make_seg(report: Report, analysis_dir: Path, source: SourceSeries) -> Dataset:
    """The AI segmentation of ``report`` as a DICOM SEG on the images of ``source`` (see the module doc)."""
    require_dicom_source(report, source, "DICOM SEG")
    frames, present = load_label_map(report, analysis_dir, source)
    if not present:
        raise ReportError(
            "no tumour segmented: nothing to put in a DICOM SEG (the label map has no tumour voxel); "
            "the SR, PDF, FHIR and HL7 outputs still record the result"
        )
    specs = plan_segments(report, present)
    numbered = frames
    if any(spec.segment_number != spec.brats_label for spec in specs):  # a label is absent: renumber
        lut = np.zeros(256, dtype=np.uint8)
        for spec in specs:
            lut[spec.brats_label] = spec.segment_number
        numbered = lut[frames]
    producers = [model_info(p) for p in report.findings.segmentation.produced_by]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=spec.segment_number,
            segment_label=lo(spec.label),
            segmented_property_category=SEGMENT_CATEGORY,
            segmented_property_type=SEGMENT_TYPES[spec.brats_label],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=seg_algorithm(producers),  # a sequence of its own per segment
            tracking_id=spec.tracking_id,
            tracking_uid=spec.tracking_uid,
            anatomic_regions=[ANATOMIC_REGION],
            display_color=hd.color.CIELabColor.from_rgb(*LABEL_COLOURS[spec.brats_label]),
        )
        for spec in specs
    ]
    status = status_text(report)
    try:
        seg = hd.seg.Segmentation(
            source_images=source.datasets,
            pixel_array=numbered,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=result_uid(report, "seg", "series"),
            series_number=SERIES_NUMBER_SEG,
            sop_instance_uid=result_uid(report, "seg", "instance"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MODEL_NAME,
            software_versions=SOFTWARE_VERSION,
            device_serial_number=DEVICE_SERIAL_NUMBER,
            content_label=CONTENT_LABEL,
            content_description=lo(f"AI segmentation, report {report.report_id} {status}"),
            series_description=lo(f"NeuroNav AI segmentation - {NOT_FOR_CLINICAL_USE} - {status}"),
            omit_empty_frames=True,
        )
    except (ValueError, TypeError) as exc:
        raise ReportError(f"DICOM SEG cannot be made from the reference series: {exc}") from exc
    seg.ImageComments = " ".join(report.notices)  # General Image module (LT): the disclaimers, in full
    return seg
