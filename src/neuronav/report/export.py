"""Entry points for the CLI and the service: a findings file, analysis folder or report file → outputs.

* :func:`load_for_export` reads what the user points at: an analysis folder, its ``findings.json``
  (a new preliminary report is built) or a stored report JSON (exported as it is: its version,
  status and signature travel into every output).
* :func:`export` finds the source DICOM series when a DICOM format is asked for and writes the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from neuronav.errors import InputError, ReportError
from neuronav.findings import Findings
from neuronav.ingest import Series
from neuronav.report.build import build_report
from neuronav.report.lifecycle import verify_signature
from neuronav.report.model import Patient, Report
from neuronav.report.outputs import DICOM_FORMATS, Paper, Written, write_outputs
from neuronav.report.sources import find_reference_series, load_source_series


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'/'.join(str(p) for p in e['loc'])}: {e['msg']}"


def load_for_export(path: Path, *, received: datetime | None = None) -> tuple[Report, Path | None]:
    """(report, analysis folder or None) from an analysis folder, a findings.json or a report JSON."""
    file = path / "findings.json" if path.is_dir() else path
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(
            "no such file (give an analysis folder, its findings.json or a report JSON)", str(file)
        ) from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not JSON ({exc})", str(file)) from exc
    folder = file.parent
    analysis_dir = folder if (folder / "segmentation.nii.gz").is_file() else None
    if isinstance(data, dict) and "report_id" in data:
        try:
            report = Report.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"not a valid NeuroNav report ({_first_error(exc)})", str(file)) from exc
        if report.signature is not None and not verify_signature(report):
            raise InputError(
                f"report {report.report_id} v{report.version} was changed after it was signed "
                "(its content no longer matches the signature); it is not exported",
                str(file),
            )
        return report, analysis_dir
    try:
        findings = Findings.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"not a NeuroNav findings or report file ({_first_error(exc)})", str(file)) from exc
    return build_report(findings, analysis_dir=analysis_dir, received=received), analysis_dir


def patient_of_dataset(ds: Any) -> Patient | None:
    """The patient of a DICOM dataset (the source series' first instance), as the CLI's outputs carry it."""
    from neuronav.report.identity import make_patient

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return str(value) if value not in (None, "") else None

    return make_patient(
        name=text("PatientName"),
        mrn=text("PatientID"),
        issuer=text("IssuerOfPatientID"),
        birth_date=text("PatientBirthDate"),
        sex=text("PatientSex"),
        accession_number=text("AccessionNumber"),
        referring_physician=text("ReferringPhysicianName"),
        assigning_authority=os.environ.get("NEURONAV_ASSIGNING_AUTHORITY") or None,
    )


def check_target(report: Report, out_dir: Path, *, overwrite: bool) -> None:
    """Refuse to replace another report (or a signed one) in ``out_dir`` unless ``overwrite``."""
    existing = out_dir / "report.json"
    if overwrite or not existing.is_file():
        return
    try:
        old = Report.model_validate_json(existing.read_bytes())
    except (ValidationError, ValueError):
        return  # not a report of ours: replaced like any output file
    same = (old.report_id, old.version, old.status) == (report.report_id, report.version, report.status)
    if not same:
        raise ReportError(
            f"{out_dir} already holds report {old.report_id} v{old.version} ({old.status}); "
            "write elsewhere with --out DIR, or replace it with --overwrite"
        )


def export(
    report: Report,
    formats: Sequence[str],
    out_dir: Path,
    *,
    analysis_dir: Path | None,
    dicom: Sequence[Path] = (),
    series: Series | None = None,
    paper: Paper = "A4",
) -> Written:
    """Write ``formats``; DICOM formats need ``series`` (the analysed reference series) or ``dicom`` paths.
    Given the source DICOM, the outputs carry the patient's identity from its headers (a clinical output:
    the PDF's header names the patient); without it they are pseudonymous."""
    source = None
    if DICOM_FORMATS & set(formats) or (dicom and report.patient is None):
        if series is None:
            if not dicom:
                raise ReportError(
                    f"{', '.join(sorted(DICOM_FORMATS & set(formats)))}: give the source DICOM study with --dicom "
                    "(these objects join the patient's study in PACS)"
                )
            series = find_reference_series(list(dicom), report.findings)
        source = load_source_series(series)
        if report.patient is None:
            report = report.identified(patient_of_dataset(source.first))
    return write_outputs(report, formats, out_dir, analysis_dir=analysis_dir, source=source, paper=paper)
