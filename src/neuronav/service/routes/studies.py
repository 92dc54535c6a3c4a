"""Studies (``/api/studies``) and analyses (``/api/analyses``): upload, list, read, status, start, result.

Thin: each route checks the permission (and the object rule), calls :mod:`neuronav.workflow`, and
audits every read of patient data. A technician sees only the processing status of studies they
uploaded; reading patient identity needs ``study:read`` and is audited.

``GET /api/studies/{id}/export/deidentified`` (``study:export_deidentified``: radiologists,
neurologists, an administrator through a break-glass) streams the study's DICOM de-identified
(:mod:`neuronav.workflow.exports`, PS3.15 Basic Profile; ``retain_dates`` and
``retain_patient_characteristics`` switch the two options) as a zip; the temporary folder is removed
once it is sent, and the audit event holds the options, counts and the zip's SHA-256, no patient data.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    FromClause,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
    true,
)
from starlette.background import BackgroundTask

from neuronav.db.models import AnalysisRow, ReportRow, StudyRow
from neuronav.errors import InputError
from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import Grant, Permission, StudyObject
from neuronav.service.deps import (
    CurrentUser,
    CurrentUserDep,
    DbDep,
    NotFoundError,
    SettingsDep,
    StoreDep,
    UnsupportedMediaTypeError,
    audit_event,
    authorize_object,
    refusal,
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


def _analysis_out(a: AnalysisRow | None) -> AnalysisOut | None:
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


def _latest(db: DbDep, study_id: str) -> AnalysisRow | None:
    return db.scalars(
        select(AnalysisRow).where(AnalysisRow.study_id == study_id).order_by(AnalysisRow.created_at.desc())
    ).first()


def _study_out(db: DbDep, s: StudyRow, *, with_status: bool = True) -> StudyOut:
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


def load_study(db: DbDep, study_id: str) -> StudyRow:
    study = db.get(StudyRow, study_id)
    if study is None:
        raise NotFoundError(f"no study {study_id}")
    return study


def _grant(user: CurrentUser, permission: Permission) -> Grant | None:
    """How ``user``'s role (or open break-glass) grants ``permission``; None when it does not (no object
    rules, no audit)."""
    from neuronav.security import permissions

    try:
        return permissions.require(
            user.role, permission, active=True, verified=user.verified, breakglass=user.breakglass, user_id=user.id
        )
    except PermissionDenied:
        return None


def _allowed(user: CurrentUser, permission: Permission) -> bool:
    return _grant(user, permission) is not None


def _can_read(user: CurrentUser) -> bool:
    return _allowed(user, Permission.STUDY_READ)


def breakglass_study(user: CurrentUser) -> str | None:
    """The one study ``user`` reaches through a break-glass limited to it (None: no such limit applies)."""
    grant = _grant(user, Permission.STUDY_STATUS)
    bg = grant.breakglass if grant is not None and grant.via == "breakglass" else None
    return bg.study_id if bg is not None else None


AI_IMAGES = ("segmentation", "heatmap")


def ai_results_open(user: CurrentUser, report_status: str | None) -> bool:
    """The AI results of a study (lesions, segmentation, heatmap) are open to readers of analyses, and to
    readers of final reports (neurologists) once the report is signed, like the report itself."""
    signed = report_status in ("final", "amended")
    return _allowed(user, Permission.ANALYSIS_READ) or (signed and _allowed(user, Permission.REPORT_READ_FINAL))


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


def _search_text(dialect: str) -> ColumnElement[str]:
    """What the worklist search matches: ``lower(pseudonym ␟ description)`` (U+001F between the two, so
    a search term, which never holds it, cannot match across them). On PostgreSQL this is the
    expression of the trigram index ``ix_studies_search_trgm`` (migration 0005), written with literals
    only: the planner uses the index only for the very same expression."""
    empty: ColumnElement[str] = literal_column("''")
    separator = func.chr(literal_column("31")) if dialect == "postgresql" else func.char(literal_column("31"))
    pseudonym, description = (
        func.coalesce(StudyRow.patient_pseudonym, empty),
        func.coalesce(StudyRow.description, empty),
    )
    text = pseudonym.concat(separator).concat(description)
    return func.lower(text, type_=String)


def _worklist_filters(
    dialect: str, technician: bool, state: bool, flagged: bool, search: bool, since: bool, one_study: bool
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a worklist query, with bound parameters of the same names."""
    where: list[ColumnElement[bool]] = []
    if one_study:  # a break-glass limited to one study
        where.append(StudyRow.id == bindparam("only_study", type_=String))
    if technician:
        where.append(StudyRow.uploaded_by == bindparam("uploaded_by", type_=String))
    if state:
        where.append(StudyRow.state == bindparam("state", type_=String))
    if flagged:
        where.append(StudyRow.flagged == bindparam("flagged", type_=Boolean))
    if search:
        where.append(_search_text(dialect).like(func.lower(bindparam("pattern", type_=String)), escape="/"))
    if since:
        where.append(StudyRow.uploaded_at >= bindparam("since", type_=DateTime(timezone=True)))
    return where


@functools.lru_cache(maxsize=256)
def _worklist_query(
    dialect: str, technician: bool, state: bool, flagged: bool, search: bool, since: bool, one_study: bool
) -> Select[Any]:
    """One statement for a worklist page: the page of studies, the latest analysis and report of each,
    and the total number of matching studies (one round trip instead of four). Built once per dialect
    and set of filters (parameters: the filters', ``limit`` and ``offset``)."""
    where = _worklist_filters(dialect, technician, state, flagged, search, since, one_study)
    offset: ColumnElement[int] = bindparam("offset", type_=Integer)
    if dialect == "postgresql":
        # the value hidden in a subquery: the planner, which has no idea of the table's size before its
        # first ANALYZE, would otherwise sort every study for a deep page rather than walk the worklist
        # index (20 ms against 4 with 10,000 studies)
        offset = select(offset).scalar_subquery()
    columns: list[Any] = [
        StudyRow.id,
        StudyRow.state,
        StudyRow.flagged,
        StudyRow.uploaded_at,
        StudyRow.patient_pseudonym,
        StudyRow.study_date,
        StudyRow.description,
        StudyRow.sequences,
        StudyRow.n_files,
    ]
    if search:  # one scan of the matches for the page and the total: rechecking each match is the cost
        columns.append(func.count().over().label("total"))
    page = (
        select(*columns)
        .where(*where)
        .order_by(StudyRow.flagged.desc(), StudyRow.uploaded_at.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(offset)
        .subquery("page")
    )
    extra: list[ColumnElement[Any]] = []
    if not search:  # the total from the index-ordered walk would need every row: counted apart
        extra.append(select(func.count()).select_from(StudyRow).where(*where).scalar_subquery().label("total"))
    a_cols = (
        AnalysisRow.id,
        AnalysisRow.study_id,
        AnalysisRow.state,
        AnalysisRow.progress,
        AnalysisRow.stage,
        AnalysisRow.error,
        AnalysisRow.attempts,
        AnalysisRow.created_at,
        AnalysisRow.finished_at,
        AnalysisRow.seconds,
        AnalysisRow.result["report_id"].as_string().label("report_id"),
    )
    latest_a = select(*a_cols).where(AnalysisRow.study_id == page.c.id).order_by(AnalysisRow.created_at.desc()).limit(1)
    latest_r = (
        select(ReportRow.id, ReportRow.status)
        .where(ReportRow.study_id == page.c.id)
        .order_by(ReportRow.updated_at.desc())
        .limit(1)
    )
    a: FromClause
    r: FromClause
    if dialect == "postgresql":  # LATERAL: an index lookup per page row
        a, r = latest_a.lateral("a"), latest_r.lateral("r")
        joined = page.outerjoin(a, true()).outerjoin(r, true())
    else:  # SQLite has no LATERAL; it runs the correlated subquery per page row, then a primary-key lookup
        a = select(*a_cols).subquery("a")
        r = select(ReportRow.id, ReportRow.status).subquery("r")
        a_id = latest_a.with_only_columns(AnalysisRow.id).scalar_subquery()
        r_id = latest_r.with_only_columns(ReportRow.id).scalar_subquery()
        joined = page.outerjoin(a, a.c.id == a_id).outerjoin(r, r.c.id == r_id)
    return (
        select(
            page,
            *(a.c[str(c.key)].label(f"a_{c.key}") for c in latest_a.selected_columns),
            r.c.id.label("r_id"),
            r.c.status.label("r_status"),
            *extra,
        )
        .select_from(joined)
        .order_by(page.c.flagged.desc(), page.c.uploaded_at.desc())
    )


@functools.lru_cache(maxsize=256)
def _worklist_count(
    dialect: str, technician: bool, state: bool, flagged: bool, search: bool, since: bool, one_study: bool
) -> Select[Any]:
    where = _worklist_filters(dialect, technician, state, flagged, search, since, one_study)
    return select(func.count()).select_from(StudyRow).where(*where)


def _worklist_item(row: Row[Any]) -> StudyOut:
    m = row._mapping
    analysis = None
    if m["a_id"] is not None:
        analysis = AnalysisOut(
            id=m["a_id"],
            study_id=m["a_study_id"],
            state=m["a_state"],
            progress=m["a_progress"],
            stage=m["a_stage"],
            error=m["a_error"],
            attempts=m["a_attempts"],
            created_at=utc(m["a_created_at"]),
            finished_at=utc(m["a_finished_at"]),
            seconds=m["a_seconds"],
            report_id=m["a_report_id"],
        )
    return StudyOut(
        id=m["id"],
        state=m["state"],
        flagged=m["flagged"],
        uploaded_at=utc(m["uploaded_at"]),
        patient_pseudonym=m["patient_pseudonym"],
        study_date=m["study_date"],
        description=m["description"],
        sequences=sorted(m["sequences"] or ()),
        n_files=m["n_files"],
        analysis=analysis,
        report_id=m["r_id"],
        report_status=m["r_status"],
    )


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
    status of their own uploads only. ``q`` matches a substring of the pseudonym or the description,
    ignoring case."""
    term = "".join(ch for ch in q or "" if ch.isprintable() and ch not in "%_")  # no wildcards, no U+001F
    params: dict[str, Any] = {
        "uploaded_by": user.id,
        "state": state,
        "flagged": flagged,
        "pattern": "%" + term.replace("/", "//") + "%",  # "/" escapes itself (ESCAPE '/')
        "since": since,
        "limit": limit,
        "offset": offset,
        "only_study": breakglass_study(user),
    }
    shape = (
        db.get_bind().dialect.name,
        user.role == "technician",
        bool(state),
        flagged is not None,
        bool(term),
        since is not None,
        params["only_study"] is not None,
    )
    rows = db.execute(_worklist_query(*shape), params).all()
    if rows:
        total = int(rows[0].total)
    elif offset:  # past the end: the page is empty, the total is not
        total = int(db.scalar(_worklist_count(*shape), params) or 0)
    else:
        total = 0
    audit_event(db, user, "study.list", detail={"count": len(rows), "offset": offset})
    return StudyPage(items=[_worklist_item(row) for row in rows], total=total, limit=limit, offset=offset)


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
    authorize_object(db, user, Permission.ANALYSIS_START, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by))
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
    a = db.get(AnalysisRow, analysis_id)
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
    a = db.get(AnalysisRow, analysis_id)
    if a is None:
        raise NotFoundError(f"no analysis {analysis_id}")
    study = load_study(db, a.study_id)
    authorize_object(db, user, Permission.ANALYSIS_READ, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by))
    if a.state != "done":
        raise InputError(f"analysis {analysis_id} is {a.state}, not done")
    audit_event(db, user, "analysis.read", target_type="study", target_id=a.study_id, detail={"analysis": a.id})
    return {
        "analysis": a.id,
        "study": a.study_id,
        "summary": a.result.get("summary"),
        "report_id": a.result.get("report_id"),
    }


def latest_done(db: DbDep, study: StudyRow) -> AnalysisRow:
    """The newest finished analysis of ``study`` (404 when there is none)."""
    done = db.scalars(
        select(AnalysisRow)
        .where(AnalysisRow.study_id == study.id, AnalysisRow.state == "done")
        .order_by(AnalysisRow.created_at.desc())
    ).first()
    if done is None:
        raise NotFoundError(f"study {study.id} has no finished analysis")
    return done


def image_file(analysis: AnalysisRow, image: str) -> str:
    """The stored file behind a viewer image name: reference, segmentation, heatmap or sequence-<NAME>."""
    if image in IMAGES:
        return IMAGES[image]
    stored = (analysis.result or {}).get("objects") or {}
    name = f"{image}.nii.gz"
    if image.startswith("sequence-") and name in stored:
        return name
    have = [*IMAGES, *sorted(n.removesuffix(".nii.gz") for n in stored if n.startswith("sequence-"))]
    raise InputError(f"unknown image {image!r}; this study has {', '.join(have)}")


@router.get("/api/studies/{study_id}/images/{image}")
def study_image(
    study_id: str,
    image: str,
    user: Annotated[CurrentUser, Depends(requires(Permission.STUDY_READ))],
    db: DbDep,
    settings: SettingsDep,
) -> FileResponse:
    """A NIfTI image of the latest finished analysis for the viewer: ``reference``, ``segmentation``,
    ``heatmap`` or ``sequence-<NAME>`` (each analysed sequence as acquired, in scanner space)."""
    study = load_study(db, study_id)
    authorize_object(db, user, Permission.STUDY_READ, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by))
    done = latest_done(db, study)
    file_name = image_file(done, image)
    if image in AI_IMAGES:
        rep = reports.for_study(db, study.id)
        if not ai_results_open(user, rep.status if rep else None):
            raise refusal(
                db,
                user,
                f"the {image} is an AI result: it opens to you once the report is signed",
                study_id=study.id,
                detail={"image": image},
            )
    folder = private_tmp(settings, "img-")
    try:
        path = jobs.result_path(settings, db, done, file_name, folder)
    except BaseException:
        _remove(folder)
        raise
    audit_event(db, user, "study.image", target_type="study", target_id=study.id, detail={"image": image})
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"{image}.nii.gz",
        headers={"Cache-Control": "private, no-store"},
        background=BackgroundTask(_remove, folder),
    )


class LesionOut(BaseModel):
    index: int
    volume_ml: float
    centroid_ras_mm: tuple[float, float, float]
    max_diameter_mm: float
    location: str


class PriorOut(BaseModel):
    study_id: str
    study_date: str | None
    uploaded_at: datetime | None
    description: str | None


class ViewerOut(BaseModel):
    study_id: str
    analysis_id: str
    images: list[str]
    sequences: list[str]
    reference_sequence: str | None
    lesions: list[LesionOut] | None  # None: the AI results are not open to this reader yet
    report_id: str | None
    report_status: str | None
    priors: list[PriorOut]


def priors_of(db: DbDep, study: StudyRow) -> list[StudyRow]:
    """Earlier examinations of the same patient (same pseudonym) with a finished analysis, newest first:
    earlier by study date when both have one (a historical study may be uploaded later), else by upload."""
    if not study.patient_pseudonym:
        return []
    rows = db.scalars(
        select(StudyRow)
        .where(StudyRow.patient_pseudonym == study.patient_pseudonym, StudyRow.id != study.id, StudyRow.state == "done")
        .order_by(StudyRow.study_date.desc(), StudyRow.uploaded_at.desc())
    ).all()

    def earlier(other: StudyRow) -> bool:
        if other.study_date and study.study_date:
            return other.study_date < study.study_date
        return utc(other.uploaded_at) < utc(study.uploaded_at)  # type: ignore[operator]

    return [s for s in rows if earlier(s)]


@router.get("/api/studies/{study_id}/viewer", response_model=ViewerOut)
def viewer_manifest(
    study_id: str,
    user: Annotated[CurrentUser, Depends(requires(Permission.STUDY_READ))],
    db: DbDep,
    settings: SettingsDep,
) -> ViewerOut:
    """What the viewer loads for a study: its images, the lesion centroids (for readers of AI results, or
    once the report is signed), the report and the prior studies of the same patient."""
    from neuronav.findings import Findings

    study = load_study(db, study_id)
    authorize_object(db, user, Permission.STUDY_READ, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by))
    done = latest_done(db, study)
    stored = (done.result or {}).get("objects") or {}
    sequences = sorted(n.removeprefix("sequence-").removesuffix(".nii.gz") for n in stored if n.startswith("sequence-"))
    rep = reports.for_study(db, study.id)
    lesions: list[LesionOut] | None = None
    folder = private_tmp(settings, "viewer-")
    try:
        findings = Findings.model_validate_json(
            jobs.result_path(settings, db, done, "findings.json", folder).read_text()
        )
    finally:
        _remove(folder)
    reference = findings.study.reference_sequence
    ai_open = ai_results_open(user, rep.status if rep else None)
    if ai_open:
        lesions = [
            LesionOut(
                index=les.index,
                volume_ml=les.volume_ml,
                centroid_ras_mm=(les.centroid_ras_mm[0], les.centroid_ras_mm[1], les.centroid_ras_mm[2]),
                max_diameter_mm=les.max_diameter_mm,
                location=f"{les.location.hemisphere} {les.location.lobe} ({les.location.region})",
            )
            for les in findings.segmentation.lesions
        ]
    audit_event(db, user, "study.viewer", target_type="study", target_id=study.id, detail={"analysis": done.id})
    return ViewerOut(
        study_id=study.id,
        analysis_id=done.id,
        images=[*(i for i in IMAGES if ai_open or i not in AI_IMAGES), *(f"sequence-{n}" for n in sequences)],
        sequences=sequences,
        reference_sequence=reference,
        lesions=lesions,
        report_id=rep.id if rep else None,
        report_status=rep.status if rep else None,
        priors=[
            PriorOut(study_id=p.id, study_date=p.study_date, uploaded_at=utc(p.uploaded_at), description=p.description)
            for p in (priors_of(db, study) if breakglass_study(user) is None else [])  # the grant opens one study
        ],
    )


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


@router.get("/api/studies/{study_id}/export/deidentified")
def export_deidentified(
    study_id: str,
    user: Annotated[CurrentUser, Depends(requires(Permission.STUDY_EXPORT_DEIDENTIFIED))],
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
    import shutil

    from neuronav.workflow.exports import deidentified_zip

    study = load_study(db, study_id)
    authorize_object(
        db, user, Permission.STUDY_EXPORT_DEIDENTIFIED, StudyObject(study_id=study.id, uploaded_by=study.uploaded_by)
    )
    export = deidentified_zip(
        db,
        store,
        settings,
        study.id,
        retain_dates=retain_dates,
        retain_patient_characteristics=retain_patient_characteristics,
    )
    summary = export.summary
    audit_event(
        db,
        user,
        "study.export_deidentified",
        target_type="study",
        target_id=study.id,
        detail={
            "retain_dates": retain_dates,
            "retain_patient_characteristics": retain_patient_characteristics,
            "files": summary["written"],
            "series": summary["series"],
            "refused": summary["refused"],
            "skipped": summary["skipped"],
            "bytes": export.size_bytes,
            "sha256": export.sha256,
        },
    )
    return FileResponse(
        export.zip_path,
        media_type="application/zip",
        filename=f"{study.id}-deidentified.zip",
        background=BackgroundTask(shutil.rmtree, export.folder, True),
    )
