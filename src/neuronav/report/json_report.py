"""The JSON report and its published JSON Schema (``schemas/report-<version>.schema.json``).

The schema file is generated from :class:`neuronav.report.model.Report` by
``python -m neuronav.report.json_report`` and committed; a test fails when the model and the file
differ, so a change to the report format needs a new schema version. Every JSON report is validated
against the published file when it is written.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from neuronav.errors import ReportError
from neuronav.report.model import REPORT_SCHEMA_VERSION, Report, drop_later_defaults

SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMA_ID = f"https://neuronav.dev/schemas/report-{REPORT_SCHEMA_VERSION}.schema.json"


def schema_path(version: str = REPORT_SCHEMA_VERSION) -> Path:
    return SCHEMA_DIR / f"report-{version}.schema.json"


def generate_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the current report model."""
    schema = Report.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"NeuroNav report {REPORT_SCHEMA_VERSION}",
        "description": "AI analysis report of a brain MRI study. Research software, not for clinical use.",
        **{k: v for k, v in schema.items() if k != "title"},
    }


@lru_cache(maxsize=4)
def published_schema(version: str = REPORT_SCHEMA_VERSION) -> dict[str, Any]:
    if not re.fullmatch(r"\d{1,3}\.\d{1,3}", version):
        raise ReportError(f"not a report schema version: {version[:20]!r}")
    path = schema_path(version)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"no published report schema for version {version} ({path})") from exc
    return data


def validate_report_json(data: dict[str, Any]) -> None:
    """Raise ReportError naming the first place where ``data`` breaks the published schema."""
    import jsonschema

    version = str(data.get("schema_version", REPORT_SCHEMA_VERSION))
    validator = jsonschema.Draft202012Validator(published_schema(version))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        raise ReportError(f"report JSON does not match schema {version} at {where}: {error.message}")


def report_json(report: Report) -> bytes:
    """The report as UTF-8 JSON, validated against the published schema."""
    data = report.model_dump(mode="json")
    if data.get("patient") is None:  # pseudonymous: no identity key at all (and a 1.0 report stays valid 1.0)
        data.pop("patient", None)
    if data.get("schema_version") != REPORT_SCHEMA_VERSION:  # a report stored in an older version stays in it
        drop_later_defaults(data)
    validate_report_json(data)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(report: Report, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(report_json(report))
    tmp.replace(path)
    return path


if __name__ == "__main__":  # regenerate the published schema file
    schema_path().write_text(json.dumps(generate_schema(), indent=2, ensure_ascii=False) + "\n")
    print(schema_path())
