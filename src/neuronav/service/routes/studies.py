"""Studies (``/api/studies``) and analyses (``/api/analyses``): upload, list, read, status, start, result,
viewer images and manifest, de-identified export.

Thin: each route parses the request, calls one function of :mod:`neuronav.workflow` (which checks the
permission's object rules and audits every read of patient data) and shapes the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import (
    AuthFirstRoute,
    CurrentUserDep,
    DateTime,
    DbDep,
    Offset,
    SettingsDep,
    StoreDep,
    UnsupportedMediaTypeError,
    requires,
    requires_any,
)
from neuronav.workflow import exports, studies, viewer, worklist
from neuronav.workflow.studies import AnalysisOut, StudyDetail, StudyOut, StudyPage, UploadOut
from neuronav.workflow.uploads import Upload, UploadedFiles, remove_tmp
from neuronav.workflow.viewer import ViewerOut

router = APIRouter(tags=["studies"], route_class=AuthFirstRoute)

BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
Uploader = Annotated[Actor, Depends(requires(Permission.STUDY_UPLOAD))]
Starter = Annotated[Actor, Depends(requires(Permission.ANALYSIS_START))]
Reader = Annotated[Actor, Depends(requires(Permission.STUDY_READ))]
ImageViewer = Annotated[Actor, Depends(requires(Permission.STUDY_IMAGES))]
Lister = Annotated[Actor, Depends(requires_any(Permission.STUDY_LIST, Permission.STUDY_STATUS))]


def multipart_body(request: Request) -> None:
    """Refuse (415) an upload that is not multipart/form-data before its body is read or validated."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            "an upload is multipart/form-data with one or more 'files' parts (DICOM files or zip archives), "
            f"not {kind or 'a body without a content type'}"
        )


@router.post("/api/studies", response_model=UploadOut, status_code=201)
def upload_study(
    user: Uploader,
    _: Annotated[None, Depends(multipart_body)],
    db: DbDep,
    settings: SettingsDep,
    store: StoreDep,
    files: Annotated[list[UploadFile], File(min_length=1, description="DICOM files and/or zip archives of ONE study")],
) -> UploadOut:
    """Upload one study (DICOM files or zip archives, multipart). It is validated whole, stored encrypted
    and its analysis is queued. The same study uploaded again returns the first upload."""
    uploads = UploadedFiles([Upload(f.filename or "upload", f.file) for f in files])
    return studies.receive_and_analyse(db, store, settings, user, uploads, via="upload")


@router.get("/api/studies", response_model=StudyPage)
def list_studies(
    user: Lister,
    db: DbDep,
    store: StoreDep,
    state: Annotated[str | None, Query(description="received | queued | running | done | failed")] = None,
    flagged: Annotated[bool | None, Query(description="only studies with (or without) a detected tumour")] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="search pseudonym or description; MRN, accession or name (readers)"),
    ] = None,
    since: Annotated[DateTime | None, Query(description="uploaded at or after (ISO 8601; UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> StudyPage:
    """The worklist: flagged studies (tumour detected) first, then newest first. Readers (study:list) see
    every study, technicians (study:status) the status of their own uploads only. ``q`` matches a substring
    of the pseudonym or the description, ignoring case, and for readers the MRN, accession number or name
    (word prefixes, ignoring case and accents; a keyed blind index); readers see the name, MRN, birth date
    and accession of each row."""
    return worklist.list_studies(
        db, user, store=store, state=state, flagged=flagged, q=q, since=since, limit=limit, offset=offset
    )


@router.get("/api/studies/{study_id}", response_model=StudyDetail | StudyOut)
def get_study(study_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep) -> StudyOut:
    """A study. Readers (study:read) get the patient identity, decrypted and audited; a technician who
    uploaded it gets its processing status."""
    return studies.read_study(db, store, user, study_id)


@router.post("/api/studies/{study_id}/analyses", response_model=AnalysisOut, status_code=202)
def start(study_id: str, user: Starter, db: DbDep, settings: SettingsDep, force: bool = False) -> AnalysisOut:
    """Start (or return the cached / running) analysis of a study; ``force`` runs it again."""
    return studies.start(db, settings, user, study_id, force=force)


@router.get("/api/analyses/{analysis_id}", response_model=AnalysisOut)
def analysis_status(analysis_id: str, user: CurrentUserDep, db: DbDep) -> AnalysisOut:
    """Status and progress of an analysis (its uploader, or anyone who may read analyses)."""
    return studies.analysis_status(db, user, analysis_id)


@router.get("/api/analyses/{analysis_id}/result")
def analysis_result(
    analysis_id: str, user: Annotated[Actor, Depends(requires(Permission.ANALYSIS_READ))], db: DbDep
) -> dict[str, Any]:
    """The findings summary of a finished analysis and its report id."""
    return studies.analysis_result(db, user, analysis_id)


@router.get(
    "/api/studies/{study_id}/images/{image}",
    response_class=FileResponse,
    responses={200: {"description": "The image, NIfTI gzipped.", "content": {"application/gzip": BINARY}}},
)
def study_image(
    study_id: str,
    image: str,
    user: ImageViewer,
    db: DbDep,
    settings: SettingsDep,
    inflate: Annotated[
        bool,
        Query(
            description="Send the NIfTI itself (.nii, application/octet-stream) with the same gzip bytes as the "
            "HTTP Content-Encoding: a browser inflates it natively, off the page's thread (the web viewer does)."
        ),
    ] = False,
) -> FileResponse:
    """A NIfTI image of the latest finished analysis for the viewer: ``reference``, ``segmentation``,
    ``heatmap`` or ``sequence-<NAME>`` (each analysed sequence as acquired, in scanner space). A technician
    (study:images, own uploads) gets the acquired images only, never the AI's."""
    found = studies.study_image(db, settings, user, study_id, image)
    if inflate:
        return FileResponse(
            found.path,
            media_type="application/octet-stream",
            filename=f"{image}.nii",
            headers={"Cache-Control": "private, no-store", "Content-Encoding": "gzip"},
            background=BackgroundTask(remove_tmp, found.folder),
        )
    return FileResponse(
        found.path,
        media_type="application/gzip",
        filename=f"{image}.nii.gz",
        headers={"Cache-Control": "private, no-store"},
        background=BackgroundTask(remove_tmp, found.folder),
    )


@router.get("/api/studies/{study_id}/viewer", response_model=ViewerOut)
def viewer_manifest(study_id: str, user: ImageViewer, db: DbDep, settings: SettingsDep) -> ViewerOut:
    """What the viewer loads for a study: its images, the lesion centroids (for readers of AI results, or
    once the report is signed), the report and the prior studies of the same patient. A technician
    (study:images) gets the acquired images only: no AI results, no report, no priors."""
    return viewer.viewer_manifest(db, settings, user, study_id)


@router.get(
    "/api/studies/{study_id}/export/deidentified",
    response_class=FileResponse,
    responses={200: {"description": "The de-identified study, a zip.", "content": {"application/zip": BINARY}}},
)
def export_deidentified(
    study_id: str,
    user: Annotated[Actor, Depends(requires(Permission.STUDY_EXPORT_DEIDENTIFIED))],
    db: DbDep,
    settings: SettingsDep,
    store: StoreDep,
    retain_dates: Annotated[
        bool,
        Query(description="Retain Longitudinal Temporal Information (Modified Dates): shift dates per patient."),
    ] = True,
    retain_patient_characteristics: Annotated[
        bool, Query(description="Retain Patient Characteristics: keep age, sex, size and weight.")
    ] = True,
) -> FileResponse:
    """The study's DICOM de-identified (DICOM PS3.15 Basic Application Level Confidentiality Profile;
    by default with the Retain Longitudinal Temporal Information with Modified Dates and the Retain
    Patient Characteristics Options, each can be switched off), as a zip of
    ``<study>/<series>/<instance>.dcm`` with new keyed UIDs and the patient pseudonym, plus
    ``deidentification.json`` (counts, method, warnings). Radiologists and neurologists; an
    administrator only through a break-glass. Audited (options and counts, no patient data)."""
    export = exports.export_deidentified(
        db,
        store,
        settings,
        user,
        study_id,
        retain_dates=retain_dates,
        retain_patient_characteristics=retain_patient_characteristics,
    )
    return FileResponse(
        export.zip_path,
        media_type="application/zip",
        filename=f"{study_id}-deidentified.zip",
        background=BackgroundTask(remove_tmp, export.folder),
    )


__all__ = ["router"]
