"""DICOM Secondary Capture images with the segmentation burnt in, for PACS that cannot show DICOM SEG.

One RGB Secondary Capture image per image of the source series (the reference series of the
analysis), in the same slice order, so a reader scrolls the overlay series like the original:

* pixels: the source slice, windowed once for the whole series (:func:`series_window`, the 1st–99.5th
  percentile window of :func:`figures.window`), with the BraTS labels blended in their colours
  (:func:`figures.overlay_rgb`), and the text ``NeuroNav AI - not for clinical use`` /
  ``AI trained on synthetic data only`` / ``<STATUS> v<version>`` burnt into the top-left corner
  (cyan on a black box, which hides that corner of the field of view, outside the head in brain
  MRI), so a viewer that shows nothing but pixels still shows what the image is (ImageComments
  holds the report's disclaimers in full);
* geometry: rows and columns, PixelSpacing, ImagePositionPatient, ImageOrientationPatient,
  SliceThickness and the FrameOfReferenceUID of the source slice (the SC IOD allows the Image Plane
  and Frame of Reference modules), and PatientOrientation from the direction cosines, so the series
  can be linked and cross-referenced with the source in a viewer;
* references: each image names its source image (SourceImageSequence) and the series names the
  source series (RelatedSeriesSequence);
* one new series (``NeuroNav AI overlay (not for clinical use) <STATUS> v<version>``), InstanceNumber
  1…n in slice order, BurnedInAnnotation YES.

The reference image and the label map come from ``images`` (reoriented to RAS+); they are put back
on the source grid by the signed axis permutation between ``images.affine`` and ``source.affine``
(:func:`native_view`): native voxel (i, j, k) is column i, row j of ``source.datasets[k]``. The
reference image of the analysis is the source series itself, so no DICOM pixel data is decoded.

Speed (about 0.25 s for 192 slices of 240 × 240 on one core): the pixels of the whole series are
made at once, the labelled voxels coloured by one table look-up (label × grey level → RGB), and the
DICOM attributes of each image are copied from one template made by :class:`highdicom.sc.SCImage`.
Writing the 192 files (pydicom, :mod:`.outputs`) takes longer than making them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.uid import UID

from neuronav.errors import ReportError
from neuronav.report._dicom_common import MANUFACTURER, result_uid, status_text
from neuronav.report.dicom_pdf import (
    CHARACTER_SET,
    SOFTWARE_VERSIONS,
    copy_patient_study,
    dicom_date_time,
    software_versions,
)
from neuronav.report.figures import LABEL_NAMES, OVERLAY_ALPHA, AnalysisImages, overlay_rgb
from neuronav.report.model import SYNTHETIC_TRAINING_SHORT, Report
from neuronav.report.sources import SourceSeries

SC_SERIES_NUMBER = 9004  # after SEG 9001, SR 9002 and the Encapsulated PDF 9003
TEXT_COLOUR = (0, 255, 255)  # cyan: not a label colour, and never grey
TEXT_ORIGIN = (2, 2)  # (row, column) of the top-left corner of the text box
U8 = npt.NDArray[np.uint8]
PIXEL_DATA = 0x7FE00010

# Per-slice elements: taken from the source slice (when it has them) rather than from the template.
_PER_SLICE = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceLocation")
_GEOMETRY: tuple[str, ...] = (
    "SliceThickness",
    "SpacingBetweenSlices",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "PatientPosition",
    "BodyPartExamined",
)


def annotation_lines(report: Report) -> list[str]:
    """The text burnt into every image (ASCII, so any font has the glyphs)."""
    return ["NeuroNav AI - not for clinical use", SYNTHETIC_TRAINING_SHORT, status_text(report)]


def annotation_mask(lines: Sequence[str], max_width: int) -> U8:
    """Coverage (0–255) of ``lines`` rendered with PIL's default font, with a 2-pixel margin.

    Lines wider than ``max_width`` are broken at spaces; what still does not fit is cut off.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))

    def width(text: str) -> int:
        left, _, right, _ = probe.textbbox((0, 0), text, font=font)
        return int(right - left)

    fitted: list[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            candidate = f"{current} {word}".strip()
            if current and width(candidate) + 4 > max_width:
                fitted.append(current)
                current = word
            else:
                current = candidate
        fitted.append(current)
    _, top, _, bottom = probe.textbbox((0, 0), "Ag|", font=font)
    line_h = int(bottom) + 1
    w = min(max(width(t) for t in fitted) + 4, max_width)
    h = line_h * len(fitted) + 4 - int(top)
    img = Image.new("L", (max(w, 1), max(h, 1)), 0)
    draw = ImageDraw.Draw(img)
    for n, text in enumerate(fitted):
        draw.text((2, 2 - int(top) + n * line_h), text, fill=255, font=font)
    return np.asarray(img, dtype=np.uint8)


def _burn_in(pixels: U8, mask: U8) -> None:
    """Blend the text ``mask`` in TEXT_COLOUR on a black box into every image of ``pixels`` (n, rows, cols, 3)."""
    r0, c0 = TEXT_ORIGIN
    h = max(0, min(mask.shape[0], pixels.shape[1] - r0))
    w = max(0, min(mask.shape[1], pixels.shape[2] - c0))
    if h == 0 or w == 0:
        return
    m = mask[:h, :w, None].astype(np.float32) / 255.0
    box = np.asarray(np.rint(m * np.asarray(TEXT_COLOUR, np.float32)), dtype=np.uint8)
    pixels[:, r0 : r0 + h, c0 : c0 + w] = box


@lru_cache(maxsize=1)
def _overlay_table() -> U8:
    """RGB of every (label, grey level) pair: ``table[label, grey]`` equals :func:`overlay_rgb` of them."""
    labels, grey = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    table = overlay_rgb(grey.astype(np.uint8), labels.astype(np.uint8), OVERLAY_ALPHA)
    table.setflags(write=False)
    return table


def native_view(
    volume: npt.NDArray[np.generic],
    volume_affine: npt.NDArray[np.float64],
    native_affine: npt.NDArray[np.float64],
    native_shape: tuple[int, int, int],
) -> npt.NDArray[np.generic]:
    """``volume`` (on the grid of ``volume_affine``) as a view on the native grid of ``native_affine``.

    The two grids must be the same voxels with axes permuted and/or flipped (what
    ``nibabel.as_closest_canonical`` does); ReportError otherwise.
    """
    m = np.linalg.solve(np.asarray(volume_affine, np.float64), np.asarray(native_affine, np.float64))
    rot = np.rint(m[:3, :3])
    is_perm = (np.abs(rot).sum(axis=0) == 1).all() and (np.abs(rot).sum(axis=1) == 1).all()
    if not is_perm or not np.allclose(m[:3, :3], rot, atol=1e-3):
        raise ReportError("the analysis images are not on the grid of the source series (axes not a permutation)")
    out = np.asarray(volume)
    axes = [0, 0, 0]  # axes[native axis] = volume axis
    for r in range(3):
        c = int(np.argmax(np.abs(rot[r])))
        axes[c] = r
        start = 0.0 if rot[r, c] > 0 else float(native_shape[c] - 1)
        if volume.shape[r] != native_shape[c] or abs(m[r, 3] - start) > 1e-2:
            raise ReportError(
                f"the analysis images ({volume.shape}) are not on the grid of the source series {native_shape}"
            )
        if rot[r, c] < 0:
            out = np.flip(out, axis=r)
    return np.transpose(out, axes)


def _patient_orientation(iop: Sequence[float]) -> list[str]:
    """PatientOrientation (PS3.3 C.7.6.1.1.1) of the row and column directions (LPS cosines)."""
    out = []
    for vec in (iop[:3], iop[3:6]):
        letters = ""
        for axis in np.argsort(-np.abs(np.asarray(vec, dtype=float)), kind="stable"):
            value = float(vec[axis])
            if abs(value) > 1e-3:
                letters += ("L", "P", "H")[axis] if value > 0 else ("R", "A", "F")[axis]
        out.append(letters)
    return out


def series_window(volume: npt.NDArray[np.floating], lo_pct: float = 1.0, hi_pct: float = 99.5) -> U8:
    """Grey levels 0–255 of ``volume``, as :func:`figures.window` but fast on a whole series.

    The percentiles of the non-zero voxels are taken from about 2 million of them at most (every n-th
    voxel) and the scaling is done in float32 in place; levels differ from ``window`` by one at most
    (in about 2 % of the voxels of the phantom study), several times faster.
    """
    flat = np.asarray(volume, dtype=np.float32).reshape(-1)
    sample = flat[:: max(1, flat.size // 2_000_000)]
    nz = sample[sample > 0]
    if nz.size == 0:
        return np.zeros(np.shape(volume), np.uint8)
    lo, hi = np.percentile(nz, [lo_pct, hi_pct])
    out = np.subtract(volume, np.float32(lo), dtype=np.float32)
    out *= np.float32(255.0 / max(float(hi - lo), 1e-6))
    np.clip(out, 0.0, 255.0, out=out)
    return np.asarray(out, dtype=np.uint8)


def _overlay_pixels(images: AnalysisImages, source: SourceSeries) -> U8:
    """(n, rows, columns, 3) RGB: slice k of the source grid, windowed, with the labels blended in."""
    first = source.first
    shape = (int(first.Columns), int(first.Rows), len(source.datasets))
    if images.labels.shape != images.reference.shape:
        raise ReportError("the reference image and the label map of the analysis differ in size")

    def by_slice(volume: U8) -> U8:  # native [i, j, k] → image k, row j, column i
        native = native_view(volume, images.affine, source.affine, shape)
        return np.ascontiguousarray(np.transpose(native, (2, 1, 0)))

    grey = by_slice(series_window(images.reference))  # one window: slices keep their brightness while scrolling
    labels = by_slice(images.labels)
    rgb = np.stack([grey, grey, grey], axis=-1)
    shown = labels > 0
    rgb[shown] = _overlay_table()[labels[shown], grey[shown]]
    return rgb


def _copy_element(elem: DataElement) -> DataElement:
    """A copy of ``elem`` sharing no mutable value with it; values are not converted or validated again."""
    value = elem.value
    if elem.VR == "SQ":
        value = PydicomSequence([_clone(item) for item in value])
    elif isinstance(value, (list, MultiValue)):
        return DataElement(elem.tag, elem.VR, list(value))  # made a MultiValue again, as on assignment
    return DataElement(elem.tag, elem.VR, value, already_converted=True)


def _clone(ds: Dataset) -> Dataset:
    """A copy of ``ds`` sharing no mutable value with it (several times faster than ``copy.deepcopy``)."""
    return Dataset({elem.tag: _copy_element(elem) for elem in ds})


def _source_item() -> Dataset:
    """A SourceImageSequence item; the referenced SOP class and instance are set per image."""
    item = Dataset()
    item.ReferencedSOPClassUID = ""
    item.ReferencedSOPInstanceUID = ""
    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = [purpose]
    item.SpatialLocationsPreserved = "YES"
    return item


def make_secondary_captures(report: Report, images: AnalysisImages, source: SourceSeries) -> list[pydicom.Dataset]:
    """One Secondary Capture image per source slice, the segmentation overlay and a warning burnt in."""
    if not source.datasets:
        raise ReportError("the source series has no images; there is nothing to lay the segmentation over")
    first = source.first
    rows, columns = int(first.Rows), int(first.Columns)
    if any(int(ds.Rows) != rows or int(ds.Columns) != columns for ds in source.datasets):
        raise ReportError("the images of the source series differ in size; Secondary Captures need one grid")
    pixels = _overlay_pixels(images, source)
    _burn_in(pixels, annotation_mask(annotation_lines(report), columns - TEXT_ORIGIN[1]))

    label = status_text(report)
    date, time, tz = dicom_date_time(report.created)
    colours = ", ".join(f"{v} {name}" for v, name in LABEL_NAMES.items())
    template = hd.sc.SCImage(
        pixel_array=pixels[0],
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=result_uid(report, "sc", "series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=result_uid(report, "sc", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),  # set per image below (highdicom takes single letters only)
        manufacturer_model_name="NeuroNav",
        series_description=f"NeuroNav AI overlay (not for clinical use) {label}"[:64],
        content_date=date,
        content_time=time,
        series_date=date,
        series_time=time,
        specific_character_set=CHARACTER_SET,
    )
    del template.PixelData
    template.PatientOrientation = []  # type 2C: empty unless the source slice has its orientation
    copy_patient_study(first, template)
    template.add_new(SOFTWARE_VERSIONS, "LO", software_versions(report))
    if tz is not None:
        template.TimezoneOffsetFromUTC = tz
    template.ConversionType = "WSD"
    # highdicom credits itself as contributing equipment; General Equipment already names the software, and
    # every element is written 192 times, so the series leaves it out
    if "ContributingEquipmentSequence" in template:
        del template.ContributingEquipmentSequence
    template.BurnedInAnnotation = "YES"
    template.LossyImageCompression = "00"
    template.ImageComments = f"NeuroNav AI - {label} - report {report.report_id} - {' '.join(report.notices)}"
    template.DerivationDescription = (
        f"Source image windowed (1st-99.5th percentile of the series) with the NeuroNav AI segmentation "
        f"blended at alpha {OVERLAY_ALPHA} ({colours}); report {report.report_id} {label}"
    )
    for keyword in _GEOMETRY:
        if keyword in first:
            template.add(_copy_element(first[keyword]))
    related = Dataset()
    related.StudyInstanceUID = first.StudyInstanceUID
    related.SeriesInstanceUID = source.series_instance_uid
    related.PurposeOfReferenceCodeSequence = []
    template.RelatedSeriesSequence = [related]
    template.SourceImageSequence = [_source_item()]
    meta = template.file_meta

    out: list[pydicom.Dataset] = []
    for k, src in enumerate(source.datasets):
        ds = _clone(template)
        uid = UID(result_uid(report, "sc", "instance", str(k + 1)))
        ds.file_meta = FileMetaDataset(_clone(meta))
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        for keyword in _PER_SLICE:
            if keyword in src:
                ds.add(_copy_element(src[keyword]))
        if "ImageOrientationPatient" in src:
            ds.PatientOrientation = _patient_orientation([float(v) for v in src.ImageOrientationPatient])
        ref = ds.SourceImageSequence[0]
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.add(DataElement(PIXEL_DATA, "OB", pixels[k].tobytes(), already_converted=True))
        out.append(ds)
    return out


__all__ = ["annotation_lines", "annotation_mask", "make_secondary_captures", "native_view"]
