"""HL7 v2.5 ORU^R01: strictly valid, values equal the measurements table, statuses, escaping, the PDF."""

from __future__ import annotations

import base64
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from neuronav.findings import Findings
from neuronav.report import codes
from neuronav.report.build import build_report
from neuronav.report.hl7v2 import escape, make_oru, unescape, v2_status
from neuronav.report.lifecycle import amend, edit, sign
from neuronav.report.model import Report
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
    msg = parse_message(er7, validation_level=STRICT)
    msg.validate()
    return msg


def obx_by_key(er7: str) -> dict[str, list[str]]:
    """NM OBX segments by the measurement key (the 99NN alternate code, OBX-3.4)."""
    return {unescape(f[3].split("^")[3]): f for f in segments(er7, "OBX") if f[2] == "NM"}


def short_payload(er7: str) -> str:
    """The message with the ED data replaced by a short one (hl7apy parses OBX-5 components as ST(199))."""
    return re.sub(r"(\|ED\|[^|]*\|\|[^|^]*\^AP\^PDF\^Base64\^)[A-Za-z0-9+/=]+", r"\1QUJD", er7)


@pytest.fixture
def quick() -> Report:
    return build_report(make_findings(enhancing_ml=10.0, whole_tumour_ml=30.0), now=WHEN)


def test_strictly_valid_and_numbers_equal_the_measurements(report: Report) -> None:
    er7 = make_oru(report)
    msg = strict(er7)
    assert msg.to_er7() == er7  # type: ignore[attr-defined]
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
    (obr,) = segments(er7, "OBR")
    assert obr[2] == obr[3] == f"{report.report_id}^NEURONAV"
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
    assert base64.b64decode(data, validate=True) == pdf
    assert segments(er7, "OBX")[-1] is not None and segments(er7, "OBX")[-1][2] == "ED"


@pytest.mark.parametrize("size", [40_000, 300_000])  # under and over hl7apy's strict TX length (65536)
def test_large_pdf(quick: Report, size: int) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(size)
    er7 = make_oru(quick, pdf=pdf)
    (ed,) = [f for f in segments(er7, "OBX") if f[2] == "ED"]
    assert base64.b64decode(ed[5].split("^")[4], validate=True) == pdf
    tolerant = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT)
    obs = tolerant.oru_r01_patient_result.oru_r01_order_observation.children.get("ORU_R01_OBSERVATION")
    payload = obs[-1].obx.obx_5.to_er7().split("^")[4]
    assert base64.b64decode(payload) == pdf
    strict(short_payload(er7))  # everything else is strictly valid


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
    assert obr[20] == f"v{r.version}"


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
    (ed,) = [f for f in segments(er7, "OBX") if f[2] == "ED"]
    assert base64.b64decode(ed[5].split("^")[4], validate=True) == pdf
    strict(short_payload(er7))
    assert [float(f[5]) for f in obx_by_key(er7).values()] == [m.value for m in report.measurements]
