"""Readers' measurements included in a report are structured rows in every structured output: an HL7 OBX
(OBX-16 the reader), a FHIR Observation (performer the reader), the report JSON (schema 1.2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import hl7 as python_hl7
import pytest
from fhir.resources.R4B.bundle import Bundle as BundleR4B
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from neuronav.errors import LifecycleError
from neuronav.report.build import build_report
from neuronav.report.fhir import make_bundle
from neuronav.report.hl7v2 import make_oru, unescape
from neuronav.report.json_report import report_json
from neuronav.report.lifecycle import edit, sign
from neuronav.report.model import REPORT_SCHEMA_VERSION, Report
from neuronav.workflow.annotations import reader_rows
from tests.analysis.findings_factory import make_findings


class _Author:
    display_name = "Dr Reader"


@pytest.fixture
def with_readers() -> Report:
    r = build_report(make_findings(), now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    rows = reader_rows(
        "a1", "distance", {"plane": "axial", "image": "T1c"}, {"length_mm": 23.4}, "longest axis", _Author()
    )
    rows += reader_rows(
        "a2", "roi", {"plane": "axial", "image": "FLAIR"}, {"area_mm2": 150.0, "mean": 1.7}, None, _Author()
    )
    for row in rows:
        r = edit(r, {"/reader_measurements/-": row.model_dump(mode="json")}, who="Dr Reader", role="radiologist")
    return sign(r, who="Dr Reader", role="radiologist")


def test_rows_are_recorded_edits_and_valid_json(with_readers: Report) -> None:
    assert [m.key for m in with_readers.reader_measurements] == ["reader_a1_length", "reader_a2_area", "reader_a2_mean"]
    assert [e.path for e in with_readers.edits] == ["/reader_measurements/-"] * 3
    data = json.loads(report_json(with_readers))  # validated against the published schema
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["reader_measurements"][0]["value"] == 23.4
    assert reader_rows("a3", "text", {}, {}, "a note", _Author()) == []


def test_a_bad_row_is_refused() -> None:
    r = build_report(make_findings(), now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    with pytest.raises(LifecycleError, match="reader measurement"):
        edit(r, {"/reader_measurements/-": {"key": "x"}}, who="Dr", role="radiologist")


def test_hl7_obx_per_reader_row(with_readers: Report) -> None:
    er7 = make_oru(with_readers)
    parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT).validate()
    obx = [s for s in python_hl7.parse(er7).segments("OBX") if str(s[3]).split("^")[3:4] and "reader_" in str(s[3])]
    assert [unescape(str(s[3]).split("^")[3]) for s in obx] == [m.key for m in with_readers.reader_measurements]
    assert [float(str(s[5])) for s in obx] == [m.value for m in with_readers.reader_measurements]
    assert {str(s[16]) for s in obx} == {"^Dr Reader"}
    assert {str(s[18]) for s in obx} == {""}  # no model produced them
    assert str(obx[0][3]).startswith("410668003^Length^SCT")


def test_fhir_observation_per_reader_row(with_readers: Report) -> None:
    bundle = make_bundle(with_readers, version="R4")
    BundleR4B.model_validate(bundle)
    obs = {
        e["resource"]["identifier"][0]["value"].rsplit("/", 1)[1]: e for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }  # fmt: skip
    for m in with_readers.reader_measurements:
        res = obs[m.key]["resource"]
        assert res["valueQuantity"]["value"] == m.value and res["valueQuantity"]["code"] == m.unit
        assert res["performer"] == [{"display": "Dr Reader"}] and "device" not in res
    (dr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert {obs[m.key]["fullUrl"] for m in with_readers.reader_measurements} <= {x["reference"] for x in dr["result"]}
