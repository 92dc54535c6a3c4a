"""Reports (``/api/reports``): read (JSON), versions, export (PDF, SEG, SR, Encapsulated PDF, SC, FHIR,
HL7 v2), edit, sign, amend. The lifecycle itself is :mod:`neuronav.report.lifecycle`; these routes
check who may do it (a preliminary report is read by radiologists only; neurologists read signed
reports), store the new state (:mod:`neuronav.workflow.reports`) and audit it."""

from __future__ import annotations

import shutil
import zipfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from neuronav.db.models import AnalysisRow, ReportRow
from neuronav.report import lifecycle
from neuronav.report.model import Report
from neuronav.report.outputs import FORMATS
from neuronav.security import permissions
from neuronav.security.permissions import Permission, ReportObject
from neuronav.service.deps import (
    CurrentUser,
    CurrentUserDep,
    DbDep,
    NotFoundError,
    SettingsDep,
    StoreDep,
    audit_event,
    authorize_object,
    requires,
)
from neuronav.workflow import reports
from neuronav.workflow.uploads import private_tmp

router = APIRouter(prefix="/api/reports", tags=["reports"])
MEDIA = {
    "json": ("application/json", "report.json"),
    "pdf": ("application/pdf", "report.pdf"),
    "seg": ("application/dicom", "seg.dcm"),
    "sr": ("application/dicom", "sr.dcm"),
    "epdf": ("application/dicom", "report-pdf.dcm"),
    "sc": ("application/zip", "sc.zip"),
    "fhir": ("application/fhir+json", "fhir-r4b.json"),
    "fhir-r5": ("application/fhir+json", "fhir-r5.json"),
    "hl7": ("application/hl7-v2", "report.hl7"),
}

Editor = Annotated[CurrentUser, Depends(requires(Permission.REPORT_EDIT))]
Signer = Annotated[CurrentUser, Depends(requires(Permission.REPORT_SIGN))]
Amender = Annotated[CurrentUser, Depends(requires(Permission.REPORT_AMEND))]


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict[str, Any] = Field(description="JSON pointer → new value: /narrative/impression, /findings/…")


class AmendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=1000)


class VersionOut(BaseModel):
    version: int
    status: str
    content_sha256: str | None
    signed: bool


def _row(db: DbDep, report_id: str) -> ReportRow:
    row = db.get(ReportRow, report_id)
    if row is None:
        raise NotFoundError(f"no report {report_id}")
    return row


def _read(db: DbDep, store: StoreDep, user: CurrentUser, report_id: str, version: int | None) -> Report:
    row = _row(db, report_id)
    report = reports.load(db, store, report_id, version)
    obj = ReportObject(
        report_id=report.report_id, study_id=row.study_id, status=report.status, signed=report.signature is not None
    )
    authorize_object(db, user, permissions.report_read_permission(obj), obj)
    return report


@router.get("/{report_id}", response_model=Report)
def get_report(report_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep, version: int | None = None) -> Report:
    """The report (newest version unless ``version``); neurologists see signed reports only."""
    report = _read(db, store, user, report_id, version)
    audit_event(db, user, "report.read", target_type="report", target_id=report_id, detail={"version": report.version})
    return report


@router.get("/{report_id}/versions", response_model=list[VersionOut])
def get_versions(report_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep) -> list[VersionOut]:
    """Every stored version of a report (earlier versions stay retrievable with ``?version=``)."""
    _read(db, store, user, report_id, None)
    audit_event(db, user, "report.versions", target_type="report", target_id=report_id)
    return [
        VersionOut(
            version=v.version, status=v.status, content_sha256=v.content_sha256, signed=v.content_sha256 is not None
        )
        for v in reports.versions(db, report_id)
    ]


@router.get("/{report_id}/export/{fmt}")
def export_report(
    report_id: str,
    fmt: str,
    user: CurrentUserDep,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
    version: int | None = None,
) -> FileResponse:
    """The report as ``json``, ``pdf``, ``seg``, ``sr``, ``epdf``, ``sc`` (zip), ``fhir``, ``fhir-r5`` or ``hl7``."""
    if fmt not in MEDIA:
        from neuronav.errors import InputError

        raise InputError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    report = _read(db, store, user, report_id, version)
    if fmt != "pdf" or user.role == "radiologist":  # others read the PDF of a signed report only
        permissions.require(
            user.role,
            Permission.REPORT_EXPORT,
            active=True,
            verified=user.verified,
            breakglass=user.breakglass,
            user_id=user.id,
        )
    row = _row(db, report_id)
    analysis = db.get(AnalysisRow, row.analysis_id)
    assert analysis is not None
    folder = private_tmp(settings, "export-")
    try:
        files = reports.export(db, settings, report, analysis, fmt, folder)
        media, name = MEDIA[fmt]
        path = files[0]
        if fmt == "sc":
            path = folder / name
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for f in files:
                    zf.write(f, f"sc/{f.name}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    audit_event(
        db,
        user,
        "report.export",
        target_type="report",
        target_id=report_id,
        detail={"format": fmt, "version": report.version, "status": report.status},
    )
    return FileResponse(
        path,
        media_type=media,
        filename=f"{report_id}-v{report.version}-{name}",
        background=BackgroundTask(shutil.rmtree, folder, True),
    )


def _store(db: DbDep, store: StoreDep, report: Report, row: ReportRow, user: CurrentUser) -> None:
    reports.save(db, store, report, study_id=row.study_id, analysis_id=row.analysis_id, user_id=user.id)


@router.post("/{report_id}/edit", response_model=Report)
def edit_report(report_id: str, body: EditIn, user: Editor, db: DbDep, store: StoreDep) -> Report:
    """Edit findings or text (each edit recorded with who and when); the status becomes reviewed."""
    row = _row(db, report_id)
    report = lifecycle.edit(reports.load(db, store, report_id), body.changes, who=user.display_name, role=user.role)
    _store(db, store, report, row, user)
    audit_event(
        db,
        user,
        "report.edit",
        target_type="report",
        target_id=report_id,
        detail={"paths": sorted(body.changes), "version": report.version},
    )
    return report


@router.post("/{report_id}/sign", response_model=Report)
def sign_report(report_id: str, user: Signer, db: DbDep, store: StoreDep) -> Report:
    """Sign: the report becomes final (or a signed amendment); its content hash is recorded."""
    row = _row(db, report_id)
    report = lifecycle.sign(reports.load(db, store, report_id), who=user.display_name, role=user.role)
    _store(db, store, report, row, user)
    assert report.signature is not None
    audit_event(
        db,
        user,
        "report.sign",
        target_type="report",
        target_id=report_id,
        detail={"version": report.version, "sha256": report.signature.content_sha256},
    )
    return report


@router.post("/{report_id}/amend", response_model=Report)
def amend_report(report_id: str, body: AmendIn, user: Amender, db: DbDep, store: StoreDep) -> Report:
    """Start an amendment of a signed report: a new version (earlier ones are kept); edit, then sign it."""
    row = _row(db, report_id)
    report = lifecycle.amend(
        reports.load(db, store, report_id), who=user.display_name, role=user.role, reason=body.reason
    )
    _store(db, store, report, row, user)
    audit_event(db, user, "report.amend", target_type="report", target_id=report_id, detail={"version": report.version})
    return report
