"""DICOM Structured Report of the report's measurements: Comprehensive SR, TID 1500 Measurement Report.

:func:`make_sr` writes every row of ``report.measurements`` (the one table every structured output is
written from) as a TID 300 Measurement: its concept code, value, UCUM unit, finding site (with
laterality), the measurement key as Tracking Identifier and the model(s) or algorithm that produced
it as TID 4019 Algorithm Identification (once for the group when every row of a group has the same
producer, which then applies to all its measurements). Rows are grouped into Measurement Groups:

==========================  =======================================================================
group                       rows
==========================  =======================================================================
one per BraTS label         the label's volume (necrotic core, oedema, enhancing). Region: the
                            segment of the DICOM SEG (Referenced Segment). The Tracking UID is the
                            segment's Tracking UID in the SEG.
Tumour                      whole tumour and tumour core volumes, classification confidence, and the
                            most likely tumour type as text. Region: the outlines of the whole
                            tumour (labels 1-3) on each source slice that holds it.
one per lesion              volume and diameters; finding site = lobe (SNOMED CT) with laterality;
                            the atlas location as text. Region: the outlines of the lesion (the
                            connected component of the label map at its centroid) on each slice.
Whole brain                 midline shift (and the level it was measured at, as text), ventricle
                            volumes and asymmetry, haemorrhage volume, tumour probability. Region:
                            the whole field of view of each source slice (these are measured over
                            the whole scan).
==========================  =======================================================================

Template structure: with a SEG (``seg`` and ``analysis_dir`` given) every group is a TID 1411
Volumetric ROI that references its segment or its image regions (SCOORD ``Image Region``, closed
POLYLINE outlines in the pixel coordinates of the source slice, each with its source image), so
TID 1500 validators that pick one measurement-group template for the whole Imaging Measurements
container (PixelMed's DicomSRValidator) find every group complete. Without a SEG no group has a
reference and every group is a TID 1501 Measurement and Qualitative Evaluation Group. There are no
3D coordinates, so the IOD is Comprehensive SR (read by toolkits that predate Comprehensive 3D SR).
Procedure Reported is DCM 126020 Multiparametric MRI, from CID 100 as TID 1500 requires.

Observation context: the device observer NeuroNav (name and version) and, when the report is signed,
the signer as person observer (role: verifying). Flags: an unsigned report is PARTIAL, UNVERIFIED,
PRELIMINARY; a signed one (final, or a signed amendment) is COMPLETE, VERIFIED, FINAL with the
signer as Verifying Observer at the signature time. A signature that no longer matches the report's
content is refused (ReportError), so an edited report is never marked verified. The report status
and version (``PRELIMINARY v1``) are in SeriesDescription; the disclaimers are in the document.

Codes: concepts from :mod:`neuronav.report.codes`; the private scheme ``99NEURONAV`` is declared in
the CodingSchemeIdentificationSequence. Text items use private concept names (:data:`LOCATION_TEXT`,
:data:`TUMOUR_TYPE_TEXT`, :data:`SHIFT_LEVEL_TEXT`, :data:`DISCLAIMER_TEXT`, :data:`SIGNATURE_TEXT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code as DicomCode
from pydicom.uid import ComprehensiveSRStorage, SegmentationStorage
from pydicom.valuerep import DT

from neuronav.errors import ReportError
from neuronav.findings import Lesion
from neuronav.report import codes
from neuronav.report._dicom_common import (
    DEVICE_OBSERVER_UID,
    DEVICE_SERIAL_NUMBER,
    MANUFACTURER,
    MODEL_NAME,
    NOT_FOR_CLINICAL_USE,
    SERIES_NUMBER_SR,
    SOFTWARE_VERSION,
    coded,
    lo,
    person_name,
    private_scheme_item,
    require_dicom_source,
    result_uid,
    sr_algorithm,
    stable_uid,
    status_text,
)
from neuronav.report.build import location_text
from neuronav.report.dicom_seg import (
    SEGMENT_CATEGORY,
    SEGMENT_TYPES,
    load_label_map,
    segment_tracking_uid,
    tracking_id,
)
from neuronav.report.lifecycle import verify_signature
from neuronav.report.model import Code, Measurement, Report, model_info
from neuronav.report.sources import SourceSeries

P = codes.PRIVATE_SCHEME
LOCATION_TEXT = Code(value="lesion-location", scheme=P, meaning="Lesion location (atlas region)")
TUMOUR_TYPE_TEXT = Code(value="tumour-type", scheme=P, meaning="Most likely tumour type (AI classification)")
SHIFT_LEVEL_TEXT = Code(value="midline-level", scheme=P, meaning="Level of the midline shift measurement")
READER_TEXT = Code(value="reader", scheme=P, meaning="Reader who measured (not the AI)")
CHANGE = Code(value="volume-change", scheme=P, meaning="Volume change versus prior")
DISCLAIMER_TEXT = Code(value="disclaimer", scheme=P, meaning="Disclaimer")
SIGNATURE_TEXT = Code(value="signature-manifestation", scheme=P, meaning="Electronic signature manifestation")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept(
    value="C0034375", scheme_designator="UMLS", meaning="Qualitative Evaluations"
)

UNITS: dict[str, tuple[str, str]] = {  # UCUM code → (code, DICOM code meaning)
    "mL": ("mL", "milliliter"),
    "mm": ("mm", "millimeter"),
    "mm2": ("mm2", "square millimeter"),
    "%": ("%", "percent"),
    "1": ("1", "no units"),
}
LATERALITY: dict[str, DicomCode] = {"left": dcm_codes.SCT.Left, "right": dcm_codes.SCT.Right}
MIDLINE: DicomCode = dcm_codes.SCT.Median  # topographical modifier for a midline site
LOBE_SITES: dict[str, DicomCode] = {
    "frontal": dcm_codes.SCT.FrontalLobe,
    "parietal": dcm_codes.SCT.ParietalLobe,
    "temporal": dcm_codes.SCT.TemporalLobe,
    "occipital": dcm_codes.SCT.OccipitalLobe,
    "insula": dcm_codes.SCT.Insula,
    "limbic (cingulate)": dcm_codes.SCT.LimbicLobe,
    "limbic (medial temporal)": dcm_codes.SCT.LimbicLobe,
    "cerebellum": dcm_codes.SCT.Cerebellum,
}  # any other lobe (deep grey nuclei, unknown): Brain


@dataclass
class _Group:
    tracking_id: str
    tracking_uid: str
    finding_type: DicomCode | hd.sr.CodedConcept | None
    finding_sites: list[hd.sr.FindingSite]
    rows: list[Measurement] = field(default_factory=list)
    texts: list[tuple[Code, str]] = field(default_factory=list)
    segment: hd.sr.ReferencedSegment | None = None
    regions: list[hd.sr.ImageRegion] = field(default_factory=list)
    qualitative: list[tuple[Code, Code]] = field(default_factory=list)  # e.g. the RANO category


def unit(ucum: str) -> hd.sr.CodedConcept:
    value, meaning = UNITS.get(ucum, (ucum, ucum))
    return hd.sr.CodedConcept(value=value, scheme_designator="UCUM", meaning=meaning)


def finding_site(site: Code, laterality: str | None) -> hd.sr.FindingSite:
    return hd.sr.FindingSite(
        anatomic_location=coded(site),
        laterality=LATERALITY.get(laterality or ""),
        topographical_modifier=MIDLINE if laterality == "midline" else None,
    )


def lesion_site(lesion: Lesion) -> hd.sr.FindingSite:
    lobe = LOBE_SITES.get(lesion.location.lobe, dcm_codes.SCT.Brain)
    side = lesion.location.hemisphere
    return hd.sr.FindingSite(
        anatomic_location=lobe,
        laterality=LATERALITY.get(side),
        topographical_modifier=MIDLINE if side == "midline" else None,
    )


def _measurement(report: Report, m: Measurement, *, with_algorithm: bool) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=coded(m.concept),
        value=m.value,
        unit=unit(m.unit),
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=stable_uid(report.report_id, "measurement", m.key), identifier=m.key
        ),
        algorithm_id=sr_algorithm(m.produced_by) if with_algorithm and m.produced_by else None,
        finding_sites=[finding_site(m.finding_site, m.laterality)] if m.finding_site else None,
    )


OUTLINE_TOLERANCE_PX = 0.5  # outline simplification: no vertex moves more than half a pixel


def _outlines(mask: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.float64]]:
    """Closed outlines of the (hole-filled) regions of one slice ``[row, column]``, as (column, row) points.

    Image coordinates as SCOORD uses them: the top-left corner of the image is (0, 0), the centre
    of the top-left pixel (0.5, 0.5); an outline runs half-way between region and background pixels.
    """
    from scipy import ndimage as ndi
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(ndi.binary_fill_holes(mask), 1).astype(np.float32)
    out = []
    for contour in find_contours(padded, 0.5):
        simple = approximate_polygon(contour, tolerance=OUTLINE_TOLERANCE_PX)
        if len(simple) >= 4:  # a closed polyline: at least three corners and the first point again
            out.append(simple[:, ::-1] - 0.5)  # padded (row, column) -> image (column, row)
    return out


def _source_item(source: SourceSeries, k: int) -> hd.sr.SourceImageForRegion:
    ds = source.datasets[k]
    return hd.sr.SourceImageForRegion(str(ds.SOPClassUID), str(ds.SOPInstanceUID))


def _regions(source: SourceSeries, frames: npt.NDArray[np.bool_]) -> list[hd.sr.ImageRegion]:
    """Image Region items outlining ``frames`` (``[k, row, column]`` on the source slices) slice by slice."""
    regions = []
    for k in np.flatnonzero(frames.reshape(frames.shape[0], -1).any(axis=1)):
        for points in _outlines(frames[int(k)]):
            regions.append(
                hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                    graphic_data=points,
                    source_image=_source_item(source, int(k)),
                )
            )
    return regions


def _field_of_view(source: SourceSeries) -> list[hd.sr.ImageRegion]:
    """One Image Region per source slice: its whole field of view (a closed rectangle on the pixel edges)."""
    regions = []
    for k, ds in enumerate(source.datasets):
        cols, rows = float(ds.Columns), float(ds.Rows)
        box = np.array([[0.0, 0.0], [cols, 0.0], [cols, rows], [0.0, rows], [0.0, 0.0]])
        regions.append(
            hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=box, source_image=_source_item(source, k)
            )
        )
    return regions


def _lesion_masks(
    report: Report, source: SourceSeries, frames: npt.NDArray[np.uint8]
) -> dict[int, npt.NDArray[np.bool_]]:
    """Each lesion of the findings → its connected component of the whole tumour in ``frames`` ``[k, row, col]``.

    The component is the one whose voxels lie nearest the lesion's centroid (the lesions were measured
    as the 26-connected components of the same label map); an edited lesion with no tumour voxel near
    it gets the nearest component all the same.
    """
    from scipy import ndimage as ndi

    comp, n = ndi.label(frames > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return {}
    kji = np.argwhere(comp > 0)
    labels_at = comp[tuple(kji.T)]
    ijk = np.stack([kji[:, 2], kji[:, 1], kji[:, 0], np.ones(len(kji))], axis=1).astype(np.float64)
    ras = (ijk @ np.asarray(source.affine, dtype=np.float64).T)[:, :3]
    out: dict[int, npt.NDArray[np.bool_]] = {}
    for lesion in report.findings.segmentation.lesions:
        nearest = int(labels_at[int(np.argmin(np.sum((ras - np.asarray(lesion.centroid_ras_mm)) ** 2, axis=1)))])
        out[lesion.index] = comp == nearest
    return out


def _key(code: Code) -> tuple[str, str]:
    return code.scheme, code.value


def _segments_in_seg(report: Report, source: SourceSeries, seg: Dataset) -> dict[int, int]:
    """BraTS label → segment number in ``seg``, which must be this report's SEG of ``source``."""
    if seg.get("SOPClassUID") != SegmentationStorage:
        raise ReportError("DICOM SR: the object given as the SEG is not a DICOM Segmentation")
    if seg.get("StudyInstanceUID") != source.first.get("StudyInstanceUID"):
        raise ReportError("DICOM SR: the DICOM SEG belongs to another study than the source images")
    referenced = {item.get("SeriesInstanceUID") for item in seg.get("ReferencedSeriesSequence", [])}
    if source.series_instance_uid not in referenced:
        raise ReportError("DICOM SR: the DICOM SEG was not made on the reference series of this report")
    by_uid = {segment_tracking_uid(report, label): label for label, _, _ in codes.BRATS_SEGMENTS}
    found = {
        by_uid[str(item.TrackingUID)]: int(item.SegmentNumber)
        for item in seg.get("SegmentSequence", [])
        if str(item.get("TrackingUID", "")) in by_uid
    }
    if not found:
        raise ReportError(f"DICOM SR: the DICOM SEG was not written for report {report.report_id}")
    return found


def _groups(
    report: Report, source: SourceSeries, seg: Dataset | None, frames: npt.NDArray[np.uint8] | None
) -> list[_Group]:
    rid = report.report_id
    in_seg = _segments_in_seg(report, source, seg) if seg is not None else {}

    def brain() -> list[hd.sr.FindingSite]:  # new content items for each group (no item shared in the tree)
        return [hd.sr.FindingSite(anatomic_location=dcm_codes.SCT.Brain)]

    segment_groups: dict[tuple[str, str], _Group] = {}
    for label, _, segment_site in codes.BRATS_SEGMENTS:
        group = _Group(tracking_id(label), segment_tracking_uid(report, label), SEGMENT_TYPES[label], brain())
        if seg is not None and label in in_seg:
            group.segment = hd.sr.ReferencedSegment(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=str(seg.SOPInstanceUID),
                segment_number=in_seg[label],
                source_series=hd.sr.SourceSeriesForSegmentation(source.series_instance_uid),
            )
        segment_groups[_key(segment_site)] = group
    f = report.findings
    tumour = _Group("Tumour", stable_uid(rid, "tumour"), dcm_codes.SCT.Neoplasm, brain())
    if f.detection.tumour_detected and f.classification.label:
        tumour.texts.append((TUMOUR_TYPE_TEXT, f.classification.label))
    lesions: dict[int, _Group] = {}
    for lesion in f.segmentation.lesions:
        lesions[lesion.index] = _Group(
            f"Lesion {lesion.index}",
            stable_uid(rid, "lesion", str(lesion.index)),
            dcm_codes.SCT.Neoplasm,
            [lesion_site(lesion)],
            texts=[(LOCATION_TEXT, location_text(lesion))],
        )
    whole_brain = _Group("Whole brain", stable_uid(rid, "whole-brain"), None, brain())
    whole_brain.texts.append((SHIFT_LEVEL_TEXT, f.midline_shift.level))
    tumour_sites = {_key(codes.NEOPLASM), _key(codes.TUMOUR_CORE)}
    for m in report.measurements:
        site = _key(m.finding_site) if m.finding_site else None
        if m.lesion_index is not None:
            if m.lesion_index not in lesions:
                raise ReportError(
                    f"DICOM SR: measurement {m.key} refers to lesion {m.lesion_index}, not in the findings"
                )
            lesions[m.lesion_index].rows.append(m)
        elif m.concept == codes.VOLUME and site in segment_groups:
            segment_groups[site].rows.append(m)
        elif site in tumour_sites:
            tumour.rows.append(m)
        else:
            whole_brain.rows.append(m)
    change = report.change_versus_prior
    if change is not None:  # RANO as a qualitative evaluation, the change per region as measurements
        seg_models = [model_info(p) for p in f.segmentation.produced_by]
        rano = Code(value=change.rano_category, scheme=P, meaning=change.rano_category.replace("_", " "))
        tumour.qualitative.append((codes.RANO, rano))
        for row in change.rows:
            if row.change_percent is not None:
                tumour.rows.append(
                    Measurement(
                        key=f"change_{row.key}",
                        label=f"{row.label}: change versus prior",
                        value=row.change_percent,
                        unit="%",
                        concept=CHANGE,
                        source=f"/change/volume_change_percent/{row.key}",
                        produced_by=seg_models,
                    )
                )
    readers: dict[str, _Group] = {}
    for r in report.reader_measurements:  # each reader's own group: no algorithm, the reader named
        if r.reader not in readers:
            readers[r.reader] = _Group(
                f"Reader {len(readers) + 1}",
                stable_uid(rid, "reader", r.reader),
                None,
                brain(),
                texts=[(READER_TEXT, r.reader)],
            )
        readers[r.reader].rows.append(
            Measurement(
                key=r.key,
                label=r.label,
                value=r.value,
                unit=r.unit,
                concept=r.concept,
                source=f"/reader_measurements/{r.key}",
                produced_by=[],
            )
        )
    if frames is not None:  # with a SEG: every group references its segment or its regions
        tumour.regions = _regions(source, frames > 0)
        for index, mask in _lesion_masks(report, source, frames).items():
            if index in lesions:
                lesions[index].regions = _regions(source, mask)
        whole_brain.regions = _field_of_view(source)
        for label, _, segment_site in codes.BRATS_SEGMENTS:
            group = segment_groups[_key(segment_site)]
            if group.segment is None and group.rows:  # a volume of a label the SEG has no segment for
                group.regions = _regions(source, frames == label) or _field_of_view(source)
        for group in (tumour, *lesions.values(), *readers.values()):
            if not group.regions:  # nothing of it in the label map (an edited finding)
                group.regions = _field_of_view(source)
    ordered = [*segment_groups.values(), tumour, *(lesions[i] for i in sorted(lesions)), whole_brain, *readers.values()]
    return [g for g in ordered if g.rows or g.qualitative]


def _qualitative(g: _Group) -> list[hd.sr.QualitativeEvaluation]:
    return [hd.sr.QualitativeEvaluation(name=coded(name), value=coded(value)) for name, value in g.qualitative]


def _template(
    report: Report, g: _Group
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    tracking = hd.sr.TrackingIdentifier(uid=g.tracking_uid, identifier=g.tracking_id)
    producers = {tuple((p.name, p.version, p.sha256) for p in m.produced_by) for m in g.rows}
    one = len(producers) == 1 and g.rows[0].produced_by
    shared = sr_algorithm(g.rows[0].produced_by) if one else None  # else one per measurement (none: a reader's)
    measurements = [_measurement(report, m, with_algorithm=shared is None) for m in g.rows]
    category = SEGMENT_CATEGORY if g.finding_type is not None else None
    template: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
    if g.segment is not None or g.regions:
        template = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=g.segment,
            referenced_regions=(g.regions or None) if g.segment is None else None,
            finding_type=g.finding_type,
            finding_category=category,
            finding_sites=g.finding_sites,
            algorithm_id=shared,
            measurements=measurements,
            qualitative_evaluations=_qualitative(g) or None,
        )
    else:
        template = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            finding_type=g.finding_type,
            finding_category=category,
            finding_sites=g.finding_sites,
            algorithm_id=shared,
            measurements=measurements,
            qualitative_evaluations=_qualitative(g) or None,
        )
    for concept, text in g.texts:
        template[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=coded(concept), value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )
    return template


def _observation_context(report: Report) -> hd.sr.ObservationContext:
    device = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID,
            name=f"{MODEL_NAME} {SOFTWARE_VERSION}",
            manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
            serial_number=DEVICE_SERIAL_NUMBER,
        ),
    )
    person = None
    if report.signature is not None:
        person = hd.sr.ObserverContext(
            observer_type=dcm_codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person_name(report.signature.signed_by),
                role_in_procedure=dcm_codes.cid7453.Verifying,
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _disclaimers(report: Report) -> hd.sr.ContainerContentItem:
    box = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    box.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=coded(DISCLAIMER_TEXT), value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
            for text in report.notices
        ]
    )
    if report.signature is not None:  # name, time and meaning (21 CFR 11.50), with the Verifying Observer
        box.ContentSequence.append(
            hd.sr.TextContentItem(
                name=coded(SIGNATURE_TEXT),
                value=report.signature.manifestation(),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return box


def predecessor_reference(predecessor: Report, first: Dataset) -> Dataset:
    """What the Predecessor Documents Sequence names of the SR written for ``predecessor`` (an earlier
    version of the same report, on the same study): its study, series and instance UIDs and SOP class."""
    ref = Dataset()
    ref.SOPClassUID = ComprehensiveSRStorage
    ref.SOPInstanceUID = result_uid(predecessor, "sr", "instance")
    ref.SeriesInstanceUID = result_uid(predecessor, "sr", "series")
    ref.StudyInstanceUID = first.StudyInstanceUID
    return ref


def make_sr(
    report: Report,
    source: SourceSeries,
    *,
    seg: Dataset | None = None,
    analysis_dir: Path | None = None,
    predecessor: Report | None = None,
) -> Dataset:
    """The measurements of ``report`` as a Comprehensive SR (TID 1500) on ``source`` (see the module doc).

    ``seg``: the DICOM SEG written for the same report (:func:`~neuronav.report.dicom_seg.make_seg`);
    its segments are then referenced by the volume groups, and the other groups reference their
    regions, outlined from the label map in ``analysis_dir`` (required with ``seg``).

    ``predecessor``: the version this one amends; its SR (UIDs stable per version,
    :func:`~._dicom_common.result_uid`) is named in the Predecessor Documents Sequence.
    """
    require_dicom_source(report, source, "DICOM SR")
    frames = None
    if seg is not None:
        if analysis_dir is None:
            raise ReportError("DICOM SR: with a DICOM SEG, the analysis folder (the label map) is needed too")
        frames, _ = load_label_map(report, analysis_dir, source)
    signature = report.signature
    if signature is not None and not verify_signature(report):
        raise ReportError(
            f"DICOM SR: the signature of report {report.report_id} v{report.version} does not match its "
            "content (changed after signing); it cannot be written as verified"
        )
    groups = [_template(report, g) for g in _groups(report, source, seg, frames)]
    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(report),
        procedure_reported=coded(codes.SR_PROCEDURE),
        imaging_measurements=groups,
        title=dcm_codes.cid7021.ImagingMeasurementReport,
    )
    root = content[0]
    root.ContentSequence.append(_disclaimers(report))
    evidence: Sequence[Dataset] = [*source.datasets, seg] if seg is not None else source.datasets
    signed = signature is not None
    first = source.first
    try:
        sr = hd.sr.ComprehensiveSR(
            evidence=evidence,
            content=root,
            series_instance_uid=result_uid(report, "sr", "series"),
            series_number=SERIES_NUMBER_SR,
            sop_instance_uid=result_uid(report, "sr", "instance"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=signed,
            is_final=signed,
            is_verified=signed,
            institution_name=first.get("InstitutionName") or None,
            verifying_observer_name=person_name(signature.signed_by) if signature else None,
            verifying_organization=lo(str(first.get("InstitutionName") or "Not recorded")) if signature else None,
            series_description=lo(f"NeuroNav AI measurements - {NOT_FOR_CLINICAL_USE} - {status_text(report)}"),
            manufacturer_model_name=MODEL_NAME,
            software_versions=SOFTWARE_VERSION,
            device_serial_number=DEVICE_SERIAL_NUMBER,
            coding_schemes=[private_scheme_item()],
            previous_versions=[predecessor_reference(predecessor, first)] if predecessor is not None else None,
        )
    except (ValueError, TypeError) as exc:
        raise ReportError(f"DICOM SR cannot be made: {exc}") from exc
    if signature is not None:
        sr.VerifyingObserverSequence[0].VerificationDateTime = DT(signature.signed_at)
    return sr
