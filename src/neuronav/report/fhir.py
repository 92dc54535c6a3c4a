"""A :class:`Report` as a FHIR ``transaction`` Bundle (R4, R4B or R5), validated with ``fhir.resources``.

A transaction a FHIR server applies as one unit (the EHR runs R4; R4 is written with the R4B models,
whose resources used here are the same as R4's, and is checked in the tests by a real R4 server):

=================  ==============================================================================
entry              request
=================  ==============================================================================
DiagnosticReport   ``PUT DiagnosticReport?identifier=urn:neuronav:report|<id>``: conditional update,
                   so an amendment updates the same DiagnosticReport (status ``amended``)
Observation        ``PUT Observation?identifier=urn:neuronav:measurement|<id>/<key>`` (same reason)
Patient            ``POST`` with ``ifNoneExist: identifier=<MRN system>|<MRN>`` (clinical) or the
                   pseudonym's identifier (pseudonymous; a security label says so)
ImagingStudy       ``POST`` with ``ifNoneExist: identifier=urn:dicom:uid|urn:oid:<StudyInstanceUID>``
ServiceRequest     ``POST`` with ``ifNoneExist: identifier=<accession system>|<accession>``: the order the
                   report answers (``DiagnosticReport.basedOn``), when the accession number is known
Device             ``POST`` with ``ifNoneExist``: one per model or algorithm (and per ensemble)
Practitioner       ``POST`` with ``ifNoneExist``: the signer
Provenance         ``POST``: targets the report and observations; agents the devices and the signer
=================  ==============================================================================

Every reference between entries is an ``urn:uuid:`` fullUrl (deterministic: uuid5 of the report id,
version and entry), which the server replaces by the resource it created or matched.

The DiagnosticReport: LOINC 24590-2, category LOINC LP29684-5 Radiology and v2-0074 RAD, one Observation
per row of ``report.measurements`` (the one table of numbers, so the values equal those of the SR and
the HL7 OBX segments), an Observation for the detection (SNOMED CT Present / Absent), one for the
classification, one for the RANO category and one per change versus the prior; the PDF and a text
rendition as ``presentedForm``.

Identity: ``report.patient`` set → the Patient carries the MRN (type MR, its issuer), name, birth date
and sex, the ServiceRequest the accession number (type ACSN) and the referring physician; ``patient``
None → a pseudonymous Patient (identifier only, security label PSEUDED).

Status: an unsigned amendment is still a draft, so it is sent as ``preliminary``; ``amended`` is used
only once the amendment is signed (see :func:`fhir_status`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from neuronav.report import codes
from neuronav.report.model import Code, Measurement, ModelInfo, Patient, Report, model_info

FhirVersion = Literal["R4", "R4B", "R5"]
FHIR_VERSIONS: tuple[FhirVersion, ...] = ("R4", "R4B", "R5")

# Codes used only by the FHIR and HL7 v2 outputs (candidates for neuronav.report.codes).
DETECTION = Code(value="tumour-detected", scheme=codes.PRIVATE_SCHEME, meaning="Brain tumour detected (AI)")
CLASSIFICATION = Code(value="tumour-classification", scheme=codes.PRIVATE_SCHEME, meaning="Tumour type (AI)")
PRESENT = Code(value="52101004", scheme="SCT", meaning="Present")
ABSENT = Code(value="2667000", scheme="SCT", meaning="Absent")
LATERALITY = Code(value="272741003", scheme="SCT", meaning="Laterality")
SIDES = {
    "left": Code(value="7771000", scheme="SCT", meaning="Left"),
    "right": Code(value="24028007", scheme="SCT", meaning="Right"),
    "midline": Code(value="260528009", scheme="SCT", meaning="Median"),
}
FINDINGS_TEXT = Code(value="18782-3", scheme="LN", meaning="Radiology Study observation (narrative)")
IMPRESSION = Code(value="19005-8", scheme="LN", meaning="Radiology Imaging study [Impression] (narrative)")
RECOMMENDATION = Code(value="18783-1", scheme="LN", meaning="Radiology Study recommendation (narrative)")
RADIOLOGY = Code(value="LP29684-5", scheme="LN", meaning="Radiology")


def tumour_class(label: str) -> Code:
    """The classification label as a NeuroNav code (glioma, meningioma, metastasis)."""
    return Code(value=label, scheme=codes.PRIVATE_SCHEME, meaning=label.capitalize())


UNIT_DISPLAY = {"mL": "mL", "mm": "mm", "mm2": "mm²", "%": "%", "1": "ratio"}

PSEUDONYM_SYSTEM = "urn:neuronav:pseudonym"
REPORT_SYSTEM = "urn:neuronav:report"
REPORT_VERSION_SYSTEM = "urn:neuronav:report-version"
MEASUREMENT_SYSTEM = "urn:neuronav:measurement"
MODEL_SYSTEM = "urn:neuronav:model"
MODEL_SHA256_SYSTEM = "urn:neuronav:model-sha256"
DICOM_UID_SYSTEM = "urn:dicom:uid"
ACCESSION_SYSTEM = "urn:neuronav:accession"  # default; a destination names the hospital's own
SIGNER_SYSTEM = "urn:neuronav:signer"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
RANO_CHANGE = Code(value="volume-change", scheme=codes.PRIVATE_SCHEME, meaning="Volume change versus prior")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
UCUM = codes.SYSTEM_URLS["UCUM"]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

_NAMESPACE = uuid.UUID("e1cb4cbc-0bab-4fee-8604-1fe5efc83308")


def fhir_status(report: Report) -> str:
    """DiagnosticReport / Observation status: preliminary and reviewed → preliminary, final → final,
    amended → amended once signed (an unsigned amendment is a draft: preliminary)."""
    if report.status == "final":
        return "final"
    if report.status == "amended" and report.signature is not None:
        return "amended"
    return "preliminary"


def mrn_system(issuer: str | None) -> str:
    """The FHIR identifier system of MRNs of ``issuer``: ``urn:oid:`` for an OID (DICOM IssuerOfPatientID
    often is one), else ``urn:neuronav:mrn:<issuer>`` (a destination may name the hospital's own URI)."""
    if issuer and _OID.match(issuer):
        return f"urn:oid:{issuer}"
    return f"urn:neuronav:mrn:{issuer}" if issuer else "urn:neuronav:mrn"


def _human_name(pn: str) -> dict[str, Any]:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` → FHIR HumanName."""
    family, given, middle, prefix, suffix = ([p.strip() for p in pn.split("=")[0].split("^")] + [""] * 5)[:5]
    name: dict[str, Any] = {"use": "official"}
    if family:
        name["family"] = family
    if given or middle:
        name["given"] = [g for g in (given, *middle.split()) if g]
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    name["text"] = " ".join(x for x in (prefix, given, middle, family, suffix) if x)
    return name


def _by_identifier(system: str, value: str) -> str:
    """A search by identifier (``identifier=system|value``), each part percent-encoded."""
    return f"identifier={quote(system, safe=':/.')}|{quote(value, safe='')}"


def _identifier_type(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": V2_0203, "code": code, "display": display}]}


def study_date_iso(study_date: str) -> str | None:
    """DICOM DA ``YYYYMMDD`` (or ISO ``YYYY-MM-DD``) → ``YYYY-MM-DD``; None when absent or not a date."""
    text = study_date.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _instant(when: datetime) -> str:
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).isoformat()


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '/'.join(parts))}"


def _coding(code: Code) -> dict[str, Any]:
    system = codes.SYSTEM_URLS.get(code.scheme, f"urn:neuronav:scheme:{code.scheme}")
    return {"system": system, "code": code.value, "display": code.meaning}


def _concept(code: Code, text: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(code)], "text": text or code.meaning}


def _ref(url: str, display: str | None = None) -> dict[str, Any]:
    return {"reference": url, "display": display} if display else {"reference": url}


def _model_label(m: ModelInfo) -> str:
    return f"{m.name} {m.version}"


class _Devices:
    """One Device per model or algorithm, and one per ensemble (a value produced by several models)."""

    def __init__(self, version: FhirVersion) -> None:
        self.version = version
        self.resources: dict[str, dict[str, Any]] = {}  # fullUrl → Device
        self._by_key: dict[tuple[str, ...], str] = {}

    def _device(self, name: str, version: str | None, identifiers: list[dict[str, Any]], note: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Device",
            "identifier": identifiers,
            "status": "active",
            "manufacturer": "NeuroNav",
        }
        if self.version != "R5":
            res["deviceName"] = [{"name": name, "type": "model-name"}]
        else:
            res["name"] = [{"value": name, "type": "user-friendly-name"}]
        if version:
            res["version"] = [{"value": version}]
        res["note"] = [{"text": note}]
        return res

    def model(self, m: ModelInfo) -> str:
        key = (m.name, m.version)
        if key not in self._by_key:
            url = _urn("device", m.name, m.version, m.sha256 or "")
            ids = [{"system": MODEL_SYSTEM, "value": f"{m.name}@{m.version}"}]
            if m.sha256:
                ids.append({"system": MODEL_SHA256_SYSTEM, "value": m.sha256})
            kind = "AI model" if m.kind == "model" else "Image-analysis algorithm"
            note = f"{kind} of NeuroNav (research software, not for clinical use)."
            self.resources[url] = self._device(m.name, m.version, ids, note)
            self._by_key[key] = url
        return self._by_key[key]

    def producer(self, models: list[ModelInfo]) -> str | None:
        """The Device an Observation names: the model, or the ensemble Device of several."""
        urls = [self.model(m) for m in models]
        if len(urls) <= 1:
            return urls[0] if urls else None
        key = tuple(sorted(f"{m.name}@{m.version}" for m in models))
        if key not in self._by_key:
            url = _urn("ensemble", *key)
            name = "Ensemble of " + ", ".join(_model_label(m) for m in models)
            ids = [{"system": MODEL_SYSTEM, "value": "+".join(key)}]
            self.resources[url] = self._device(name, None, ids, "Values computed jointly by the ensemble's models.")
            self._by_key[key] = url
            for member in urls:  # a model in one ensemble only names it as its parent
                self.resources[member].setdefault("parent", _ref(url, name))
        return self._by_key[key]

    def display(self, url: str) -> str:
        res = self.resources[url]
        name = res["deviceName"][0]["name"] if self.version != "R5" else res["name"][0]["value"]
        return f"{name} {res['version'][0]['value']}" if "version" in res else str(name)


def _quantity(m: Measurement) -> dict[str, Any]:
    return {"value": m.value, "unit": UNIT_DISPLAY.get(m.unit, m.unit), "system": UCUM, "code": m.unit}


def _body_site(m: Measurement) -> dict[str, Any] | None:
    if m.finding_site is None:
        return None
    text = m.finding_site.meaning + (f", {m.laterality}" if m.laterality else "")
    return _concept(m.finding_site, text)


def _text_rendition(report: Report) -> str:
    n = report.narrative
    lines = [
        f"NeuroNav report {report.report_id} version {report.version} ({report.status})",
        "",
        "Findings:",
        n.findings_text,
        "",
        "Impression:",
        n.impression,
    ]
    if n.radiologist_comment:
        lines += ["", "Radiologist comment:", n.radiologist_comment]
    if report.recommendations:
        lines += ["", "Recommendations (AI-generated suggestions):"]
        lines += [f"- [{r.urgency}] {r.text}" for r in report.recommendations]
    if report.amendment_reason:
        lines += ["", f"Amended (supersedes version {report.supersedes_version}): {report.amendment_reason}"]
    if report.signature is not None:
        s = report.signature
        lines += ["", s.manifestation()]
    lines += ["", *report.notices]
    return "\n".join(lines) + "\n"


def _attachment(data: bytes, content_type: str, title: str, created: str) -> dict[str, Any]:
    return {
        "contentType": content_type,
        "language": "en",
        "data": base64.b64encode(data).decode("ascii"),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # FHIR: SHA-1 of the data
        "title": title,
        "creation": created,
    }


def make_bundle(
    report: Report,
    *,
    version: FhirVersion = "R4",
    pdf: bytes | None = None,
    mrn_identifier_system: str | None = None,
    accession_system: str = ACCESSION_SYSTEM,
) -> dict[str, Any]:
    """The report as a FHIR ``transaction`` Bundle (JSON dict), validated with ``fhir.resources``.

    ``mrn_identifier_system``: the hospital's URI for MRNs (default :func:`mrn_system` of the issuer);
    ``accession_system``: its URI for accession numbers."""
    if version not in FHIR_VERSIONS:
        raise ValueError(f"FHIR version must be one of {', '.join(FHIR_VERSIONS)}, not {version!r}")
    r5 = version == "R5"
    si = report.study_info
    rid, ver = report.report_id, str(report.version)
    status = fhir_status(report)
    created = _instant(report.created)
    issued = _instant(report.signature.signed_at) if report.signature is not None else created
    effective = study_date_iso(si.study_date)
    disclaimer = " ".join(report.notices)

    requests: dict[str, dict[str, Any]] = {}  # fullUrl → Bundle.entry.request
    who: Patient | None = report.patient

    # Patient: clinical (MRN, name, birth date, sex) or pseudonymous (identifier only, security label);
    # anonymous when there is neither.
    patient: dict[str, Any] = {"resourceType": "Patient"}
    patient_key: tuple[str, str] | None = None
    if who is not None and who.mrn:
        system = mrn_identifier_system or mrn_system(who.mrn_issuer)
        ident: dict[str, Any] = {"use": "usual", "type": _identifier_type("MR", "Medical record number")}
        ident |= {"system": system, "value": who.mrn}
        if who.mrn_issuer:
            ident["assigner"] = {"display": who.mrn_issuer}
        patient["identifier"] = [ident]
        patient_key = (system, who.mrn)
    elif si.patient_pseudonym:
        patient_key = (PSEUDONYM_SYSTEM, si.patient_pseudonym)
    if who is not None:
        if who.name and who.name.strip("^ "):
            patient["name"] = [_human_name(who.name)]
        gender = {"M": "male", "F": "female", "O": "other"}.get((who.sex or "").strip().upper())
        if gender or who.sex:
            patient["gender"] = gender or "unknown"
        born = study_date_iso(who.birth_date or "")
        if born:
            patient["birthDate"] = born
    if who is None or not who.mrn:
        label = "PSEUDED" if si.patient_pseudonym else "ANONYED"
        display = "pseudonymized" if si.patient_pseudonym else "anonymized"
        patient["meta"] = {"security": [{"system": V3_OBSERVATION_VALUE, "code": label, "display": display}]}
        if si.patient_pseudonym:
            patient["identifier"] = [{"system": PSEUDONYM_SYSTEM, "value": si.patient_pseudonym}]
    patient_url = _urn("patient", *(patient_key or ("anonymous", rid)))
    requests[patient_url] = {"method": "POST", "url": "Patient"}
    if patient_key is not None:
        requests[patient_url]["ifNoneExist"] = _by_identifier(*patient_key)
    subject = _ref(patient_url)

    # ImagingStudy
    study_url = _urn("study", si.study_instance_uid or f"unknown/{rid}")
    mr = {"system": DCM, "code": "MR", "display": "Magnetic Resonance"}
    study: dict[str, Any] = {"resourceType": "ImagingStudy", "status": "available", "subject": subject}
    study_ids: list[dict[str, Any]] = []
    if si.study_instance_uid:
        study_ids.append({"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{si.study_instance_uid}"})
    accession = who.accession_number if who is not None and who.accession_number else None
    if accession:
        study_ids.append(
            {"type": _identifier_type("ACSN", "Accession ID"), "system": accession_system, "value": accession}
        )
    if study_ids:
        study["identifier"] = study_ids
    study["modality"] = [{"coding": [mr]}] if r5 else [mr]
    if effective:
        study["started"] = effective
    study["description"] = si.scan_type
    if si.reference_series_uid:
        study["series"] = [
            {
                "uid": si.reference_series_uid,
                "modality": {"coding": [mr]} if r5 else mr,
                "description": f"{si.reference_sequence} (reference series of the analysis)",
            }
        ]
    study_ref = _ref(study_url, si.scan_type)
    requests[study_url] = {"method": "POST", "url": "ImagingStudy"}
    if si.study_instance_uid:
        requests[study_url]["ifNoneExist"] = _by_identifier(DICOM_UID_SYSTEM, f"urn:oid:{si.study_instance_uid}")

    # ServiceRequest: the order of the accession number, which the report answers
    order_url: str | None = None
    order: dict[str, Any] | None = None
    if accession:
        order_url = _urn("order", accession_system, accession)
        what = _concept(codes.REPORT_CODE)
        order = {
            "resourceType": "ServiceRequest",
            "identifier": [
                {"type": _identifier_type("ACSN", "Accession ID"), "system": accession_system, "value": accession}
            ],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}],
            "code": {"concept": what} if r5 else what,
            "subject": subject,
        }
        if who is not None and who.referring_physician and who.referring_physician.strip("^ "):
            order["requester"] = {"display": _human_name(who.referring_physician)["text"]}
        requests[order_url] = {
            "method": "POST",
            "url": "ServiceRequest",
            "ifNoneExist": _by_identifier(accession_system, accession),
        }

    devices = _Devices(version)
    for model in si.models:
        devices.model(model)

    def observation(key: str, code: dict[str, Any], producers: list[ModelInfo], note: str) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": MEASUREMENT_SYSTEM, "value": f"{rid}/{key}"}],
            "status": status,
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
            "code": code,
            "subject": subject,
        }
        if effective:
            obs["effectiveDateTime"] = effective
        obs["issued"] = issued
        obs["note"] = [{"text": note}, {"text": disclaimer}]
        device = devices.producer(producers)
        if device is not None:
            obs["device"] = _ref(device, devices.display(device))
        obs["derivedFrom"] = [study_ref]
        return obs

    observations: dict[str, dict[str, Any]] = {}  # fullUrl → Observation
    by_key: dict[str, str] = {}
    for m in report.measurements:
        obs = observation(m.key, _concept(m.concept, m.label), m.produced_by, f"NeuroNav findings {m.source}")
        site = _body_site(m)
        if site is not None:
            obs["bodySite"] = site
        obs["valueQuantity"] = _quantity(m)
        if m.laterality:
            obs["component"] = [{"code": _concept(LATERALITY), "valueCodeableConcept": _concept(SIDES[m.laterality])}]
        url = _urn("observation", rid, ver, m.key)
        observations[url] = obs
        by_key[m.key] = url

    for r in report.reader_measurements:  # a reader's own measurements: performer the reader, no device
        obs = observation(r.key, _concept(r.concept, r.label), [], f"Measured by {r.reader} in the NeuroNav viewer")
        obs["performer"] = [{"display": r.reader}]
        obs["method"] = {"text": "Reader measurement" + (f" on {r.image}" if r.image else "")}
        obs["valueQuantity"] = {
            "value": r.value,
            "unit": UNIT_DISPLAY.get(r.unit, r.unit),
            "system": UCUM,
            "code": r.unit,
        }
        if r.note:
            obs["note"].insert(1, {"text": r.note})
        url = _urn("observation", rid, ver, r.key)
        observations[url] = obs
        by_key[r.key] = url

    f = report.findings
    pd = report.ai_findings.primary_detection
    det = observation(
        "tumour_detected",
        _concept(DETECTION),
        [model_info(f.detection.produced_by)],
        f"NeuroNav findings /detection/tumour_detected (probability {pd.probability:.4f}, threshold {pd.threshold})",
    )
    det["bodySite"] = _concept(codes.BRAIN)
    det["valueCodeableConcept"] = _concept(PRESENT if pd.detected else ABSENT)
    if "tumour_probability" in by_key:
        det["derivedFrom"].append(_ref(by_key["tumour_probability"]))
    observations[_urn("observation", rid, ver, "tumour_detected")] = det
    if pd.detected and pd.classification:
        cls = observation(
            "tumour_classification",
            _concept(CLASSIFICATION),
            [model_info(f.classification.produced_by)],
            f"NeuroNav findings /classification/label (confidence {pd.classification_confidence or 0.0:.4f})",
        )
        cls["bodySite"] = _concept(codes.NEOPLASM)
        cls["valueCodeableConcept"] = _concept(tumour_class(pd.classification))
        cls["component"] = [
            {
                "code": _concept(tumour_class(label), f"Probability of {label}"),
                "valueQuantity": {"value": p, "unit": "ratio", "system": UCUM, "code": "1"},
            }
            for label, p in pd.class_probabilities.items()
        ]
        if "classification_confidence" in by_key:
            cls["derivedFrom"].append(_ref(by_key["classification_confidence"]))
        observations[_urn("observation", rid, ver, "tumour_classification")] = cls

    change = report.change_versus_prior
    if change is not None:
        seg = [model_info(p) for p in f.segmentation.produced_by]
        rano_code = Code(
            value=change.rano_category, scheme=codes.PRIVATE_SCHEME, meaning=change.rano_category.replace("_", " ")
        )
        rano = observation(
            "rano_category",
            _concept(codes.RANO),
            seg,
            f"NeuroNav findings /change/rano_category versus the prior of {change.prior_date} ({change.rule})",
        )
        rano["valueCodeableConcept"] = _concept(rano_code)
        observations[_urn("observation", rid, ver, "rano_category")] = rano
        for row in change.rows:
            if row.change_percent is None:
                continue
            key = f"change_{row.key}"
            obs = observation(key, _concept(RANO_CHANGE, f"{row.label}: change versus prior"), seg, row.label)
            obs["valueQuantity"] = {"value": row.change_percent, "unit": "%", "system": UCUM, "code": "%"}
            observations[_urn("observation", rid, ver, key)] = obs

    # Signer
    practitioner_url: str | None = None
    practitioner: dict[str, Any] | None = None
    if report.signature is not None:
        s = report.signature
        practitioner_url = _urn("practitioner", s.signed_by)
        practitioner = {
            "resourceType": "Practitioner",
            "identifier": [{"system": SIGNER_SYSTEM, "value": s.signed_by}],
            "name": [{"text": s.signed_by}],
        }
        requests[practitioner_url] = {
            "method": "POST",
            "url": "Practitioner",
            "ifNoneExist": _by_identifier(SIGNER_SYSTEM, s.signed_by),
        }

    # DiagnosticReport
    report_url = _urn("report", rid, ver)
    title = f"NeuroNav report {rid} v{ver} ({report.status})"
    dr: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [
            {"use": "official", "system": REPORT_SYSTEM, "value": rid},
            {"use": "secondary", "system": REPORT_VERSION_SYSTEM, "value": f"{rid}/v{ver}"},
        ],
        "status": status,
        "category": [_concept(RADIOLOGY), {"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": _concept(codes.REPORT_CODE, "MR Brain (NeuroNav AI analysis)"),
        "subject": subject,
    }
    if order_url is not None:
        dr["basedOn"] = [_ref(order_url, f"Order {accession}")]
    if effective:
        dr["effectiveDateTime"] = effective
    dr["issued"] = issued
    if practitioner_url is not None and report.signature is not None:
        dr["performer"] = [_ref(practitioner_url, report.signature.signed_by)]
        dr["resultsInterpreter"] = [_ref(practitioner_url, report.signature.signed_by)]
    dr["result"] = [_ref(url, obs["code"]["text"]) for url, obs in observations.items()]
    dr["study" if r5 else "imagingStudy"] = [study_ref]
    if r5:
        notes = [disclaimer]
        if report.amendment_reason:
            notes.append(f"Amendment (supersedes version {report.supersedes_version}): {report.amendment_reason}")
        dr["note"] = [{"text": t} for t in notes]
    dr["conclusion"] = report.narrative.impression
    forms = []
    if pdf is not None:
        forms.append(_attachment(pdf, "application/pdf", title, created))
    forms.append(_attachment(_text_rendition(report).encode("utf-8"), "text/plain; charset=utf-8", title, created))
    dr["presentedForm"] = forms

    # Provenance
    agents = [
        {
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer", "display": "Performer"}]},
            "who": _ref(url, devices.display(url)),
        }
        for url in devices.resources
    ]
    if practitioner_url is not None and report.signature is not None:
        agents.append(
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "attester", "display": "Attester"}]},
                "who": _ref(practitioner_url, report.signature.signed_by),
            }
        )
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [_ref(report_url), *(_ref(url) for url in observations)],
        "occurredDateTime": _instant(f.created),
        "recorded": created,
        "agent": agents,
        "entity": [{"role": "source", "what": study_ref}],
    }

    requests[report_url] = {"method": "PUT", "url": f"DiagnosticReport?{_by_identifier(REPORT_SYSTEM, rid)}"}
    for url, obs in observations.items():
        value = obs["identifier"][0]["value"]
        requests[url] = {"method": "PUT", "url": f"Observation?{_by_identifier(MEASUREMENT_SYSTEM, value)}"}
    for url, device in devices.resources.items():
        requests[url] = {
            "method": "POST",
            "url": "Device",
            "ifNoneExist": _by_identifier(MODEL_SYSTEM, device["identifier"][0]["value"]),
        }
    provenance_url = _urn("provenance", rid, ver)
    requests[provenance_url] = {"method": "POST", "url": "Provenance"}

    entries: list[tuple[str, dict[str, Any]]] = [
        (patient_url, patient),
        (study_url, study),
        *([(order_url, order)] if order_url is not None and order is not None else []),
        *devices.resources.items(),
    ]
    if practitioner_url is not None and practitioner is not None:
        entries.append((practitioner_url, practitioner))
    entries += [(report_url, dr), *observations.items(), (provenance_url, provenance)]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": REPORT_VERSION_SYSTEM, "value": f"{rid}/v{ver}"},
        "type": "transaction",
        "timestamp": _instant(datetime.now(UTC)),
        "entry": [{"fullUrl": url, "resource": res, "request": requests[url]} for url, res in entries],
    }
    validate_bundle(bundle, version)
    return bundle


def validate_bundle(bundle: dict[str, Any], version: FhirVersion) -> None:
    """Raise ``pydantic.ValidationError`` unless ``bundle`` is a valid Bundle of that FHIR version."""
    if version in ("R4", "R4B"):  # R4's resources used here are R4B's (fhir.resources has no R4 models)
        from fhir.resources.R4B.bundle import Bundle as BundleR4B

        BundleR4B.model_validate(bundle)
    else:
        from fhir.resources.bundle import Bundle as BundleR5

        BundleR5.model_validate(bundle)


__all__ = ["FHIR_VERSIONS", "fhir_status", "make_bundle", "mrn_system", "study_date_iso", "validate_bundle"]
