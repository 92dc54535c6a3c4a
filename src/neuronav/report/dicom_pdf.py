"""DICOM Encapsulated PDF of the PDF report, so a PACS shows the report next to the images it is about.

highdicom has no Encapsulated PDF class, so the IOD (PS3.3 A.45.1, SOP Class
1.2.840.10008.5.1.4.1.1.104.1) is built on :class:`highdicom.SOPClass` (SOP Common, Patient, General
Study, Series and Equipment attributes) with the Encapsulated Document Series, SC Equipment and
Encapsulated Document modules added here:

* Patient, General Study and Patient Study attributes are copied from the source series (the
  reference series of the analysis), so the document joins the patient's study;
* a new series (Modality ``DOC``) holds the one document;
* ``DocumentTitle`` and ``SeriesDescription`` name the report id, status and version, and say that
  the content is AI-generated and not for clinical use;
* ``EncapsulatedDocument`` holds the PDF bytes, padded with one NUL to an even length when needed;
  ``EncapsulatedDocumentLength`` is the length without the pad;
* ``SourceInstanceSequence`` references every image of the source series (the document is derived
  from them).

The small helpers that copy the patient and study of a source dataset, format dates and name the
software are shared with :mod:`neuronav.report.dicom_sc`.
"""

from __future__ import annotations

import copy
from datetime import datetime

import highdicom as hd
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from neuronav import __version__
from neuronav.errors import ReportError
from neuronav.report._dicom_common import MANUFACTURER, result_uid, status_text
from neuronav.report.codes import IMAGING_REPORT, REPORT_CODE
from neuronav.report.model import Code, Report
from neuronav.report.sources import SourceSeries

CHARACTER_SET = "ISO_IR 192"  # UTF-8: any name copied from the source and any text of ours encodes
PDF_SERIES_NUMBER = 9003  # after SEG 9001 and SR 9002: the AI series sort after the acquired ones
PDF_MIME = "application/pdf"

# Patient, General Study and Patient Study attributes copied verbatim (when present) from the source.
PATIENT_STUDY_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)
_TYPE2: tuple[str, ...] = (  # written empty when the source lacks them
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
SOFTWARE_VERSIONS = 0x00181020  # set by tag: highdicom declares the attribute as one string


def copy_patient_study(source: Dataset, target: Dataset) -> None:
    """Put the patient and study of ``source`` on ``target``: its elements copied, type 2 ones empty if absent."""
    for keyword in PATIENT_STUDY_KEYWORDS:
        elem = source.data_element(keyword) if keyword in source else None
        if elem is not None:
            target[elem.tag] = DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value))
        elif keyword in _TYPE2:
            setattr(target, keyword, None)
        elif keyword in target:
            delattr(target, keyword)
    target.SpecificCharacterSet = CHARACTER_SET


def software_versions(report: Report) -> list[str]:
    """NeuroNav's version, then each model and algorithm of the analysis (LO: 64 characters each)."""
    versions = [f"NeuroNav {__version__}"]
    versions += [f"{m.name} {m.version}"[:64] for m in report.study_info.models]
    return versions


def dicom_date_time(when: datetime) -> tuple[str, str, str | None]:
    """(DA, TM, TimezoneOffsetFromUTC or None) of ``when``; an aware time is given in the local zone."""
    if when.tzinfo is not None:
        when = when.astimezone()
    offset = when.utcoffset()
    tz: str | None = None
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        tz = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S"), tz


def code_item(code: Code) -> Dataset:
    """A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _source_references(source: SourceSeries) -> list[Dataset]:
    items = []
    for ds in source.datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        items.append(item)
    return items


def make_encapsulated_pdf(report: Report, pdf: bytes, source: SourceSeries) -> pydicom.Dataset:
    """The Encapsulated PDF instance of ``pdf`` (the rendered ``report``) in the study of ``source``."""
    if not pdf.startswith(b"%PDF-"):
        raise ReportError("the Encapsulated PDF needs a PDF document; the bytes given do not start with %PDF-")
    if not source.datasets:
        raise ReportError("the source series has no images; the Encapsulated PDF cannot join its study")
    first = source.first
    date, time, tz = dicom_date_time(report.created)
    label = status_text(report)
    ds = hd.SOPClass(
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=result_uid(report, "epdf", "series"),
        series_number=PDF_SERIES_NUMBER,
        sop_instance_uid=result_uid(report, "epdf", "instance"),
        sop_class_uid=EncapsulatedPDFStorage,
        instance_number=1,
        modality="DOC",
        manufacturer=MANUFACTURER,
        manufacturer_model_name="NeuroNav",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=f"NeuroNav AI report (not for clinical use) {label}"[:64],
        content_date=date,
        content_time=time,
        series_date=date,
        series_time=time,
        specific_character_set=CHARACTER_SET,
    )
    copy_patient_study(first, ds)
    ds.add_new(SOFTWARE_VERSIONS, "LO", software_versions(report))
    if tz is not None:
        ds.TimezoneOffsetFromUTC = tz
    # SC Equipment: a document made by software on a workstation
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = "NeuroNav"
    ds.SecondaryCaptureDeviceSoftwareVersions = software_versions(report)
    # Encapsulated Document
    ds.AcquisitionDateTime = f"{date}{time}{tz or ''}"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = (
        f"NeuroNav AI report {report.report_id} {label} (AI-generated, research software, not for clinical use)"
    )
    ds.ConceptNameCodeSequence = [code_item(REPORT_CODE)]
    ds.DocumentClassCodeSequence = [code_item(IMAGING_REPORT)]
    ds.VerificationFlag = "VERIFIED" if report.signature is not None else "UNVERIFIED"
    ds.SourceInstanceSequence = _source_references(source)
    ds.MIMETypeOfEncapsulatedDocument = PDF_MIME
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + b"\0" if len(pdf) % 2 else pdf
    return ds


__all__ = ["make_encapsulated_pdf"]
