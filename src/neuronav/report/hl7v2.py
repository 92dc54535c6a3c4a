"""A :class:`Report` as an HL7 v2.5 ORU^R01 message (ER7 text, every segment terminated by ``\\r``).

Built segment by segment with ``hl7apy`` at ``VALIDATION_LEVEL.STRICT`` and validated as a whole::

    MSH  NeuroNav, v2.5, unique control id, processing id P, UTF-8; MSH-5/6 the receiver when configured
    SFT  NeuroNav and its version
    PID  clinical (``report.patient`` set): MRN^^^issuer^MR, FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX^^L, birth
         date, sex; pseudonymous: the pseudonym (assigning authority NEURONAV, type ANON), ANONYMOUS^^^^^^S
    PV1  patient class U (unknown: NeuroNav knows no visit), referring doctor (PV1-8) when known
    ORC  RE, placer order number (the order's, when matched), filler order number (the order's, else the
         accession number, else the report id), ordering provider = the referring physician
    OBR  placer and filler as ORC, 24590-2^MR Brain^LN, observation date = study date, OBR-16 ordering
         provider, OBR-18 accession number, OBR-20 report id and version, result status (OBR-25),
         interpreter = signer
    NTE  the disclaimers, the amendment reason, the radiologist's comment
    OBX  NM, one per row of ``report.measurements`` (the one table of numbers: equal to the SR and FHIR
         values): OBX-3 = concept^meaning^SCT|LN|99NN with the measurement key as the 99NN alternate
         code (several rows share a concept, e.g. Volume), OBX-4 = lesion number, OBX-6 = UCUM unit,
         OBX-18 = the models (``name version``) that produced the value
    OBX  NM, one per reader's measurement included in the report (OBX-16 the reader, no OBX-18)
    OBX  CE detection (SNOMED CT Present/Absent) and classification
    OBX  CE the RANO category and NM the change in % per region versus the prior (when there is a prior)
    OBX  TX findings, impression, recommendations (LOINC 18782-3, 19005-8, 18783-1), one repetition per
         line (``~`` is a hard line break in TX), lines wrapped at 80 columns
    OBX  the PDF rendition, per destination: ``ED`` ``NeuroNav^AP^PDF^Base64^<data>`` split into parts of at
         most :data:`ED_PART` base64 characters (each part a whole number of base64 quanta, OBX-4 =
         ``pdf.<n>``; the concatenated parts decode to the PDF), or ``RP`` ``<url>^NEURONAV^AP^PDF`` (a URL
         the receiver fetches with its own credentials)

Result status (OBR-25, OBX-11): preliminary and reviewed → P, final → F, a signed amendment → C (an
unsigned amendment is a draft: P).

Free text is escaped (``\\E\\ \\F\\ \\S\\ \\T\\ \\R\\``; line breaks become repetitions or spaces), so
text edited by a radiologist cannot break the message structure; :func:`unescape` reverses it.

hl7apy limits (1.3.5): a strict ``TX`` holds at most 65536 characters (the v2.5 length of OBX-5), which
is why the PDF is split at :data:`ED_PART`; and its parser reads the components of the ``varies`` OBX-5
as ``ST`` (199 characters), so a strict *parse* of a message with an embedded PDF part fails although the
message is valid v2.5 (the tests parse it strictly with python-hl7 and, with the data shortened, hl7apy).
The narrative lines are kept under that limit.
"""

from __future__ import annotations

import base64
import re
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from neuronav.report import codes
from neuronav.report.fhir import ABSENT, CLASSIFICATION, DETECTION, FINDINGS_TEXT, IMPRESSION, PRESENT, RECOMMENDATION
from neuronav.report.fhir import tumour_class as _tumour_class
from neuronav.report.model import Code, ModelInfo, Patient, Report, model_info

VERSION = "2.5"
APPLICATION = "NeuroNav"
AUTHORITY = "NEURONAV"
NO_NAME = "ANONYMOUS"  # PID-5 is required; name type S = coded pseudo-name to assure anonymity
ST_MAX = 199  # hl7apy's strict ST length (OBX-5 components are read as ST when parsed)
TX_MAX = 65536  # hl7apy's strict TX length, the v2.5 length of OBX-5
ED_PART = TX_MAX - TX_MAX % 4  # base64 characters of the PDF per OBX (whole quanta: each part decodes alone)
LINE_WIDTH = 80
PDF_CODE = Code(value="pdf-report", scheme=codes.PRIVATE_SCHEME, meaning="NeuroNav report (PDF)")
CHANGE = Code(value="volume-change", scheme=codes.PRIVATE_SCHEME, meaning="Volume change versus prior")

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_UNESCAPES = {"E": "\\", "F": "|", "S": "^", "T": "&", "R": "~", ".br": "\n"}
_ESCAPE_SEQUENCE = re.compile(r"\\(E|F|S|T|R|\.br|X[0-9A-Fa-f]*)\\")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def v2_status(report: Report) -> str:
    """OBR-25 / OBX-11 (HL7 table 0085): P preliminary, F final, C corrected (a signed amendment)."""
    if report.status == "final":
        return "F"
    if report.status == "amended" and report.signature is not None:
        return "C"
    return "P"


def escape(text: str) -> str:
    """``text`` as the value of one HL7 v2 field, component or subcomponent (line breaks → spaces)."""
    for char, seq in _ESCAPES:
        text = text.replace(char, seq)
    return _CONTROL.sub(" ", text)


def unescape(value: str) -> str:
    """The text of an escaped HL7 v2 value (``\\.br\\`` → newline, ``\\Xhh\\`` → UTF-8 bytes)."""

    def one(m: re.Match[str]) -> str:
        seq = m.group(1)
        if seq.startswith("X"):
            return bytes.fromhex(seq[1:]).decode("utf-8", errors="replace")
        return _UNESCAPES[seq]

    return _ESCAPE_SEQUENCE.sub(one, value)


def _st(text: str, limit: int = ST_MAX) -> str:
    """Escaped, cut to ``limit`` characters without splitting an escape sequence."""
    value = escape(text)
    while len(value) > limit:
        text = text[: max(0, len(text) - max(1, len(value) - limit))]
        value = escape(text)
    return value


def _lines(text: str) -> list[str]:
    """Paragraphs wrapped at 80 columns, each line escaped and short enough for an hl7apy ST."""
    out: list[str] = []
    for paragraph in text.splitlines():
        if not paragraph.strip():
            if out and out[-1]:
                out.append("")
            continue
        for line in textwrap.wrap(paragraph, LINE_WIDTH, break_on_hyphens=False) or [""]:
            pieces = [line] if len(escape(line)) <= ST_MAX else textwrap.wrap(line, ST_MAX // 3)
            out.extend(escape(p) for p in pieces)
    while out and not out[-1]:
        out.pop()
    return out or [""]


def _ts(when: datetime) -> str:
    """HL7 TS: ``YYYYMMDDHHMMSS+ZZZZ``."""
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return when.strftime("%Y%m%d%H%M%S%z")


def _date(study_date: str) -> str:
    """DICOM DA or ISO date → HL7 ``YYYYMMDD``; empty when unknown."""
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(study_date.strip(), fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    return ""


def _ce(code: Code, text: str | None = None, alternate: tuple[str, str] | None = None) -> str:
    """CE: identifier^text^coding system[^alternate identifier^alternate text^99NN]."""
    system = codes.HL7V2_SYSTEMS.get(code.scheme, "99NN")
    value = f"{_st(code.value)}^{_st(text or code.meaning)}^{system}"
    if alternate is not None:
        value += f"^{_st(alternate[0])}^{_st(alternate[1])}^99NN"
    return value


def _number(value: float) -> str:
    """NM: plain decimal (no exponent), shortest form that reads back as the same float."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text[:-2] if text.endswith(".0") else text


def _equipment(models: list[ModelInfo]) -> str:
    """OBX-18 (EI, repeating): ``name version^NEURONAV`` per model."""
    return "~".join(f"{_st(f'{m.name} {m.version}')}^{AUTHORITY}" for m in models)


@dataclass(frozen=True)
class OrderNumbers:
    """The order a result answers (from the order received, :mod:`neuronav.workflow.orders`): ORC/OBR-2, -3."""

    placer: str | None = None  # placer order number (the RIS / EHR order id)
    placer_authority: str | None = None
    filler: str | None = None  # filler order number (often the accession number)
    filler_authority: str | None = None


@dataclass(frozen=True)
class Receiver:
    """MSH-5 / MSH-6 of a destination (its application and facility), when configured."""

    application: str = ""
    facility: str = ""


def _pn_to_xpn(pn: str, name_type: str) -> str:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` (alphabetic group) → HL7 XPN
    ``FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX^^TYPE`` (FN is ``family&…``; only its surname is set)."""
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (_st(p.strip(), 50) for p in parts)
    return f"{family}^{given}^{middle}^{suffix}^{prefix}^^{name_type}"


def _pn_to_xcn(pn: str) -> str:
    """DICOM PN → HL7 XCN without an id (``^FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX``)."""
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (_st(p.strip(), 50) for p in parts)
    return f"^{family}^{given}^{middle}^{suffix}^{prefix}".rstrip("^")


def _pid(report: Report, rid: str) -> str:
    """PID: the patient's identity (clinical) or the pseudonym (pseudonymous)."""
    p: Patient | None = report.patient
    if p is None:
        si = report.study_info
        pid = _st(si.patient_pseudonym) if si.patient_pseudonym else f"{rid}-NOPSEUDONYM"
        return f"PID|1||{pid}^^^{AUTHORITY}^ANON||{NO_NAME}^^^^^^S"
    fields = ["PID", "1", "", "", "", "", "", "", ""]
    if p.mrn:
        issuer = _st(p.mrn_issuer, 20) if p.mrn_issuer else ""
        fields[3] = f"{_st(p.mrn, 15)}^^^{issuer}^MR"
    else:  # PID-3 is required: the pseudonym when the DICOM had no patient id
        si = report.study_info
        fields[3] = f"{_st(si.patient_pseudonym) if si.patient_pseudonym else rid + '-NOID'}^^^{AUTHORITY}^ANON"
    fields[5] = _pn_to_xpn(p.name, "L") if p.name and p.name.strip("^ ") else f"{NO_NAME}^^^^^^U"
    fields[7] = _date(p.birth_date) if p.birth_date else ""
    fields[8] = {"M": "M", "F": "F", "O": "O"}.get((p.sex or "").strip().upper(), "U" if p.sex else "")
    return "|".join(fields).rstrip("|")


def _ei(number: str | None, authority: str | None) -> str:
    if not number:
        return ""
    return f"{_st(number, 22)}^{_st(authority, 20)}" if authority else _st(number, 22)


def _segment(er7: str, level: Any) -> Any:
    from hl7apy.parser import parse_segment

    return parse_segment(er7, version=VERSION, validation_level=level)


def make_oru(
    report: Report,
    *,
    pdf: bytes | None = None,
    pdf_url: str | None = None,
    order: OrderNumbers | None = None,
    receiver: Receiver | None = None,
) -> str:
    """The report as an HL7 v2.5 ORU^R01 message (ER7, each segment ended by ``\\r``), strictly validated.

    Identity: ``report.patient`` (clinical) or the pseudonym (``patient`` None). The PDF: by reference
    (``pdf_url``: an ``RP`` OBX) or embedded (``pdf``: ``ED`` OBX parts of :data:`ED_PART` characters)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Message
    from hl7apy.v2_5 import TX

    strict = VALIDATION_LEVEL.STRICT
    si, f = report.study_info, report.findings
    status = v2_status(report)
    rid = _st(report.report_id)
    study_date = _date(si.study_date)
    signature = report.signature
    changed = signature.signed_at if signature is not None else report.created

    msg = Message("ORU_R01", version=VERSION, validation_level=strict)
    msg.msh.msh_3 = APPLICATION
    msg.msh.msh_4 = AUTHORITY
    if receiver is not None and receiver.application:
        msg.msh.msh_5 = _st(receiver.application, 180)
    if receiver is not None and receiver.facility:
        msg.msh.msh_6 = _st(receiver.facility, 180)
    msg.msh.msh_7 = _ts(datetime.now(UTC))
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    msg.msh.msh_10 = uuid.uuid4().hex[:20]
    msg.msh.msh_11 = "P"
    msg.msh.msh_12 = VERSION
    msg.msh.msh_18 = "UNICODE UTF-8"
    version = _st(f.neuronav_version)
    msg.add(_segment(f"SFT|{APPLICATION}|{version}|{APPLICATION}|{APPLICATION}-{version}", strict))

    result = msg.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.add(_segment(_pid(report, rid), strict))
    who = report.patient
    referrer = _pn_to_xcn(who.referring_physician) if who is not None and who.referring_physician else ""
    visit = patient.add_group("ORU_R01_VISIT")
    visit.add(_segment(f"PV1|1|U{'||||||' + referrer if referrer else ''}", strict))

    order_group = result.add_group("ORU_R01_ORDER_OBSERVATION")
    accession = _st(who.accession_number, 16) if who is not None and who.accession_number else ""
    placer = _ei(order.placer, order.placer_authority) if order is not None else ""
    filler = _ei(order.filler, order.filler_authority) if order is not None and order.filler else ""
    if not filler:
        filler = accession or f"{rid}^{AUTHORITY}"
    orc = ["ORC", "RE", placer, filler]
    if referrer:
        orc += [""] * 8 + [referrer]  # ORC-12 ordering provider
    order_group.add(_segment("|".join(orc), strict))
    obr = [""] * 33
    obr[0:5] = ["OBR", "1", placer, filler, _ce(codes.REPORT_CODE)]
    obr[7] = study_date
    obr[16] = referrer
    obr[18] = accession  # placer field 1: the accession number (IHE radiology)
    obr[20] = f"{rid}/v{report.version}"  # filler field 1: the report and its version
    obr[22] = _ts(changed)
    obr[24] = "RAD"
    obr[25] = status
    if signature is not None:
        obr[32] = f"&{_st(signature.signed_by)}"
    order_group.add(_segment("|".join(obr).rstrip("|"), strict))
    notes = list(report.notices)
    if report.amendment_reason:
        notes.append(f"Amendment of version {report.supersedes_version}: {report.amendment_reason}")
    if report.narrative.radiologist_comment:
        notes.append(f"Radiologist comment: {report.narrative.radiologist_comment}")
    if signature is not None:
        notes.append(signature.manifestation())
    for i, note in enumerate(notes, start=1):
        order_group.add(_segment(f"NTE|{i}|L|{'~'.join(_lines(note))}", strict))

    observed = study_date
    analysed = _ts(f.created)
    observer = f"^{_st(signature.signed_by)}" if signature is not None else ""
    set_id = 0

    def obx(
        value_type: str,
        ident: str,
        value: str,
        *,
        sub_id: str = "",
        units: str = "",
        models: list[ModelInfo],
        by: str | None = None,
    ) -> Any:
        nonlocal set_id
        set_id += 1
        fields = [
            "OBX", str(set_id), value_type, ident, sub_id, value, units, "", "", "", "", status, "", "",
            observed, "", observer if by is None else by, "", _equipment(models), analysed,
        ]  # fmt: skip
        group = order_group.add_group("ORU_R01_OBSERVATION")
        segment = _segment("|".join(fields).rstrip("|"), strict)
        group.add(segment)
        return segment

    for m in report.measurements:
        units = _ce(Code(value=m.unit, scheme="UCUM", meaning=m.unit))
        sub_id = str(m.lesion_index) if m.lesion_index is not None else ""
        ident = _ce(m.concept, alternate=(m.key, m.label))
        obx("NM", ident, _number(m.value), sub_id=sub_id, units=units, models=m.produced_by)

    for r in report.reader_measurements:  # a reader's own measurements: OBX-16 names the reader, no equipment
        units = _ce(Code(value=r.unit, scheme="UCUM", meaning=r.unit))
        ident = _ce(r.concept, alternate=(r.key, r.label))
        obx("NM", ident, _number(r.value), units=units, models=[], by=f"^{_st(r.reader, 50)}")

    pd = report.ai_findings.primary_detection
    obx("CE", _ce(DETECTION), _ce(PRESENT if pd.detected else ABSENT), models=[model_info(f.detection.produced_by)])
    if pd.detected and pd.classification:
        label = _tumour_class(pd.classification)
        obx("CE", _ce(CLASSIFICATION), _ce(label), models=[model_info(f.classification.produced_by)])
    change = report.change_versus_prior
    if change is not None:
        models = [model_info(p) for p in f.segmentation.produced_by]
        rano = Code(
            value=change.rano_category, scheme=codes.PRIVATE_SCHEME, meaning=change.rano_category.replace("_", " ")
        )
        obx("CE", _ce(codes.RANO), _ce(rano), models=models)
        percent = _ce(Code(value="%", scheme="UCUM", meaning="%"))
        for row in change.rows:
            if row.change_percent is not None:
                ident = _ce(CHANGE, alternate=(f"change_{row.key}", f"{row.label}: change versus prior"))
                obx("NM", ident, _number(row.change_percent), units=percent, models=models)
    n = report.narrative
    obx("TX", _ce(FINDINGS_TEXT), "~".join(_lines(n.findings_text)), models=[])
    obx("TX", _ce(IMPRESSION), "~".join(_lines(n.impression)), models=[])
    if report.recommendations:
        text = "\n".join(f"{r.label} ({r.urgency}): {r.text}" for r in report.recommendations)
        obx("TX", _ce(RECOMMENDATION), "~".join(_lines(text)), models=[])
    if pdf_url is not None:
        obx("RP", _ce(PDF_CODE), f"{_st(pdf_url, ST_MAX)}^{AUTHORITY}^AP^PDF", models=[])
    elif pdf is not None:
        data = base64.b64encode(pdf).decode("ascii")
        parts = [data[i : i + ED_PART] for i in range(0, len(data), ED_PART)]
        for n_part, part in enumerate(parts, start=1):
            sub = f"pdf.{n_part}" if len(parts) > 1 else ""
            segment = obx("ED", _ce(PDF_CODE), f"{APPLICATION}^AP^PDF^Base64^A", sub_id=sub, models=[])
            leaf = segment.obx_5.children[4].children[0]  # the data leaf (read as ST by hl7apy): a strict TX
            leaf.value = TX(part, validation_level=strict)

    msg.validate()
    return str(msg.to_er7()) + "\r"  # every segment terminated (HL7 v2.5 §2.5.1), the last one too


__all__ = ["ED_PART", "OrderNumbers", "Receiver", "escape", "make_oru", "unescape", "v2_status"]
