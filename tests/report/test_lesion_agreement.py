"""Lesions as radiologists count them, the same in every output.

The phantom glioma of the session (one tumour: a core with its oedema) is analysed once
(``tests/report/conftest.py``): the pipeline must call it one lesion. Then a report with three
lesions (the phantom's and two more, placed elsewhere) is written in every format, and each output
is read back by its own reader — the JSON document, the PDF's text (pdftotext), the DICOM SR's
tracking identifiers (pydicom), the FHIR Observations' identifiers, the HL7 OBX-4 sub-ids
(python-hl7) and the viewer's lesion list — and must list the same lesions.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hl7
import pydicom
import pytest

from neuronav.findings import Location
from neuronav.report.build import build_report, location_text
from neuronav.report.lifecycle import sign
from neuronav.report.model import Report
from neuronav.report.outputs import write_outputs
from neuronav.workflow.viewer import lesion_list
from tests.conftest import require_binary
from tests.report.conftest import Analysed


def test_the_phantom_glioma_is_one_lesion(analysed: Analysed) -> None:
    truth = json.loads((analysed.study_dir / "truth.json").read_text())
    assert truth["lesion_count"] == 1
    lesions = analysed.findings.segmentation.lesions
    assert len(lesions) == truth["lesion_count"], [(x.core_ml, x.oedema_ml) for x in lesions]
    (les,) = lesions
    assert les.core_ml is not None and les.oedema_ml is not None and les.oedema_ml > 0
    assert les.max_diameter_mm <= (les.oedema_max_diameter_mm or 0.0)  # the core is inside its oedema


@pytest.fixture(scope="module")
def three(analysed: Analysed) -> Report:
    f = analysed.findings
    (first,) = f.segmentation.lesions
    others = [
        first.model_copy(
            update={
                "index": i,
                "core_ml": round((first.core_ml or 1.0) / (i + 1), 3),
                "volume_ml": round(first.volume_ml / (i + 1), 3),
                "location": Location(hemisphere=side, lobe=lobe, region=region, atlas=first.location.atlas),
            }
        )
        for i, side, lobe, region in (
            (2, "right", "occipital", "right cuneus [AAL2 Cuneus_R]"),
            (3, "left", "cerebellum", "left cerebellar hemisphere (Crus1) [AAL2 Cerebelum_Crus1_L]"),
        )
    ]
    seg = f.segmentation.model_copy(update={"lesions": [first, *others]})
    report = build_report(f.model_copy(update={"segmentation": seg}), analysis_dir=analysed.analysis_dir)
    return sign(report, who="Dr Test", role="radiologist")


def _pdf_lesions(pdf: Path) -> tuple[set[int], str]:
    out = subprocess.run(
        [require_binary("pdftotext"), "-enc", "UTF-8", "-f", "1", "-l", "1", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    page1 = " ".join(out.split())
    return {int(n) for n in re.findall(r"Lesion (\d+):", page1)}, page1


def _sr_lesions(ds: pydicom.Dataset) -> set[int]:
    found: set[int] = set()

    def walk(items: Any) -> None:
        for item in items:
            if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier":
                m = re.fullmatch(r"Lesion (\d+)", str(item.TextValue))
                if m:
                    found.add(int(m.group(1)))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return found


def _fhir_lesions(bundle: dict[str, Any]) -> set[int]:
    found: set[int] = set()
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation":
            continue
        for ident in res.get("identifier", []):
            m = re.search(r"/lesion(\d+)_", ident["value"])
            if m:
                found.add(int(m.group(1)))
    return found


def _hl7_lesions(text: str) -> set[int]:
    msg = hl7.parse(text.replace("\n", "\r"))
    # OBX-4 (sub-ID) holds the lesion number of a lesion's measurement; other rows leave it empty or name
    # what they group (the PDF's parts: pdf.1, pdf.2, …)
    return {int(str(obx[4])) for obx in msg.segments("OBX") if str(obx[4]).strip().isdigit()}


def test_every_output_lists_the_same_lesions(analysed: Analysed, three: Report, tmp_path: Path) -> None:
    formats = ["json", "pdf", "sr", "fhir-r4", "hl7"]
    written = write_outputs(three, formats, tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source)
    files = {fmt: written.files[fmt][0] for fmt in formats}
    expected = {1, 2, 3}

    data = json.loads(files["json"].read_text())
    assert {les["index"] for les in data["findings"]["segmentation"]["lesions"]} == expected
    assert data["ai_findings"]["primary_detection"]["lesion_count"] == 3
    assert {m["lesion_index"] for m in data["measurements"] if m["lesion_index"] is not None} == expected

    pdf_lesions, page1 = _pdf_lesions(files["pdf"])
    assert pdf_lesions == expected
    assert page1.count("Three intracranial lesions") == 1
    for les in three.findings.segmentation.lesions:
        assert location_text(les) in page1
    assert "Electronically signed by Dr Test (radiologist)" in page1

    sr = pydicom.dcmread(files["sr"])
    assert _sr_lesions(sr) == expected
    manifestations = [
        str(item.TextValue)
        for box in sr.ContentSequence
        if "ContentSequence" in box
        for item in box.ContentSequence
        if item.ValueType == "TEXT"
        and item.ConceptNameCodeSequence[0].CodeMeaning == "Electronic signature manifestation"
    ]
    assert three.signature is not None and manifestations == [three.signature.manifestation()]

    bundle = json.loads(files["fhir-r4"].read_text())
    assert _fhir_lesions(bundle) == expected
    (report_resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    (text_form,) = [f for f in report_resource["presentedForm"] if f["contentType"].startswith("text/plain")]
    assert three.signature.manifestation() in base64.b64decode(text_form["data"]).decode("utf-8")

    message = files["hl7"].read_text()
    assert _hl7_lesions(message) == expected
    nte = hl7.parse(message.replace("\n", "\r")).segments("NTE")
    notes = " ".join(" ".join(str(seg[3]).replace("~", " ").split()) for seg in nte)
    assert three.signature.manifestation() in notes

    viewer = lesion_list(three.findings)
    assert [v.index for v in viewer] == [1, 2, 3]
    assert [v.location for v in viewer] == [location_text(x) for x in three.findings.segmentation.lesions]
