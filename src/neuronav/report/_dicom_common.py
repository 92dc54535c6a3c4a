"""What the DICOM SEG and SR writers share: equipment, UIDs, codes, algorithm identification, checks.

* Equipment: manufacturer and model ``NeuroNav``, software version :data:`neuronav.__version__`.
  Software has no serial number; the version stands in for DeviceSerialNumber (Type 1 in SEG).
* UIDs: the series and instances written for a report are derived from the report's id, version and
  content (:func:`result_uid`): exporting the same report again gives the same SOP Instance UIDs (a PACS
  keeps one copy), any change of content or status (an edit, the signature, an amendment) gives new
  ones. Identities that must be the same in every object written for one report (the tracking UID of
  a segment, which the SR repeats, and the device observer UID of NeuroNav) are derived from names
  (:func:`stable_uid`); :func:`new_uid` is a random UID.
* Codes: :func:`coded` turns a :class:`~neuronav.report.model.Code` into a highdicom
  ``CodedConcept``; the private scheme ``99NEURONAV`` is declared in the CodingSchemeIdentification
  Sequence (:func:`private_scheme_item`) of every object that uses it.
* Algorithms: a value made by several models (the segmentation ensemble) names all of them:
  ``seg-a + seg-b``, versions in the same order, and each model file's sha256 as a parameter.
"""

from __future__ import annotations

import hashlib
import uuid

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem  # not re-exported by highdicom
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import generate_uid

from neuronav import __version__
from neuronav.errors import ReportError
from neuronav.report import codes
from neuronav.report.model import Code, ModelInfo, Report
from neuronav.report.sources import SourceSeries

MANUFACTURER = "NeuroNav"
MODEL_NAME = "NeuroNav"
SOFTWARE_VERSION = __version__
DEVICE_SERIAL_NUMBER = __version__  # software: no serial number; the version identifies the device
SERIES_NUMBER_SEG = 9001  # far above the scanner's series numbers, so the AI series sort last
SERIES_NUMBER_SR = 9002
NOT_FOR_CLINICAL_USE = "not for clinical use"
LO_MAX = 64  # DICOM LO (long string) limit

_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:neuronav")


def new_uid() -> str:
    """A new UID (``2.25.`` + a random UUID): no registered root is needed."""
    return str(generate_uid(prefix=None))


def stable_uid(*parts: str) -> str:
    """A ``2.25.`` UID derived from ``parts`` (a name-based UUID): the same parts give the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(parts)).int}"


def result_uid(report: Report, *parts: str) -> str:
    """The UID of a series or instance written for ``report`` (``parts`` name which: ``"seg", "series"``):
    the same for every export of the same content, new when the content, status or signature changes.
    The patient's identity is not part of it (a stored version never holds it)."""
    content = hashlib.sha256(report.pseudonymous().model_dump_json().encode("utf-8")).hexdigest()
    return stable_uid("result", report.report_id, str(report.version), content, *parts)


DEVICE_OBSERVER_UID = stable_uid("device-observer", MANUFACTURER)


def private_scheme_item() -> CodingSchemeIdentificationItem:
    """The CodingSchemeIdentificationSequence item declaring ``99NEURONAV`` (a new dataset per object)."""
    return CodingSchemeIdentificationItem(
        designator=codes.PRIVATE_SCHEME, name="NeuroNav private codes", responsible_organization=MANUFACTURER
    )


def coded(code: Code) -> hd.sr.CodedConcept:
    """The highdicom form of a report code (long private values become LongCodeValue)."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def lo(text: str) -> str:
    """``text`` cut to fit a DICOM LO value: 64 characters, counted as UTF-8 bytes to be safe."""
    if len(text.encode("utf-8")) <= LO_MAX:
        return text
    while len((text + "…").encode("utf-8")) > LO_MAX:
        text = text[:-1]
    return text + "…"


def status_text(report: Report) -> str:
    """``PRELIMINARY v1``: the report status and version every DICOM object records."""
    return f"{report.status.upper()} v{report.version}"


def person_name(name: str) -> str:
    """A user name as a DICOM PN: kept whole as the family-name component unless it has carets.

    The components of a free-text name cannot be known, so ``Dr A`` becomes ``Dr A^`` (the caret
    says "family name only") rather than a guessed family and given name.
    """
    clean = " ".join(name.replace("\\", " ").replace("=", " ").split())[:LO_MAX]
    if not clean:
        raise ReportError("the signer of the report has no name")
    return clean if "^" in clean else clean + "^"


def _names_versions(models: list[ModelInfo]) -> tuple[str, str, list[str]]:
    if not models:
        raise ReportError("a value without the model or algorithm that produced it cannot be written to DICOM")
    name = " + ".join(m.name for m in models)
    version = " + ".join(m.version for m in models)
    params = [f"{m.name} sha256={m.sha256}" for m in models if m.sha256]
    return name, version, params


def sr_algorithm(models: list[ModelInfo]) -> hd.sr.AlgorithmIdentification:
    """TID 4019 Algorithm Identification of the model(s) or algorithm that produced a value."""
    name, version, params = _names_versions(models)
    return hd.sr.AlgorithmIdentification(
        name=name, version=version, parameters=params or None, manufacturer=MANUFACTURER
    )


def seg_algorithm(models: list[ModelInfo]) -> hd.AlgorithmIdentificationSequence:
    """Segmentation Algorithm Identification Sequence (family: artificial intelligence)."""
    name, version, _ = _names_versions(models)
    params = {m.name: f"sha256:{m.sha256}" for m in models if m.sha256}
    return hd.AlgorithmIdentificationSequence(
        name=lo(name),
        family=dcm_codes.cid7162.ArtificialIntelligence,
        version=lo(version),
        source=MANUFACTURER,
        parameters=params or None,
    )


def require_dicom_source(report: Report, source: SourceSeries, what: str) -> None:
    """ReportError unless ``source`` is the DICOM reference series the report was made from."""
    study = report.study_info
    if study.input_kind != "dicom" or not study.reference_series_uid:
        raise ReportError(
            f"{what}: this report was made from NIfTI files, which carry no DICOM patient, study or image "
            "identity to refer to; analyse the DICOM study to get DICOM outputs"
        )
    if not source.datasets:
        raise ReportError(f"{what}: the source series has no images")
    if source.series_instance_uid != study.reference_series_uid:
        raise ReportError(
            f"{what}: the source series {source.series_instance_uid} is not the reference series "
            f"{study.reference_series_uid} ({study.reference_sequence}) of this report"
        )
    study_uid = str(source.first.get("StudyInstanceUID", ""))
    if study.study_instance_uid and study_uid != study.study_instance_uid:
        raise ReportError(
            f"{what}: the source images belong to study {study_uid or '(none)'}, the report to study "
            f"{study.study_instance_uid}"
        )
