"""The published JSON Schema matches the model, and every written report is valid against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from neuronav.errors import ReportError
from neuronav.report.build import build_report
from neuronav.report.json_report import generate_schema, report_json, schema_path, validate_report_json, write_json
from neuronav.report.model import REPORT_SCHEMA_VERSION, Report
from tests.analysis.findings_factory import make_findings


def test_published_schema_is_current() -> None:
    published = json.loads(schema_path().read_text())
    assert published == generate_schema(), (
        "the report model changed: bump REPORT_SCHEMA_VERSION and publish a new schema file with "
        "`python -m neuronav.report.json_report`"
    )
    jsonschema.Draft202012Validator.check_schema(published)
    assert published["$id"].endswith(f"report-{REPORT_SCHEMA_VERSION}.schema.json")


def test_report_json_is_valid_and_round_trips(tmp_path: Path) -> None:
    report = build_report(make_findings())
    path = write_json(report, tmp_path / "report.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(schema_path().read_text()))
    assert Report.model_validate(data) == report
    assert data["report_id"] == report.report_id and data["status"] == "preliminary" and data["version"] == 1


def test_invalid_report_json_is_refused_with_its_place() -> None:
    data = json.loads(report_json(build_report(make_findings())))
    data["measurements"][0]["value"] = "twelve"
    with pytest.raises(ReportError, match=r"/measurements/0/value"):
        validate_report_json(data)
    data = json.loads(report_json(build_report(make_findings())))
    data["report_id"] = "NN-1"
    with pytest.raises(ReportError, match="report_id"):
        validate_report_json(data)
    data["schema_version"] = "9.9"
    with pytest.raises(ReportError, match=r"no published report schema for version 9\.9"):
        validate_report_json(data)
    data["schema_version"] = "../../../etc/x"
    with pytest.raises(ReportError, match="not a report schema version"):
        validate_report_json(data)
