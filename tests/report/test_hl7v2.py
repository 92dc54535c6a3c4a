"""HL7 v2.5 ORU^R01: strictly valid, values equal the measurements table, statuses, escaping, the PDF."""

from __future__ import annotations

import base64
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import hl7 as python_hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from neuronav.findings import Change, Findings
from neuronav.report import codes
from neuronav.report.build import build_report
from neuronav.report.hl7v2 import ED_PART, OrderNumbers, Receiver, escape, make_oru, unescape, v2_status
from neuronav.report.lifecycle import amend, edit, sign
from neuronav.report.model import Patient, Report
from neuronav.report.outputs import write_outputs
from tests.analysis.findings_factory import make_findings
from tests.report.conftest import Analysed

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STRICT = VALIDATION_LEVEL.STRICT
NASTY = "Mass | left ^ frontal & parietal ~ 3 cm \\ see \\H\\ and \\.br\\ prior\r\nMSH|^~\\&|EVIL\rThird\nline"


def segments(er7: str, name: str) -> list[list[str]]:
    """The fields of every ``name`` segment; index n is field n (for MSH, n is MSH-(n+1))."""
    return [s.split("|") for s in er7.split("\r") if s.split("|", 1)[0] == name]


def strict(er7: str) -> object:
    """Parsed and validated strictly by hl7apy, and parsed by python-hl7 (segment count must agree)."""
    assert er7.endswith("\r") and "\n" not in er7  # every segment terminated by CR, the last one too
    msg = parse_message(er7, validation_level=STRICT)
    msg.validate()
    assert len(python_hl7.parse(er7)) == er7.count("\r")
    return msg


def pdf_of(er7: str) -> bytes:
    """The embedded PDF: the data of the ED OBX parts (OBX-4 pdf.1, pdf.2, …) in order, decoded part by part."""
    parts = [f for f in segments(er7, "OBX") if f[2] == "ED"]
    if len(parts) > 1:
        assert [f[4] for f in parts] == [f"pdf.{n}" for n in range(1, len(parts) + 1)]
    return b"".join(base64.b64decode(f[5].split("^")[4], validate=True) for f in parts)


def obx_by_key(er7: str) -> dict[str, list[str]]:
    """NM OBX segments by the measurement key (the 99NN alternate code, OBX-3.4)."""
    return {unescape(f[3].split("^")[3]): f for f in segments(er7, "OBX") if f[2] == "NM"}


def short_payload(er7: str) -> str:
    """The message with the ED data replaced by a short one (hl7apy parses OBX-5 components as ST(199))."""
    return re.sub(r"(\|ED\|[^|]*\|[^|]*\|[^|^]*\^AP\^PDF\^Base64\^)[A-Za-z0-9+/=]+", r"\1QUJD", er7)


@pytest.fixture
def quick() -> Report:
    return build_report(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0), now=WHEN)


def test_strictly_valid_and_numbers_equal_the_measurements(report: Report) -> None:
    er7 = make_oru(report)
    msg = strict(er7)
    assert msg.to_er7() + "\r" == er7  # type: ignore[attr-defined]
    by_key = obx_by_key(er7)
    assert list(by_key) == [m.key for m in report.measurements]
    for m in report.measurements:
        f = by_key[m.key]
        ident = f[3].split("^")
        assert ident[0] == m.concept.value
        assert ident[2] == codes.HL7V2_SYSTEMS[m.concept.scheme]
        assert unescape(ident[4]) == m.label
        assert ident[5] == "99NN"
        assert f[4] == (str(m.lesion_index) if m.lesion_index is not None else "")
        assert float(f[5]) == m.value
        assert "e" not in f[5].lower()  # NM: no exponent
        assert f[6].split("^")[0] == m.unit
        assert f[6].split("^")[2] == "UCUM"
        assert f[11] == "P"
        assert f[14] == report.study_info.study_date
        assert f[18].split("~") == [f"{p.name} {p.version}^NEURONAV" for p in m.produced_by]
    # OBX-3 + OBX-4 identify each observation uniquely within the OBR
    idents = [(f[3], f[4]) for f in segments(er7, "OBX")]
    assert len(set(idents)) == len(idents)
    assert [f[1] for f in segments(er7, "OBX")] == [str(i) for i in range(1, len(idents) + 1)]


def test_header_patient_and_order(report: Report) -> None:
    er7 = make_oru(report)
    (msh,) = segments(er7, "MSH")
    assert msh[2] == "NeuroNav"  # MSH-3
    assert msh[8] == "ORU^R01^ORU_R01"  # MSH-9
    assert msh[10] == "P"  # MSH-11
    assert msh[11] == "2.5"  # MSH-12
    assert msh[17] == "UNICODE UTF-8"  # MSH-18
    assert segments(make_oru(report), "MSH")[0][9] != msh[9]  # control id unique per message
    (pid,) = segments(er7, "PID")
    cx = pid[3].split("^")
    assert (cx[0], cx[3], cx[4]) == (report.study_info.patient_pseudonym, "NEURONAV", "ANON")
    assert pid[5] == "ANONYMOUS^^^^^^S"  # no name: pseudo-name type S
    assert len(pid) == 6  # nothing else about the patient
    (pv1,) = segments(er7, "PV1")
    assert pv1[2] == "U" and len(pv1) == 3  # patient class unknown, no referrer
    (orc,) = segments(er7, "ORC")
    (obr,) = segments(er7, "OBR")
    assert orc[2] == obr[2] == ""  # no order known: no placer number
    assert orc[3] == obr[3] == f"{report.report_id}^NEURONAV"  # nor an accession: the report is the filler
    assert obr[18] == ""
    assert obr[20] == f"{report.report_id}/v{report.version}"
    assert obr[4] == "24590-2^MR Brain^LN"
    assert obr[7] == report.study_info.study_date
    assert obr[25] == "P"
    notes = [" ".join(unescape(line) for line in f[3].split("~")) for f in segments(er7, "NTE")]  # lines of 80
    assert notes[: len(report.disclaimers)] == report.disclaimers
    (sft,) = segments(er7, "SFT")
    assert sft[2] == report.findings.neuronav_version


def test_detection_classification_and_narrative(report: Report) -> None:
    er7 = make_oru(report)
    by_code = {f[3].split("^")[0]: f for f in segments(er7, "OBX")}
    pd = report.ai_findings.primary_detection
    assert pd.detected and pd.classification
    assert by_code["tumour-detected"][2] == "CE"
    assert by_code["tumour-detected"][5] == "52101004^Present^SCT"
    assert by_code["tumour-classification"][5].split("^")[0] == pd.classification
    impression = by_code["19005-8"]
    assert impression[2] == "TX"
    assert " ".join(unescape(line) for line in impression[5].split("~")) == report.narrative.impression
    findings = by_code["18782-3"]
    assert all(len(line) <= 80 for line in findings[5].split("~"))
    assert " ".join(findings[5].split("~")) == report.narrative.findings_text


def test_not_detected_has_absent_and_no_classification() -> None:
    f = make_findings()
    f = f.model_copy(update={"detection": f.detection.model_copy(update={"tumour_detected": False})})
    r = build_report(Findings.model_validate(f.model_dump()), now=WHEN)
    er7 = make_oru(r)
    strict(er7)
    by_code = {f[3].split("^")[0]: f for f in segments(er7, "OBX")}
    assert by_code["tumour-detected"][5] == "2667000^Absent^SCT"
    assert "tumour-classification" not in by_code
    assert "classification_confidence" not in obx_by_key(er7)


def test_pdf_is_an_ed_obx_that_decodes_to_the_pdf(quick: Report) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(90))  # base64 under 199 characters: hl7apy can parse it strictly
    er7 = make_oru(quick, pdf=pdf)
    strict(er7)
    (ed,) = [f for f in segments(er7, "OBX") if f[2] == "ED"]
    source, kind, subtype, encoding, data = ed[5].split("^")
    assert (source, kind, subtype, encoding) == ("NeuroNav", "AP", "PDF", "Base64")
    assert ed[4] == ""  # one part: no sub-id
    assert base64.b64decode(data, validate=True) == pdf
    assert segments(er7, "OBX")[-1] is not None and segments(er7, "OBX")[-1][2] == "ED"


@pytest.mark.parametrize("size", [40_000, 49_149, 49_150, 300_000])  # around one part of ED_PART characters
def test_large_pdf_is_split_at_the_field_limit(quick: Report, size: int) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(size)
    er7 = make_oru(quick, pdf=pdf)
    parts = [f for f in segments(er7, "OBX") if f[2] == "ED"]
    encoded = len(base64.b64encode(pdf))
    assert len(parts) == -(-encoded // ED_PART)
    assert all(len(f[5].split("^")[4]) <= 65536 for f in parts)  # the v2.5 length of OBX-5
    assert pdf_of(er7) == pdf
    by_python_hl7 = python_hl7.parse(er7)  # an independent parser reads the same parts
    data = [str(s[5][0][4]) for s in by_python_hl7.segments("OBX") if str(s[2]) == "ED"]
    assert base64.b64decode("".join(data)) == pdf
    strict(short_payload(er7))  # everything else is strictly valid


def test_pdf_by_reference(quick: Report) -> None:
    url = "https://neuronav.example/api/reports/NN-1/export/pdf?version=2&x=|^~"
    er7 = make_oru(quick, pdf=b"%PDF-1.4", pdf_url=url)
    strict(er7)
    assert not [f for f in segments(er7, "OBX") if f[2] == "ED"]
    (rp,) = [f for f in segments(er7, "OBX") if f[2] == "RP"]
    pointer, app, kind, subtype = rp[5].split("^")
    assert (unescape(pointer), app, kind, subtype) == (url, "NEURONAV", "AP", "PDF")


IDENTIFIED = Patient(
    name="Doe-Smith^Jane^Q^Dr^III",
    mrn="MRN|0042",
    mrn_issuer="1.2.840.99.1",
    birth_date="19700102",
    sex="F",
    accession_number="ACC-77",
    referring_physician="House^Gregory",
)


def test_clinical_message_names_the_patient_order_and_accession(quick: Report) -> None:
    r = quick.model_copy(update={"patient": IDENTIFIED})
    er7 = make_oru(r, order=OrderNumbers(placer="ORD-9", placer_authority="EPIC"), receiver=Receiver("RIS", "HOSP"))
    msg = strict(er7)
    (msh,) = segments(er7, "MSH")
    assert (msh[4], msh[5]) == ("RIS", "HOSP")  # MSH-5, MSH-6
    (pid,) = segments(er7, "PID")
    cx = pid[3].split("^")
    assert (unescape(cx[0]), cx[3], cx[4]) == ("MRN|0042", "1.2.840.99.1", "MR")
    assert pid[5] == "Doe-Smith^Jane^Q^III^Dr^^L"  # XPN: family, given, middle, suffix, prefix, type legal
    assert (pid[7], pid[8]) == ("19700102", "F")
    (pv1,) = segments(er7, "PV1")
    assert pv1[8] == "^House^Gregory"
    (orc,) = segments(er7, "ORC")
    (obr,) = segments(er7, "OBR")
    assert orc[2] == obr[2] == "ORD-9^EPIC"
    assert orc[3] == obr[3] == "ACC-77"  # no filler number from an order: the accession number
    assert obr[18] == "ACC-77"
    assert orc[12] == obr[16] == "^House^Gregory"
    # hl7apy reads the same values back by name
    pid_seg = msg.oru_r01_patient_result.oru_r01_patient.pid  # type: ignore[attr-defined]
    assert pid_seg.pid_3.cx_1.value == "MRN\\F\\0042"
    assert pid_seg.pid_5.xpn_1.to_er7() == "Doe-Smith"
    # python-hl7 too
    parsed = python_hl7.parse(er7)
    assert str(parsed.segment("PID")[3][0][3]) == "1.2.840.99.1"
    assert str(parsed.segment("OBR")[18]) == "ACC-77"


def test_the_filler_number_of_the_order_wins(quick: Report) -> None:
    r = quick.model_copy(update={"patient": IDENTIFIED})
    er7 = make_oru(r, order=OrderNumbers(placer="P1", filler="F1", filler_authority="RIS"))
    strict(er7)
    (obr,) = segments(er7, "OBR")
    assert (obr[2], obr[3], obr[18]) == ("P1", "F1^RIS", "ACC-77")


def test_patient_without_mrn_keeps_the_pseudonym_in_pid3(quick: Report) -> None:
    r = quick.model_copy(update={"patient": Patient(name="Roe^Richard", sex="X")})
    er7 = make_oru(r)
    strict(er7)
    (pid,) = segments(er7, "PID")
    assert pid[3].split("^")[3:] == ["NEURONAV", "ANON"]
    assert pid[5] == "Roe^Richard^^^^^L"
    assert pid[8] == "U"  # an unknown sex code is not passed on


def test_change_versus_prior_and_rano_are_observations() -> None:
    f = make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0)
    change = Change(
        prior_study="1.2.3",
        prior_date="20240101",
        volume_change_percent={"whole_tumour_ml": 50.0, "enhancing_ml": None},
        prior_volumes_ml={"whole_tumour_ml": 20.0, "enhancing_ml": 0.0},
        rano_category="progression",
        rule="enhancing +25 %",
    )
    r = build_report(f.model_copy(update={"change": change}), now=WHEN)
    assert r.change_versus_prior is not None
    er7 = make_oru(r)
    strict(er7)
    by_code = {f[3].split("^")[0]: f for f in segments(er7, "OBX") if f[2] == "CE"}
    assert by_code["rano-category"][5].split("^")[0] == "progression"
    rows = [f for f in segments(er7, "OBX") if f[3].startswith("volume-change^")]
    expected = [row for row in r.change_versus_prior.rows if row.change_percent is not None]
    assert [float(f[5]) for f in rows] == [row.change_percent for row in expected]
    assert all(f[6].startswith("%^") for f in rows)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], "P"),
        (["edit"], "P"),
        (["sign"], "F"),
        (["sign", "amend"], "P"),  # an unsigned amendment is a draft
        (["sign", "amend", "sign"], "C"),
        (["sign", "amend", "edit", "sign"], "C"),
    ],
)
def test_result_status(quick: Report, steps: list[str], expected: str) -> None:
    r = quick
    for step in steps:
        if step == "edit":
            r = edit(r, {"/narrative/radiologist_comment": "Checked."}, who="Dr Test", role="radiologist", when=WHEN)
        elif step == "sign":
            r = sign(r, who="Dr Test", role="radiologist", when=WHEN)
        else:
            r = amend(r, who="Dr Test", role="radiologist", reason="Typo in impression", when=WHEN)
    er7 = make_oru(r)
    strict(er7)
    assert v2_status(r) == expected
    (obr,) = segments(er7, "OBR")
    assert obr[25] == expected
    assert {f[11] for f in segments(er7, "OBX")} == {expected}
    assert obr[20] == f"{r.report_id}/v{r.version}"


def test_signed_report_names_the_signer(quick: Report) -> None:
    r = sign(quick, who="Dr Test", role="radiologist", when=WHEN)
    er7 = make_oru(r)
    strict(er7)
    (obr,) = segments(er7, "OBR")
    assert obr[25] == "F"
    assert obr[32] == "&Dr Test"  # OBR-32 principal result interpreter
    assert obr[22] == "20261129120000+0000"  # OBR-22: when it was signed
    assert {f[16] for f in segments(er7, "OBX")} == {"^Dr Test"}  # OBX-16 responsible observer
    amended = sign(
        amend(r, who="Dr Test", role="radiologist", reason="Size corrected"), who="Dr Test", role="radiologist"
    )
    er7 = make_oru(amended)
    notes = [unescape(f[3]) for f in segments(er7, "NTE")]
    assert "Amendment of version 1: Size corrected" in notes
    assert segments(er7, "OBR")[0][25] == "C"


def test_free_text_is_escaped(quick: Report) -> None:
    who = "Dr O'Brien|^&~\\"
    r = edit(
        quick,
        {"/narrative/impression": NASTY, "/narrative/radiologist_comment": "a|b^c&d~e\\f"},
        who=who,
        role="radiologist",
        when=WHEN,
    )
    r = sign(r, who=who, role="radiologist", when=WHEN)
    plain = make_oru(quick)
    er7 = make_oru(r)
    strict(er7)
    lines = er7.split("\r")
    added = Counter(s[:3] for s in lines) - Counter(s[:3] for s in plain.split("\r"))
    assert added == Counter({"NTE": 2})  # the comment and the signature, nothing injected
    assert sum(s.startswith("MSH") for s in lines) == 1
    impression = next(f for f in segments(er7, "OBX") if f[3].startswith("19005-8"))
    text = " ".join(unescape(x) for x in impression[5].split("~"))
    assert text.split() == NASTY.split()  # same words; line breaks become TX repetitions
    notes = [unescape(f[3]) for f in segments(er7, "NTE")]
    assert "Radiologist comment: a|b^c&d~e\\f" in notes
    (obr,) = segments(er7, "OBR")
    assert unescape(obr[32].split("&", 1)[1]) == who


@pytest.mark.parametrize("text", ["", "plain", NASTY, "\\E\\ literal", "é – ü", "a\\", "\\"])
def test_escape_roundtrip(text: str) -> None:
    value = escape(text)
    assert not set("|^&~\r\n") & set(value)
    assert unescape(value) == re.sub(r"[\r\n]", " ", text)


def test_no_pseudonym_and_no_study_date() -> None:
    f = make_findings()
    f = f.model_copy(update={"study": f.study.model_copy(update={"study_date": "", "patient_pseudonym": None})})
    r = build_report(Findings.model_validate(f.model_dump()), now=WHEN)
    er7 = make_oru(r)
    strict(er7)
    (pid,) = segments(er7, "PID")
    assert pid[3].split("^")[0] == f"{r.report_id}-NOPSEUDONYM"  # unique per report: never merges patients
    assert segments(er7, "OBR")[0][7] == ""


def test_only_known_table_gaps(report: Report, tmp_path: Path) -> None:
    """hl7apy's v2.5 table 0396 lacks SCT and UCUM (HL7-registered coding systems) and the 99zzz local form."""
    msg = parse_message(make_oru(report), validation_level=STRICT)
    out = tmp_path / "validation.txt"
    msg.validate(report_file=str(out))
    found = out.read_text().splitlines()
    assert not [w for w in found if not w.startswith("Warning:")]
    unexpected = [w for w in found if not re.match(r"Warning: Value (SCT|UCUM|99NN) not in table HL70396 ", w)]
    assert unexpected == []


def test_written_by_write_outputs_with_the_pdf(report: Report, analysed: Analysed, tmp_path: Path) -> None:
    write_outputs(report, ["pdf", "hl7"], tmp_path, analysis_dir=analysed.analysis_dir)
    pdf = (tmp_path / "report.pdf").read_bytes()
    er7 = (tmp_path / "report.hl7").read_bytes().decode("utf-8")
    assert pdf_of(er7) == pdf
    strict(short_payload(er7))
    assert [float(f[5]) for f in obx_by_key(er7).values()] == [m.value for m in report.measurements]
