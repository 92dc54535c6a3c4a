"""A :class:`Report` as an HL7 v2.5 ORU^R01 message (ER7 text, segments separated by ``\\r``).

Built segment by segment with ``hl7apy`` at ``VALIDATION_LEVEL.STRICT`` and validated as a whole::

    MSH  NeuroNav, v2.5, unique control id, processing id P, UTF-8
    SFT  NeuroNav and its version
    PID  the pseudonym (assigning authority NEURONAV, type ANON); no name: ANONYMOUS, name type S (pseudonym)
    ORC  RE, placer/filler = report id
    OBR  24590-2^MR Brain^LN, observation date = study date, result status (OBR-25), interpreter = signer
    NTE  the disclaimers, the amendment reason, the radiologist's comment
    OBX  NM, one per row of ``report.measurements`` (the one table of numbers: equal to the SR and FHIR
         values): OBX-3 = concept^meaning^SCT|LN|99NN with the measurement key as the 99NN alternate
         code (several rows share a concept, e.g. Volume), OBX-4 = lesion number, OBX-6 = UCUM unit,
         OBX-18 = the models (``name version``) that produced the value
    OBX  CE detection (SNOMED CT Present/Absent) and classification
    OBX  TX findings, impression, recommendations (LOINC 18782-3, 19005-8, 18783-1), one repetition per
         line (``~`` is a hard line break in TX), lines wrapped at 80 columns
    OBX  ED the PDF rendition: ``NeuroNav^AP^PDF^Base64^<data>``

Result status (OBR-25, OBX-11): preliminary and reviewed → P, final → F, a signed amendment → C (an
unsigned amendment is a draft: P).

Free text is escaped (``\\E\\ \\F\\ \\S\\ \\T\\ \\R\\``; line breaks become repetitions or spaces), so
text edited by a radiologist cannot break the message structure; :func:`unescape` reverses it.

hl7apy limits (1.3.5): a strict ``TX`` holds at most 65536 characters, so the base64 of a larger PDF is
set at the tolerant level for that one value (everything else stays strict); and its parser reads the
components of the ``varies`` OBX-5 as ``ST`` (199 characters), so a strict *parse* of a message with a
PDF, or with an OBX-5 longer than 199 characters, fails although the message is valid v2.5. The
narrative lines are kept under that limit; the PDF cannot be.
"""

from __future__ import annotations

import base64
import re
import textwrap
import uuid
from datetime import UTC, datetime
from typing import Any

from neuronav.report import codes
from neuronav.report.fhir import ABSENT, CLASSIFICATION, DETECTION, FINDINGS_TEXT, IMPRESSION, PRESENT, RECOMMENDATION
from neuronav.report.fhir import tumour_class as _tumour_class
from neuronav.report.model import Code, ModelInfo, Report, model_info

VERSION = "2.5"
APPLICATION = "NeuroNav"
AUTHORITY = "NEURONAV"
NO_NAME = "ANONYMOUS"  # PID-5 is required; name type S = coded pseudo-name to assure anonymity
ST_MAX = 199  # hl7apy's strict ST length (OBX-5 components are read as ST when parsed)
TX_MAX = 65536  # hl7apy's strict TX length
LINE_WIDTH = 80
PDF_CODE = Code(value="pdf-report", scheme=codes.PRIVATE_SCHEME, meaning="NeuroNav report (PDF)")

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


def _segment(er7: str, level: Any) -> Any:
    from hl7apy.parser import parse_segment

    return parse_segment(er7, version=VERSION, validation_level=level)


def make_oru(report: Report, *, pdf: bytes | None = None) -> str:
    """The report as an HL7 v2.5 ORU^R01 message (ER7, ``\\r`` between segments), strictly validated."""
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
    pid = _st(si.patient_pseudonym) if si.patient_pseudonym else f"{rid}-NOPSEUDONYM"
    patient.add(_segment(f"PID|1||{pid}^^^{AUTHORITY}^ANON||{NO_NAME}^^^^^^S", strict))

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order_id = f"{rid}^{AUTHORITY}"
    order.add(_segment(f"ORC|RE|{order_id}|{order_id}", strict))
    obr = [""] * 33
    obr[0:5] = ["OBR", "1", order_id, order_id, _ce(codes.REPORT_CODE)]
    obr[7] = study_date
    obr[20] = f"v{report.version}"  # filler field 1: the report version
    obr[22] = _ts(changed)
    obr[24] = "RAD"
    obr[25] = status
    if signature is not None:
        obr[32] = f"&{_st(signature.signed_by)}"
    order.add(_segment("|".join(obr).rstrip("|"), strict))
    notes = list(report.notices)
    if report.amendment_reason:
        notes.append(f"Amendment of version {report.supersedes_version}: {report.amendment_reason}")
    if report.narrative.radiologist_comment:
        notes.append(f"Radiologist comment: {report.narrative.radiologist_comment}")
    if signature is not None:
        notes.append(signature.manifestation())
    for i, note in enumerate(notes, start=1):
        order.add(_segment(f"NTE|{i}|L|{'~'.join(_lines(note))}", strict))

    observed = study_date
    analysed = _ts(f.created)
    observer = f"^{_st(signature.signed_by)}" if signature is not None else ""
    set_id = 0

    def obx(
        value_type: str, ident: str, value: str, *, sub_id: str = "", units: str = "", models: list[ModelInfo]
    ) -> Any:
        nonlocal set_id
        set_id += 1
        fields = [
            "OBX", str(set_id), value_type, ident, sub_id, value, units, "", "", "", "", status, "", "",
            observed, "", observer, "", _equipment(models), analysed,
        ]  # fmt: skip
        group = order.add_group("ORU_R01_OBSERVATION")
        segment = _segment("|".join(fields).rstrip("|"), strict)
        group.add(segment)
        return segment

    for m in report.measurements:
        units = _ce(Code(value=m.unit, scheme="UCUM", meaning=m.unit))
        sub_id = str(m.lesion_index) if m.lesion_index is not None else ""
        ident = _ce(m.concept, alternate=(m.key, m.label))
        obx("NM", ident, _number(m.value), sub_id=sub_id, units=units, models=m.produced_by)

    pd = report.ai_findings.primary_detection
    obx("CE", _ce(DETECTION), _ce(PRESENT if pd.detected else ABSENT), models=[model_info(f.detection.produced_by)])
    if pd.detected and pd.classification:
        label = _tumour_class(pd.classification)
        obx("CE", _ce(CLASSIFICATION), _ce(label), models=[model_info(f.classification.produced_by)])
    n = report.narrative
    obx("TX", _ce(FINDINGS_TEXT), "~".join(_lines(n.findings_text)), models=[])
    obx("TX", _ce(IMPRESSION), "~".join(_lines(n.impression)), models=[])
    if report.recommendations:
        text = "\n".join(f"{r.label} ({r.urgency}): {r.text}" for r in report.recommendations)
        obx("TX", _ce(RECOMMENDATION), "~".join(_lines(text)), models=[])
    if pdf is not None:
        segment = obx("ED", _ce(PDF_CODE), f"{APPLICATION}^AP^PDF^Base64^A", models=[])
        data = base64.b64encode(pdf).decode("ascii")
        # the data leaf (read as ST by hl7apy): a TX, tolerant only when over hl7apy's strict TX length
        leaf = segment.obx_5.children[4].children[0]
        leaf.value = TX(data, validation_level=strict if len(data) <= TX_MAX else VALIDATION_LEVEL.TOLERANT)

    msg.validate()
    return str(msg.to_er7())


__all__ = ["escape", "make_oru", "unescape", "v2_status"]
