"""Reports (``/api/reports``): read (JSON), versions, export (PDF, SEG, SR, Encapsulated PDF, SC, FHIR,
HL7 v2), edit, sign, amend.

Thin: who may read and export, the lifecycle step, its storage and its audit event are
:mod:`neuronav.workflow.reports`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from neuronav.report.lifecycle import MAX_NARRATIVE_CHARS
from neuronav.report.model import Report
from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, CurrentUserDep, DbDep, SettingsDep, StoreDep, Version, requires
from neuronav.workflow import reports
from neuronav.workflow.reports import MEDIA, ExportFormat
from neuronav.workflow.uploads import remove_tmp

router = APIRouter(prefix="/api/reports", tags=["reports"], route_class=AuthFirstRoute)

Editor = Annotated[Actor, Depends(requires(Permission.REPORT_EDIT))]
Signer = Annotated[Actor, Depends(requires(Permission.REPORT_SIGN))]
Amender = Annotated[Actor, Depends(requires(Permission.REPORT_AMEND))]


# the export's media types, as each format answers (not JSON only)
EXPORT_MEDIA: dict[str, dict[str, Any]] = {
    media: {"schema": {} if media.endswith("json") else {"type": "string", "format": "binary"}}
    for media in sorted({media for media, _ in MEDIA.values()})
}


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: dict[str, Any] = Field(
        max_length=100,
        description="JSON pointer → new value: /narrative/impression, /findings/… (narrative texts up to "
        f"{MAX_NARRATIVE_CHARS} characters)",
    )


class AmendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=1000)


class SignIn(BaseModel):
    """The signer re-authenticates: their password, and their authenticator code when they use one."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, pattern=r"^\d{6}$")


class VersionOut(BaseModel):
    version: int
    status: str
    content_sha256: str | None
    signed: bool


@router.get("/{report_id}", response_model=Report)
def get_report(report_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep, version: Version = None) -> Report:
    """The report (newest version unless ``version``); neurologists see signed reports only."""
    return reports.read_report(db, store, user, report_id, version)


class DeliveryOut(BaseModel):
    """One output of one report version sent to one hospital system."""

    id: str
    destination: str
    kind: str = Field(description="hl7 | fhir | dicom | dicomweb")
    report_version: int
    output: str = Field(description="hl7, fhir-r4, …")
    event: str = Field(description="preliminary | final | amendment")
    state: str = Field(description="queued | sending | delivered | failed")
    attempts: int
    next_attempt_at: datetime | None
    peer_status: str | None = Field(description="the peer's code: AA / AE / AR, HTTP 201, …")
    error: str | None
    delivered_at: datetime | None


@router.get("/{report_id}/deliveries", response_model=list[DeliveryOut])
def get_deliveries(report_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep) -> list[DeliveryOut]:
    """Where the report's outputs went (HL7, FHIR, PACS) and how each delivery stands."""
    return [
        DeliveryOut.model_validate(d, from_attributes=True) for d in reports.read_deliveries(db, store, user, report_id)
    ]


@router.get("/{report_id}/versions", response_model=list[VersionOut])
def get_versions(report_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep) -> list[VersionOut]:
    """Every stored version of a report (earlier versions stay retrievable with ``?version=``)."""
    return [
        VersionOut(
            version=v.version, status=v.status, content_sha256=v.content_sha256, signed=v.content_sha256 is not None
        )
        for v in reports.read_versions(db, store, user, report_id)
    ]


@router.get(
    "/{report_id}/export/{fmt}",
    response_class=FileResponse,
    responses={200: {"description": "The exported report file.", "content": EXPORT_MEDIA}},
)
def export_report(
    report_id: str,
    fmt: ExportFormat,
    user: CurrentUserDep,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
    version: Version = None,
    pseudonymous: Annotated[
        bool, Query(description="a research copy: the keyed pseudonym instead of the patient's identity (audited)")
    ] = False,
) -> FileResponse:
    """The report as ``json``, ``pdf``, ``seg``, ``sr``, ``epdf``, ``sc`` (zip), ``fhir-r4`` (alias ``fhir``),
    ``fhir-r4b``, ``fhir-r5`` or ``hl7``: clinical (naming the patient, for the roles that may see identity)
    unless ``pseudonymous``."""
    exported = reports.export_for(db, store, settings, user, report_id, fmt, version, pseudonymous=pseudonymous)
    return FileResponse(
        exported.path,
        media_type=exported.media_type,
        filename=exported.filename,
        background=BackgroundTask(remove_tmp, exported.folder),
    )


@router.post("/{report_id}/edit", response_model=Report)
def edit_report(report_id: str, body: EditIn, user: Editor, db: DbDep, store: StoreDep) -> Report:
    """Edit findings or text (each edit recorded with who and when); the status does not change."""
    return reports.edit(db, store, user, report_id, body.changes)


@router.post("/{report_id}/review", response_model=Report)
def review_report(report_id: str, user: Editor, db: DbDep, store: StoreDep) -> Report:
    """Mark a preliminary report reviewed (the only step, with signing, that moves its status)."""
    return reports.mark_reviewed(db, store, user, report_id)


@router.post("/{report_id}/sign", response_model=Report)
def sign_report(report_id: str, body: SignIn, user: Signer, db: DbDep, store: StoreDep) -> Report:
    """Sign after re-authentication (password, and TOTP code when enrolled; 403 when they do not check
    out): the report becomes final (or a signed amendment); its content hash and the signature's name,
    time and meaning are recorded."""
    return reports.sign(db, store, user, report_id, password=body.password, totp_code=body.totp_code)


@router.post("/{report_id}/amend", response_model=Report)
def amend_report(report_id: str, body: AmendIn, user: Amender, db: DbDep, store: StoreDep) -> Report:
    """Start an amendment of a signed report: a new version (earlier ones are kept); edit, then sign it."""
    return reports.amend(db, store, user, report_id, body.reason)


__all__ = ["router"]
