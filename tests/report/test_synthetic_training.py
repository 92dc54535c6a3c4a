"""Every output says that the AI models were trained on synthetic data: each file is read back.

The sentence has one source (:data:`neuronav.report.model.SYNTHETIC_TRAINING`, one of the report's
disclaimers) and each writer writes it; a report stored before the sentence existed says it too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest

from neuronav.report.dicom_sc import annotation_lines
from neuronav.report.hl7v2 import unescape
from neuronav.report.model import DISCLAIMERS, SYNTHETIC_TRAINING, SYNTHETIC_TRAINING_SHORT, Report
from neuronav.report.outputs import FORMATS, Written, write_outputs
from tests.report.conftest import Analysed
from tests.report.test_hl7v2 import segments
from tests.report.test_pdf import flat, pdf_text


@pytest.fixture(scope="module")
def written(analysed: Analysed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Written]:
    from neuronav.report.build import build_report

    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    out = tmp_path_factory.mktemp("outputs")
    return report, write_outputs(report, FORMATS, out, analysis_dir=analysed.analysis_dir, source=analysed.source)


def file(written: tuple[Report, Written], fmt: str) -> Path:
    return written[1].files[fmt][0]


def sr_texts(ds: Any) -> list[str]:
    found: list[str] = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") == "TEXT":
            found.append(str(item.TextValue))
        found += sr_texts(item)
    return found


def hl7_notes(er7: str) -> list[str]:
    """The text of every NTE (its lines, wrapped at 80 columns as repetitions, joined again)."""
    return [" ".join(unescape(line) for line in f[3].split("~")) for f in segments(er7, "NTE")]


def fhir_texts(bundle: dict[str, Any], resource_type: str) -> list[str]:
    """The notes and the text renditions (presentedForm) of every ``resource_type`` in ``bundle``."""
    texts: list[str] = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != resource_type:
            continue
        texts += [n["text"] for n in res.get("note", [])]
        texts += [
            base64.b64decode(form["data"]).decode("utf-8")
            for form in res.get("presentedForm", [])
            if form["contentType"].startswith("text/plain")
        ]
    return texts


def test_it_is_one_of_the_disclaimers_of_a_new_report(written: tuple[Report, Written]) -> None:
    report, _ = written
    assert SYNTHETIC_TRAINING in report.disclaimers
    assert report.notices == report.disclaimers  # nothing added twice


def test_json(written: tuple[Report, Written]) -> None:
    assert SYNTHETIC_TRAINING in json.loads(file(written, "json").read_text())["disclaimers"]


def test_pdf_and_encapsulated_pdf(written: tuple[Report, Written], tmp_path: Path) -> None:
    assert SYNTHETIC_TRAINING in flat(pdf_text(file(written, "pdf").read_bytes(), tmp_path))
    encapsulated = pydicom.dcmread(file(written, "epdf")).EncapsulatedDocument
    assert SYNTHETIC_TRAINING in flat(pdf_text(bytes(encapsulated).rstrip(b"\0"), tmp_path))


def test_dicom_sr(written: tuple[Report, Written]) -> None:
    assert SYNTHETIC_TRAINING in sr_texts(pydicom.dcmread(file(written, "sr")))


def test_dicom_seg(written: tuple[Report, Written]) -> None:
    assert SYNTHETIC_TRAINING in pydicom.dcmread(file(written, "seg")).ImageComments


def test_secondary_capture_description_and_pixels(written: tuple[Report, Written]) -> None:
    report, w = written
    for path in (w.files["sc"][0], w.files["sc"][-1]):
        assert SYNTHETIC_TRAINING in pydicom.dcmread(path).ImageComments
    assert SYNTHETIC_TRAINING_SHORT in annotation_lines(report)  # burnt in: see test_dicom_sc (text box pixels)


@pytest.mark.parametrize(("fmt", "resource"), [("fhir-r4", "Observation"), ("fhir-r5", "DiagnosticReport")])
def test_fhir(written: tuple[Report, Written], fmt: str, resource: str) -> None:
    bundle = json.loads(file(written, fmt).read_text())
    assert any(SYNTHETIC_TRAINING in t for t in fhir_texts(bundle, resource))
    assert any(SYNTHETIC_TRAINING in t for t in fhir_texts(bundle, "DiagnosticReport"))  # its text rendition


def test_hl7_v2_note(written: tuple[Report, Written]) -> None:
    er7 = file(written, "hl7").read_bytes().decode()  # segments end with CR
    assert SYNTHETIC_TRAINING in hl7_notes(er7)


def test_a_report_stored_before_the_sentence_existed_says_it_in_every_output(
    analysed: Analysed, written: tuple[Report, Written], tmp_path: Path
) -> None:
    report, _ = written
    older = report.model_copy(update={"disclaimers": [d for d in DISCLAIMERS if d != SYNTHETIC_TRAINING]})
    assert older.notices.count(SYNTHETIC_TRAINING) == 1
    w = write_outputs(older, ["sr", "hl7", "fhir-r5"], tmp_path, source=analysed.source)
    assert SYNTHETIC_TRAINING in sr_texts(pydicom.dcmread(w.files["sr"][0]))
    assert SYNTHETIC_TRAINING in hl7_notes(w.files["hl7"][0].read_bytes().decode())
    assert any(
        SYNTHETIC_TRAINING in t for t in fhir_texts(json.loads(w.files["fhir-r5"][0].read_text()), "DiagnosticReport")
    )
