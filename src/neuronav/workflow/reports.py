"""Reports in the database, and what readers do with them, for every edge.

Versions: the JSON document encrypted (column-bound AES-GCM), one row per version. An unsigned version
is a draft and is replaced by its edits; a signed version is never replaced — changing it takes an
amendment, which is a new row. The lifecycle's rules are :mod:`neuronav.report.lifecycle`; who may
read (a preliminary report: radiologists; a signed one: neurologists too) and export is
:mod:`neuronav.security.access`; every read, export and step is audited here.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, ReportRow, ReportVersionRow, StudyRow, utcnow
from neuronav.db.session import get_row
from neuronav.errors import InputError, LifecycleError, NotFoundError, ReportError
from neuronav.report import lifecycle
from neuronav.report.json_report import report_json
from neuronav.report.model import Report
from neuronav.security import permissions
from neuronav.security.access import Actor, export_permission, identity_open
from neuronav.security.permissions import ReportObject
from neuronav.security.throttle import EXPORT_RATE
from neuronav.storage import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import throttles
from neuronav.workflow.access import audit_event, authorize_object
from neuronav.workflow.identity import patient_of
from neuronav.workflow.uploads import private_tmp, remove_tmp

DOCUMENT_COLUMN = "report_versions.document"


def save(
    db: Session, store: ObjectStore, report: Report, *, study_id: str, analysis_id: str, user_id: str | None
) -> None:
    """Store ``report`` as its version's row (replacing an unsigned draft of the same version)."""
    report = report.pseudonymous()  # identity is attached when an output is written, never stored
    document = encrypt_field(report_json(report).decode("utf-8"), store.field_key(), DOCUMENT_COLUMN)
    row = db.get(ReportRow, report.report_id)
    if row is None:
        row = ReportRow(id=report.report_id, study_id=study_id, analysis_id=analysis_id)
        db.add(row)
    existing = db.get(ReportVersionRow, (report.report_id, report.version))
    if existing is not None:
        if existing.content_sha256 is not None:
            raise LifecycleError(f"version {report.version} of {report.report_id} is signed and cannot be replaced")
        existing.document_enc, existing.status, existing.created_by = document, report.status, user_id
    else:
        db.add(
            ReportVersionRow(
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
        raise NotFoundError(f"no report {report_id}")
    wanted = version or row.version
    ver = db.get(ReportVersionRow, (report_id, wanted))
    if ver is None:
        raise NotFoundError(f"no version {wanted} of report {report_id}")
    return Report.model_validate_json(decrypt_field(ver.document_enc, store.field_key(), DOCUMENT_COLUMN))


def versions(db: Session, report_id: str) -> list[ReportVersionRow]:
    return list(
        db.scalars(
            select(ReportVersionRow).where(ReportVersionRow.report_id == report_id).order_by(ReportVersionRow.version)
        )
    )


def for_study(db: Session, study_id: str) -> ReportRow | None:
    return db.scalars(
        select(ReportRow).where(ReportRow.study_id == study_id).order_by(ReportRow.updated_at.desc())
    ).first()


def export(
    db: Session, settings: Settings, report: Report, analysis: AnalysisRow, fmt: str, folder: Path
) -> list[Path]:
    """Write one format of ``report`` into ``folder`` from the stored (encrypted) analysis and upload."""
    from neuronav.analysis.inputs import from_paths
    from neuronav.report.outputs import DICOM_FORMATS, parse_formats, start_helper, write_outputs
    from neuronav.report.sources import load_source_series
    from neuronav.workflow.jobs import RESULT_FILES, result_path, store_for
    from neuronav.workflow.uploads import restore_upload

    formats = parse_formats(fmt)
    if len(formats) != 1:
        raise ReportError("export one format at a time")
    (wanted,) = formats
    start_helper(formats)  # Secondary Captures: made by the spawned report helper, never by forking this process
    analysis_dir = folder / "analysis"
    analysis_dir.mkdir()
    label_file = report.findings.segmentation.label_file  # a corrected label map: its own stored file
    for name in (*RESULT_FILES, *([label_file] if label_file not in RESULT_FILES else [])):
        result_path(settings, db, analysis, name, analysis_dir)
    source = None
    if wanted in DICOM_FORMATS:
        upload = folder / "upload"
        upload.mkdir()
        restore_upload(db, store_for(settings), analysis.study_id, upload)
        inputs = from_paths([upload])
        series = inputs.series.get(report.findings.study.reference_sequence)
        if series is None:
            raise ReportError("the reference series of the analysis is no longer in the stored upload")
        source = load_source_series(series)
    predecessor = None
    if wanted == "sr" and report.supersedes_version:  # an amendment's SR names the SR it replaces
        predecessor = load(db, store_for(settings), report.report_id, report.supersedes_version)
    written = write_outputs(
        report, [wanted], folder / "out", analysis_dir=analysis_dir, source=source, predecessor=predecessor
    )
    if wanted not in written.files:
        raise ReportError(written.notes.get(wanted, f"{wanted} was not written"))
    return written.files[wanted]


# -- what a reader does with a report (every edge calls these) -------------------------------------

ExportFormat = Literal[
    "json", "pdf", "seg", "sr", "epdf", "sc", "fhir", "fhir-r4", "fhir-r4b", "fhir-r5", "hl7"
]  # the keys of MEDIA
MEDIA: dict[str, tuple[str, str]] = {
    "json": ("application/json", "report.json"),
    "pdf": ("application/pdf", "report.pdf"),
    "seg": ("application/dicom", "seg.dcm"),
    "sr": ("application/dicom", "sr.dcm"),
    "epdf": ("application/dicom", "report-pdf.dcm"),
    "sc": ("application/zip", "sc.zip"),
    "fhir": ("application/fhir+json", "fhir-r4.json"),  # alias of fhir-r4 (the release EHRs run)
    "fhir-r4": ("application/fhir+json", "fhir-r4.json"),
    "fhir-r4b": ("application/fhir+json", "fhir-r4b.json"),
    "fhir-r5": ("application/fhir+json", "fhir-r5.json"),
    "hl7": ("application/hl7-v2", "report.hl7"),
}


def export_filename(report: Report, name: str) -> str:
    """``NN-20261205-1a2b3c4d-v2-amended-draft-report.pdf``: the report id, version and status (``-draft``
    while unsigned), so a draft and the signed report are never saved under one name."""
    state = report.status if report.signature is not None else f"{report.status}-draft"
    return f"{report.report_id}-v{report.version}-{state}-{name}"


def _row(db: Session, report_id: str) -> ReportRow:
    return get_row(db, ReportRow, report_id, "report")


def _object(row: ReportRow, report: Report) -> ReportObject:
    return ReportObject(
        report_id=report.report_id, study_id=row.study_id, status=report.status, signed=report.signature is not None
    )


def read(db: Session, store: ObjectStore, actor: Actor, report_id: str, version: int | None = None) -> Report:
    """The report (newest version unless ``version``) when ``actor`` may read it (neurologists: signed
    reports only); the refusal is audited. The read itself is audited by the caller's action."""
    row = _row(db, report_id)
    report = load(db, store, report_id, version)
    obj = _object(row, report)
    authorize_object(db, actor, permissions.report_read_permission(obj), obj)
    return report


def read_report(db: Session, store: ObjectStore, actor: Actor, report_id: str, version: int | None = None) -> Report:
    """:func:`read`, audited as ``report.read``."""
    report = read(db, store, actor, report_id, version)
    audit_event(db, actor, "report.read", target_type="report", target_id=report_id, detail={"version": report.version})
    return report


def read_versions(db: Session, store: ObjectStore, actor: Actor, report_id: str) -> list[ReportVersionRow]:
    """Every stored version of a report (audited as ``report.versions``)."""
    read(db, store, actor, report_id)
    audit_event(db, actor, "report.versions", target_type="report", target_id=report_id)
    return versions(db, report_id)


def read_deliveries(db: Session, store: ObjectStore, actor: Actor, report_id: str) -> list[Any]:
    """Where the report's versions were sent, and how that went (audited as ``report.deliveries``): for
    whoever may read the report."""
    from neuronav.workflow.deliveries import deliveries_of_report

    read(db, store, actor, report_id)
    audit_event(db, actor, "report.deliveries", target_type="report", target_id=report_id)
    return deliveries_of_report(db, report_id)


@dataclass(frozen=True)
class ExportFile:
    """One exported format in a private temporary folder: remove ``folder`` once it is sent."""

    path: Path
    folder: Path
    media_type: str
    filename: str  # <report id>-v<version>-<status>-<name>: a draft and the signed report never share a name


def export_for(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    report_id: str,
    fmt: str,
    version: int | None = None,
    *,
    pseudonymous: bool = False,
) -> ExportFile:
    """The report exported as ``fmt`` for ``actor`` (audited as ``report.export``, with whether it names the
    patient): clinical (identified) for the roles that may see identity unless ``pseudonymous`` is asked
    for (a research copy: the keyed pseudonym only). Needs reading it, and
    :func:`~neuronav.security.access.export_permission` for the format. Counted against
    :data:`~neuronav.security.throttle.EXPORT_RATE` (a PDF or DICOM export costs seconds of CPU)."""
    if fmt not in MEDIA:
        raise InputError(f"unknown format {fmt!r}; one of {', '.join(MEDIA)}")
    throttles.spend(db, actor, EXPORT_RATE)
    row = _row(db, report_id)
    report = read(db, store, actor, report_id, version)
    needed = export_permission(actor, fmt, _object(row, report))
    if needed is not None:
        authorize_object(db, actor, needed, _object(row, report))
    analysis = db.get(AnalysisRow, row.analysis_id)
    if analysis is None:
        raise NotFoundError(f"the analysis of report {report_id} is gone")
    identified = identity_open(actor) and not pseudonymous  # a clinical output names the patient
    if identified:
        study = db.get(StudyRow, row.study_id)
        report = report.identified(patient_of(store, study, settings) if study is not None else None)
    folder = private_tmp(settings, "export-")
    try:
        files = export(db, settings, report, analysis, fmt, folder)
        media, name = MEDIA[fmt]
        path = files[0]
        if fmt == "sc":
            path = folder / name
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for f in files:
                    zf.write(f, f"sc/{f.name}")
    except BaseException:
        remove_tmp(folder)
        raise
    audit_event(
        db,
        actor,
        "report.export",
        target_type="report",
        target_id=report_id,
        detail={"format": fmt, "version": report.version, "status": report.status, "identified": identified},
    )
    return ExportFile(path, folder, media, export_filename(report, name))


def edit(db: Session, store: ObjectStore, actor: Actor, report_id: str, changes: dict[str, Any]) -> Report:
    """Edit findings or text (each edit recorded with who and when)."""
    row = _row(db, report_id)
    report = lifecycle.edit(load(db, store, report_id), changes, who=actor.display_name, role=actor.role)
    save(db, store, report, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
    audit_event(
        db,
        actor,
        "report.edit",
        target_type="report",
        target_id=report_id,
        detail={"paths": sorted(changes), "version": report.version},
    )
    return report


def mark_reviewed(db: Session, store: ObjectStore, actor: Actor, report_id: str) -> Report:
    """The explicit step preliminary → reviewed (edits never change the status)."""
    row = _row(db, report_id)
    report = lifecycle.mark_reviewed(load(db, store, report_id), who=actor.display_name, role=actor.role)
    save(db, store, report, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
    audit_event(
        db, actor, "report.review", target_type="report", target_id=report_id, detail={"version": report.version}
    )
    return report


def sign(
    db: Session,
    store: ObjectStore,
    actor: Actor,
    report_id: str,
    *,
    password: str,
    totp_code: str | None = None,
) -> Report:
    """Sign after re-authentication (the signer's password, and TOTP code when the account has one:
    :func:`neuronav.workflow.signin.reauthenticate`): the report becomes final (or a signed amendment);
    its content hash and the signature's manifestation (name, time, meaning) are recorded."""
    from neuronav.workflow.signin import reauthenticate

    row = _row(db, report_id)
    current = load(db, store, report_id)
    lifecycle.check_signable(current, role=actor.role)  # a refusal needs no password
    method = reauthenticate(db, store, actor, password=password, totp_code=totp_code, purpose="report.sign")
    report = lifecycle.sign(current, who=actor.display_name, role=actor.role, reauthenticated_by=method)
    save(db, store, report, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
    if report.signature is None:
        raise LifecycleError(f"signing {report_id} recorded no signature")
    audit_event(
        db,
        actor,
        "report.sign",
        target_type="report",
        target_id=report_id,
        detail={
            "version": report.version,
            "sha256": report.signature.content_sha256,
            "meaning": report.signature.meaning,
            "reauthenticated_by": method,
        },
    )
    from neuronav.workflow.deliveries import enqueue

    enqueue(db, report, study_id=row.study_id)  # committed with the signature: the outbox sends it
    from neuronav.workflow.orders import advance

    advance(db, row.study_id, "signed")
    return report


def amend(db: Session, store: ObjectStore, actor: Actor, report_id: str, reason: str) -> Report:
    """Start an amendment of a signed report: a new version (earlier ones are kept)."""
    row = _row(db, report_id)
    report = lifecycle.amend(load(db, store, report_id), who=actor.display_name, role=actor.role, reason=reason)
    save(db, store, report, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
    audit_event(
        db,
        actor,
        "report.amend",
        target_type="report",
        target_id=report_id,
        detail={"version": report.version, "reason_chars": len(report.amendment_reason or "")},
    )
    return report
