"""DICOM Structured Report of the report's measurements: Comprehensive 3D SR, TID 1500 Measurement Report.

:func:`make_sr` writes every row of ``report.measurements`` (the one table every structured output is
written from) as a TID 300 Measurement: its concept code, value, UCUM unit, finding site (with
laterality), the measurement key as Tracking Identifier and the model(s) or algorithm that produced
it as TID 4019 Algorithm Identification (once for the group when every row of a group has the same
producer, which then applies to all its measurements). Rows are grouped into Measurement Groups:

==========================  =======================================================================
group                       rows
==========================  =======================================================================
one per BraTS label         the label's volume (necrotic core, oedema, enhancing). TID 1411
                            Volumetric ROI referencing the segment of the DICOM SEG when ``seg`` is
                            given and has the label; TID 1501 otherwise. The Tracking UID is the
                            segment's Tracking UID in the SEG.
Tumour                      whole tumour and tumour core volumes, classification confidence, and the
                            most likely tumour type as text (TID 1501)
one per lesion              volume and diameters; finding site = lobe (SNOMED CT) with laterality;
                            the atlas location as text (TID 1501)
Whole brain                 midline shift (and the level it was measured at, as text), ventricle
                            volumes and asymmetry, haemorrhage volume, tumour probability (TID 1501)
==========================  =======================================================================

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

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code as DicomCode
from pydicom.uid import SegmentationStorage
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
    new_uid,
    person_name,
    private_scheme_item,
    require_dicom_source,
    sr_algorithm,
    stable_uid,
    status_text,
)
from neuronav.report.build import location_text
from neuronav.report.dicom_seg import SEGMENT_CATEGORY, SEGMENT_TYPES, segment_tracking_uid, tracking_id
from neuronav.report.lifecycle import verify_signature
from neuronav.report.model import Code, Measurement, Report
from neuronav.report.sources import SourceSeries

P = codes.PRIVATE_SCHEME
LOCATION_TEXT = Code(value="lesion-location", scheme=P, meaning="Lesion location (atlas region)")
TUMOUR_TYPE_TEXT = Code(value="tumour-type", scheme=P, meaning="Most likely tumour type (AI classification)")
SHIFT_LEVEL_TEXT = Code(value="midline-level", scheme=P, meaning="Level of the midline shift measurement")
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
        algorithm_id=sr_algorithm(m.produced_by) if with_algorithm else None,
        finding_sites=[finding_site(m.finding_site, m.laterality)] if m.finding_site else None,
    )


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


def _groups(report: Report, source: SourceSeries, seg: Dataset | None) -> list[_Group]:
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
    ordered = [*segment_groups.values(), tumour, *(lesions[i] for i in sorted(lesions)), whole_brain]
    return [g for g in ordered if g.rows]


def _template(
    report: Report, g: _Group
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    tracking = hd.sr.TrackingIdentifier(uid=g.tracking_uid, identifier=g.tracking_id)
    producers = {tuple((p.name, p.version, p.sha256) for p in m.produced_by) for m in g.rows}
    shared = sr_algorithm(g.rows[0].produced_by) if len(producers) == 1 else None  # else one per measurement
    measurements = [_measurement(report, m, with_algorithm=shared is None) for m in g.rows]
    category = SEGMENT_CATEGORY if g.finding_type is not None else None
    template: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
    if g.segment is not None:
        template = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=g.segment,
            finding_type=g.finding_type,
            finding_category=category,
            finding_sites=g.finding_sites,
            algorithm_id=shared,
            measurements=measurements,
        )
    else:
        template = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            finding_type=g.finding_type,
            finding_category=category,
            finding_sites=g.finding_sites,
            algorithm_id=shared,
            measurements=measurements,
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


def make_sr(report: Report, source: SourceSeries, *, seg: Dataset | None = None) -> Dataset:
    """The measurements of ``report`` as a Comprehensive 3D SR (TID 1500) on ``source`` (see the module doc).

    ``seg``: the DICOM SEG written for the same report (:func:`~neuronav.report.dicom_seg.make_seg`);
    its segments are then referenced by the volume groups.
    """
    require_dicom_source(report, source, "DICOM SR")
    signature = report.signature
    if signature is not None and not verify_signature(report):
        raise ReportError(
            f"DICOM SR: the signature of report {report.report_id} v{report.version} does not match its "
            "content (changed after signing); it cannot be written as verified"
        )
    groups = [_template(report, g) for g in _groups(report, source, seg)]
    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(report),
        procedure_reported=coded(codes.REPORT_CODE),
        imaging_measurements=groups,
        title=dcm_codes.cid7021.ImagingMeasurementReport,
    )
    root = content[0]
    root.ContentSequence.append(_disclaimers(report))
    evidence: Sequence[Dataset] = [*source.datasets, seg] if seg is not None else source.datasets
    signed = signature is not None
    first = source.first
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=root,
            series_instance_uid=new_uid(),
            series_number=SERIES_NUMBER_SR,
            sop_instance_uid=new_uid(),
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
        )
    except (ValueError, TypeError) as exc:
        raise ReportError(f"DICOM SR cannot be made: {exc}") from exc
    if signature is not None:
        sr.VerifyingObserverSequence[0].VerificationDateTime = DT(signature.signed_at)
    return sr
