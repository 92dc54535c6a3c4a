"""Report versions in the database: the JSON document encrypted (column-bound AES-GCM), one row per
version. An unsigned version is a draft and is replaced by its edits; a signed version is never
replaced — changing it takes an amendment, which is a new row."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import Analysis, ReportVersion, utcnow
from neuronav.db.models import Report as ReportRow
from neuronav.errors import LifecycleError, ReportError
from neuronav.report.json_report import report_json
from neuronav.report.model import Report
from neuronav.storage import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore

DOCUMENT_COLUMN = "report_versions.document"


def save(
    db: Session, store: ObjectStore, report: Report, *, study_id: str, analysis_id: str, user_id: str | None
) -> None:
    """Store ``report`` as its version's row (replacing an unsigned draft of the same version)."""
    document = encrypt_field(report_json(report).decode("utf-8"), store.field_key(), DOCUMENT_COLUMN)
    row = db.get(ReportRow, report.report_id)
    if row is None:
        row = ReportRow(id=report.report_id, study_id=study_id, analysis_id=analysis_id)
        db.add(row)
    existing = db.get(ReportVersion, (report.report_id, report.version))
    if existing is not None:
        if existing.content_sha256 is not None:
            raise LifecycleError(f"version {report.version} of {report.report_id} is signed and cannot be replaced")
        existing.document_enc, existing.status, existing.created_by = document, report.status, user_id
    else:
        db.add(
            ReportVersion(
                report_id=report.report_id,
                version=report.version,
                status=report.status,
                document_enc=document,
                content_sha256=report.signature.content_sha256 if report.signature else None,
                created_by=user_id,
            )
        )
    if existing is not None and report.signature is not None:
        existing.content_sha256 = report.signature.content_sha256
    row.version, row.status, row.updated_at = report.version, report.status, utcnow()
    db.flush()


def load(db: Session, store: ObjectStore, report_id: str, version: int | None = None) -> Report:
    row = db.get(ReportRow, report_id)
    if row is None:
        raise ReportError(f"no report {report_id}")
    wanted = version or row.version
    ver = db.get(ReportVersion, (report_id, wanted))
    if ver is None:
        raise ReportError(f"no version {wanted} of report {report_id}")
    return Report.model_validate_json(decrypt_field(ver.document_enc, store.field_key(), DOCUMENT_COLUMN))


def versions(db: Session, report_id: str) -> list[ReportVersion]:
    return list(
        db.scalars(select(ReportVersion).where(ReportVersion.report_id == report_id).order_by(ReportVersion.version))
    )


def for_study(db: Session, study_id: str) -> ReportRow | None:
    return db.scalars(
        select(ReportRow).where(ReportRow.study_id == study_id).order_by(ReportRow.updated_at.desc())
    ).first()


def export(db: Session, settings: Settings, report: Report, analysis: Analysis, fmt: str, folder: Path) -> list[Path]:
    """Write one format of ``report`` into ``folder`` from the stored (encrypted) analysis and upload."""
    from neuronav.analysis.inputs import from_paths
    from neuronav.report.outputs import DICOM_FORMATS, parse_formats, start_helper, write_outputs
    from neuronav.report.sources import load_source_series
    from neuronav.workflow.jobs import RESULT_FILES, result_path
    from neuronav.workflow.uploads import restore_upload

    formats = parse_formats(fmt)
    if len(formats) != 1:
        raise ReportError("export one format at a time")
    (wanted,) = formats
    start_helper(formats)  # Secondary Captures: made by the spawned report helper, never by forking this process
    analysis_dir = folder / "analysis"
    analysis_dir.mkdir()
    for name in RESULT_FILES:
        result_path(settings, db, analysis, name, analysis_dir)
    source = None
    if wanted in DICOM_FORMATS:
        upload = folder / "upload"
        upload.mkdir()
        from neuronav.workflow.jobs import store_for

        restore_upload(db, store_for(settings), analysis.study_id, upload)
        inputs = from_paths([upload])
        series = inputs.series.get(report.findings.study.reference_sequence)
        if series is None:
            raise ReportError("the reference series of the analysis is no longer in the stored upload")
        source = load_source_series(series)
    written = write_outputs(report, [wanted], folder / "out", analysis_dir=analysis_dir, source=source)
    if wanted not in written.files:
        raise ReportError(written.notes.get(wanted, f"{wanted} was not written"))
    return written.files[wanted]
