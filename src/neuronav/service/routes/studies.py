"""Studies (``/api/studies``) and analyses (``/api/analyses``): upload, list, read, status, start, result.

Thin: each route checks the permission (and the object rule), calls :mod:`neuronav.workflow`, and
audits every read of patient data. A technician sees only the processing status of studies they
uploaded; reading patient identity needs ``study:read`` and is audited.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import func, or_, select
from starlette.background import BackgroundTask

from neuronav.db.models import Analysis, Study
from neuronav.db.models import Report as ReportRow
from neuronav.errors import InputError
from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import Permission, StudyObject
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
    utc,
)
from neuronav.storage import decrypt_field
from neuronav.workflow import jobs, reports
from neuronav.workflow.uploads import Upload, private_tmp, receive_upload

router = APIRouter(tags=["studies"])
IMAGES = {"reference": "reference.nii.gz", "segmentation": "segmentation.nii.gz", "heatmap": "probability.nii.gz"}

Uploader = Annotated[CurrentUser, Depends(requires(Permission.STUDY_UPLOAD))]
Lister = Annotated[CurrentUser, Depends(requires(Permission.STUDY_LIST))]
Starter = Annotated[CurrentUser, Depends(requires(Permission.ANALYSIS_START))]


class AnalysisOut(BaseModel):
    id: str
    study_id: str
    state: str
    progress: float
    stage: str | None
    error: str | None
    attempts: int
    created_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    report_id: str | None


class StudyOut(BaseModel):
    id: str
    state: str
    flagged: bool
    uploaded_at: datetime | None
    patient_pseudonym: str | None
    study_date: str | None
    description: str | None
    sequences: list[str]
    n_files: int
    analysis: AnalysisOut | None
    report_id: str | None = None
    report_status: str | None = None


class StudyDetail(StudyOut):
    patient_name: str | None
    patient_id: str | None
    patient_birth_date: str | None


class UploadOut(BaseModel):
    study: StudyOut
    created: bool
    analysis_queued: bool


class StudyPage(BaseModel):
    items: list[StudyOut]
    total: int
    limit: int
    offset: int


def _analysis_out(a: Analysis | None) -> AnalysisOut | None:
    if a is None:
        return None
    return AnalysisOut(
        id=a.id,
        study_id=a.study_id,
        state=a.state,
        progress=a.progress,
        stage=a.stage,
        error=a.error,
        attempts=a.attempts,
        created_at=utc(a.created_at),
        finished_at=utc(a.finished_at),
        seconds=a.seconds,
        report_id=(a.result or {}).get("report_id"),
    )


def _latest(db: DbDep, study_id: str) -> Analysis | None:
    return db.scalars(
        select(Analysis).where(Analysis.study_id == study_id).order_by(Analysis.created_at.desc())
    ).first()


def _study_out(
    db: DbDep,
    s: Study,
    *,
    with_status: bool = True,
    preloaded: tuple[dict[str, Analysis], dict[str, ReportRow]] | None = None,
) -> StudyOut:
    if preloaded is not None:
        latest, rep = preloaded[0].get(s.id), preloaded[1].get(s.id)
    else:
        latest, rep = _latest(db, s.id), reports.for_study(db, s.id)
    return StudyOut(
        id=s.id,
        state=s.state,
        flagged=s.flagged,
        uploaded_at=utc(s.uploaded_at),
        patient_pseudonym=s.patient_pseudonym,
        study_date=s.study_date,
        description=s.description,
        sequences=sorted(s.sequences),
        n_files=s.n_files,
        analysis=_analysis_out(latest) if with_status else None,
        report_id=rep.id if rep else None,
        report_status=rep.status if rep else None,
    )


def load_study(db: DbDep, study_id: str) -> Study:
    study = db.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"no study {study_id}")
    return study


def _can_read(user: CurrentUser) -> bool:
    from neuronav.security import permissions

    try:
        permissions.require(
            user.role,
            Permission.STUDY_READ,
            active=True,
            verified=user.verified,
            breakglass=user.breakglass,
            user_id=user.id,
        )
    except PermissionDenied:
        return False
    return True


@router.post("/api/studies", response_model=UploadOut, status_code=201)
def upload_study(
    user: Uploader,
    db: DbDep,
    settings: SettingsDep,
    store: StoreDep,
    files: Annotated[list[UploadFile], File(description="DICOM files and/or zip archives of ONE study")],
) -> UploadOut:
    """Upload one study (DICOM files or zip archives, multipart). It is validated whole, stored encrypted
    and its analysis is queued. The same study uploaded again returns the first upload."""
    received = receive_upload(
        db, store, settings, user_id=user.id, uploads=[Upload(f.filename or "upload", f.file) for f in files]
    )
    study = received.study
    analysis, queued = jobs.start_analysis(db, settings, study, user_id=user.id)
    audit_event(
        db,
        user,
        "study.upload",
        target_type="study",
        target_id=study.id,
        detail={"files": len(files), "created": received.created, "analysis": analysis.id},
    )
    db.commit()  # the worker reads the rows: commit before handing the job over
    if queued:
        jobs.dispatch(settings, analysis.id)
    return UploadOut(study=_study_out(db, study), created=received.created, analysis_queued=queued)


@router.get("/api/studies", response_model=StudyPage)
def list_studies(
    user: Annotated[CurrentUser, Depends(requires(Permission.STUDY_STATUS))],
    db: DbDep,
    state: Annotated[str | None, Query(description="received | queued | running | done | failed")] = None,
    flagged: Annotated[bool | None, Query(description="only studies with (or without) a detected tumour")] = None,
    q: Annotated[str | None, Query(max_length=100, description="search pseudonym or description")] = None,
    since: Annotated[datetime | None, Query(description="uploaded at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StudyPage:
    """The worklist: flagged studies (tumour detected) first, then newest first. Technicians see the
    status of their own uploads only."""
    query = select(Study)
    if user.role == "technician":
        query = query.where(Study.uploaded_by == user.id)
    if state:
        query = query.where(Study.state == state)
    if flagged is not None:
        query = query.where(Study.flagged == flagged)
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        query = query.where(or_(Study.patient_pseudonym.ilike(like), Study.description.ilike(like)))
    if since is not None:
        query = query.where(Study.uploaded_at >= since)
    total = db.scalar(query.with_only_columns(func.count(Study.id)).order_by(None)) or 0
    rows = db.scalars(query.order_by(Study.flagged.desc(), Study.uploaded_at.desc()).limit(limit).offset(offset)).all()
    ids = [s.id for s in rows]
    latest: dict[str, Analysis] = {}
    for a in db.scalars(select(Analysis).where(Analysis.study_id.in_(ids)).order_by(Analysis.created_at.desc())):
        latest.setdefault(a.study_id, a)  # one query for the page, not one per study
    reps: dict[str, ReportRow] = {}
    for r in db.scalars(select(ReportRow).where(ReportRow.study_id.in_(ids)).order_by(ReportRow.updated_at.desc())):
        reps.setdefault(r.study_id, r)
    audit_event(db, user, "study.list", detail={"count": len(rows), "offset": offset})
    return StudyPage(
        items=[_study_out(db, s, preloaded=(latest, reps)) for s in rows], total=total, limit=limit, offset=offset
    )


@router.get("/api/studies/{study_id}", response_model=StudyDetail | StudyOut)
def get_study(study_id: str, user: CurrentUserDep, db: DbDep, store: StoreDep) -> StudyOut:
    """A study. Readers (study:read) get the patient identity, decrypted and audited; a technician who
    uploaded it gets its processing status."""
    study = load_study(db, study_id)
    obj = StudyObject(study_id=study.id, uploaded_by=study.uploaded_by)
    if not _can_read(user):
        authorize_object(db, user, Permission.STUDY_STATUS, obj)
        return _study_out(db, study)
    authorize_object(db, user, Permission.STUDY_READ, obj)
    key = store.field_key()

    def dec(value: str | None, column: str) -> str | None:
        return decrypt_field(value, key, column) if value else None

    audit_event(db, user, "study.read", target_type="study", target_id=study.id)
    base = _study_out(db, study).model_dump()
    return StudyDetail(
        **base,
        patient_name=dec(study.patient_name_enc, "studies.patient_name"),
        patient_id=dec(study.patient_id_enc, "studies.patient_id"),
        patient_birth_date=dec(study.patient_birth_date_enc, "studies.patient_birth_date"),
    )


@router.post("/api/studies/{study_id}/analyses", response_model=AnalysisOut, status_code=202)
def start(study_id: str, user: Starter, db: DbDep, settings: SettingsDep, force: bool = False) -> AnalysisOut:
    """Start (or return the cached / running) analysis of a study; ``force`` runs it again."""
    study = load_study(db, study_id)
    analysis, queued = jobs.start_analysis(db, settings, study, user_id=user.id, force=force)
    audit_event(
        db,
        user,
        "analysis.start",
        target_type="study",
        target_id=study.id,
        detail={"analysis": analysis.id, "queued": queued, "force": force},
    )
    db.commit()
    if queued:
        jobs.dispatch(settings, analysis.id)
    out = _analysis_out(analysis)
    assert out is not None
    return out


@router.get("/api/analyses/{analysis_id}", response_model=AnalysisOut)
def analysis_status(analysis_id: str, user: CurrentUserDep, db: DbDep) -> AnalysisOut:
    """Status and progress of an analysis (its uploader, or anyone who may read analyses)."""
    a = db.get(Analysis, analysis_id)
    if a is None:
        raise NotFoundError(f"no analysis {analysis_id}")
    study = load_study(db, a.study_id)
    authorize_object(db, user, Permission.STUDY_STATUS, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by))
    out = _analysis_out(a)
    assert out is not None
    return out


@router.get("/api/analyses/{analysis_id}/result")
def analysis_result(
    analysis_id: str, user: Annotated[CurrentUser, Depends(requires(Permission.ANALYSIS_READ))], db: DbDep
) -> dict[str, Any]:
    """The findings summary of a finished analysis and its report id."""
    a = db.get(Analysis, analysis_id)
    if a is None:
        raise NotFoundError(f"no analysis {analysis_id}")
    if a.state != "done":
        raise InputError(f"analysis {analysis_id} is {a.state}, not done")
    audit_event(db, user, "analysis.read", target_type="study", target_id=a.study_id, detail={"analysis": a.id})
    return {
        "analysis": a.id,
        "study": a.study_id,
        "summary": a.result.get("summary"),
        "report_id": a.result.get("report_id"),
    }


@router.get("/api/studies/{study_id}/images/{image}")
def study_image(
    study_id: str,
    image: str,
    user: Annotated[CurrentUser, Depends(requires(Permission.STUDY_READ))],
    db: DbDep,
    settings: SettingsDep,
) -> FileResponse:
    """A NIfTI image of the latest finished analysis for the viewer: reference, segmentation or heatmap."""
    if image not in IMAGES:
        raise InputError(f"unknown image {image!r}; one of {', '.join(IMAGES)}")
    study = load_study(db, study_id)
    done = db.scalars(
        select(Analysis)
        .where(Analysis.study_id == study.id, Analysis.state == "done")
        .order_by(Analysis.created_at.desc())
    ).first()
    if done is None:
        raise NotFoundError(f"study {study_id} has no finished analysis")
    folder = private_tmp(settings, "img-")
    path = jobs.result_path(settings, db, done, IMAGES[image], folder)
    audit_event(db, user, "study.image", target_type="study", target_id=study.id, detail={"image": image})
    return FileResponse(
        path, media_type="application/gzip", filename=f"{image}.nii.gz", background=BackgroundTask(_remove, folder)
    )


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
