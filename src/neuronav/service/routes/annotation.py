"""Readers' measurements and annotations (``/api/studies/{id}/annotations``, ``/api/annotations/{id}``).

Saved on the server per user and shown to every reader of the study with its author. Values (length,
roi area and intensity) are computed from the stored image by :mod:`neuronav.workflow.annotations`.
The author may change the text or delete; a radiologist includes an annotation in the report draft
(``POST /api/annotations/{id}/include``): its one-line statement is appended to the radiologist's
comment through the report lifecycle, so it is recorded as an edit and exported in every format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from neuronav.db.models import AnnotationRow, UserRow
from neuronav.errors import LifecycleError
from neuronav.report import lifecycle
from neuronav.security.permissions import Permission, StudyObject
from neuronav.service.deps import (
    CurrentUser,
    DbDep,
    NotFoundError,
    SettingsDep,
    StoreDep,
    audit_event,
    authorize_object,
    refusal,
    requires,
    utc,
)
from neuronav.service.routes.studies import image_file, latest_done, load_study
from neuronav.volume import load_nifti
from neuronav.workflow import annotations as logic
from neuronav.workflow import jobs, reports
from neuronav.workflow.uploads import private_tmp

router = APIRouter(tags=["annotations"])

Reader = Annotated[CurrentUser, Depends(requires(Permission.ANNOTATION_READ))]
Author = Annotated[CurrentUser, Depends(requires(Permission.ANNOTATION_CREATE))]
Editor = Annotated[CurrentUser, Depends(requires(Permission.REPORT_EDIT))]


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["distance", "roi", "text"]
    points_mm: list[list[float]] = Field(
        description="Scanner (RAS) millimetres: 2 points for a distance, 2 opposite corners for an roi, "
        "1 point (or 2 corners of a region) for a text annotation.",
        max_length=2,
    )
    plane: Literal["axial", "coronal", "sagittal"] | None = Field(default=None, description="Required for an roi.")
    image: str | None = Field(
        default=None, max_length=64, description="The image it was drawn on (reference, sequence-T1c, …)."
    )
    text: str | None = Field(default=None, max_length=logic.MAX_TEXT)


class AnnotationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=logic.MAX_TEXT)


class AnnotationOut(BaseModel):
    id: str
    study_id: str
    kind: str
    author_id: str
    author: str
    author_role: str
    points_mm: list[list[float]]
    plane: str | None
    image: str | None
    values: dict[str, float | int]
    text: str | None
    include_in_report: bool
    created_at: datetime | None


def _out(a: AnnotationRow, author: UserRow | None) -> AnnotationOut:
    g: dict[str, Any] = a.geometry or {}
    return AnnotationOut(
        id=a.id,
        study_id=a.study_id,
        kind=a.kind,
        author_id=a.author_id,
        author=author.display_name if author else "(removed user)",
        author_role=author.role if author else "",
        points_mm=g.get("points_mm", []),
        plane=g.get("plane"),
        image=g.get("image"),
        values=g.get("values", {}),
        text=a.text,
        include_in_report=a.include_in_report,
        created_at=utc(a.created_at),
    )


def _load(db: DbDep, annotation_id: str) -> AnnotationRow:
    a = db.get(AnnotationRow, annotation_id)
    if a is None:
        raise NotFoundError(f"no annotation {annotation_id}")
    return a


def _object(db: DbDep, study_id: str) -> StudyObject:
    study = load_study(db, study_id)
    return StudyObject(study_id=study.id, uploaded_by=study.uploaded_by)


@router.get("/api/studies/{study_id}/annotations", response_model=list[AnnotationOut])
def list_annotations(study_id: str, user: Reader, db: DbDep) -> list[AnnotationOut]:
    """Every reader's annotations on the study, oldest first, each with its author."""
    authorize_object(db, user, Permission.ANNOTATION_READ, _object(db, study_id))
    rows = db.scalars(
        select(AnnotationRow)
        .where(AnnotationRow.study_id == study_id)
        .order_by(AnnotationRow.created_at, AnnotationRow.id)
    ).all()
    authors = {u.id: u for u in db.scalars(select(UserRow).where(UserRow.id.in_({a.author_id for a in rows})))}
    audit_event(db, user, "annotation.list", target_type="study", target_id=study_id, detail={"count": len(rows)})
    return [_out(a, authors.get(a.author_id)) for a in rows]


@router.post("/api/studies/{study_id}/annotations", response_model=AnnotationOut, status_code=201)
def create_annotation(
    study_id: str, body: AnnotationIn, user: Author, db: DbDep, settings: SettingsDep
) -> AnnotationOut:
    """Save a measurement or annotation; its values are computed here from the stored image."""
    authorize_object(db, user, Permission.ANNOTATION_CREATE, _object(db, study_id))
    geometry = logic.parse(body.kind, body.points_mm, body.plane, body.image, body.text)
    values: dict[str, float | int] = {}
    if geometry.kind == "distance":
        values = {"length_mm": round(logic.distance_mm(geometry), 2)}
    elif geometry.kind == "roi":
        study = load_study(db, study_id)
        done = latest_done(db, study)
        file_name = image_file(done, geometry.image or "")
        folder = private_tmp(settings, "roi-")
        try:
            volume = load_nifti(jobs.result_path(settings, db, done, file_name, folder))
            values = logic.roi_stats(geometry, volume)
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    a = AnnotationRow(
        study_id=study_id,
        author_id=user.id,
        kind=geometry.kind,
        geometry={
            "points_mm": [list(p) for p in geometry.points_mm],
            "plane": geometry.plane,
            "image": geometry.image,
            "values": values,
        },
        text=(body.text or "").strip() or None,
    )
    db.add(a)
    db.flush()
    audit_event(
        db,
        user,
        "annotation.create",
        target_type="study",
        target_id=study_id,
        detail={"annotation": a.id, "kind": a.kind},
    )
    author = db.get(UserRow, user.id)
    return _out(a, author)


def _own(db: DbDep, user: CurrentUser, annotation_id: str) -> AnnotationRow:
    a = _load(db, annotation_id)
    authorize_object(db, user, Permission.ANNOTATION_CREATE, _object(db, a.study_id))
    if a.author_id != user.id:
        raise refusal(
            db,
            user,
            "only its author can change or delete an annotation",
            study_id=a.study_id,
            detail={"annotation": a.id, "reason": "not the author"},
        )
    return a


@router.patch("/api/annotations/{annotation_id}", response_model=AnnotationOut)
def update_annotation(annotation_id: str, body: AnnotationPatch, user: Author, db: DbDep) -> AnnotationOut:
    """Change the text of your annotation."""
    a = _own(db, user, annotation_id)
    if a.kind == "text" and not (body.text or "").strip():
        from neuronav.errors import InputError

        raise InputError("a text annotation needs its text")
    a.text = (body.text or "").strip() or None
    audit_event(db, user, "annotation.update", target_type="study", target_id=a.study_id, detail={"annotation": a.id})
    return _out(a, db.get(UserRow, a.author_id))


@router.delete("/api/annotations/{annotation_id}", status_code=204)
def delete_annotation(annotation_id: str, user: Author, db: DbDep) -> None:
    """Delete your annotation (one already included in a report stays in the report's history)."""
    a = _own(db, user, annotation_id)
    study_id = a.study_id
    db.delete(a)
    audit_event(
        db, user, "annotation.delete", target_type="study", target_id=study_id, detail={"annotation": annotation_id}
    )


@router.post("/api/annotations/{annotation_id}/include", response_model=AnnotationOut)
def include_annotation(annotation_id: str, user: Editor, db: DbDep, store: StoreDep) -> AnnotationOut:
    """Include an annotation (any author's) in the study's report draft: its statement is appended to
    the radiologist's comment as a recorded edit. A signed report must be amended first (409)."""
    a = _load(db, annotation_id)
    authorize_object(db, user, Permission.REPORT_EDIT, _object(db, a.study_id))
    if a.include_in_report:
        raise LifecycleError(f"annotation {a.id} is already in the report")
    row = reports.for_study(db, a.study_id)
    if row is None:
        raise NotFoundError(f"study {a.study_id} has no report yet")
    report = reports.load(db, store, row.id)
    author = db.get(UserRow, a.author_id)
    sentence = logic.report_sentence(
        a.kind, a.geometry or {}, (a.geometry or {}).get("values", {}), a.text, author.display_name if author else "?"
    )
    comment = report.narrative.radiologist_comment.rstrip()
    new_comment = f"{comment}\n{sentence}" if comment else sentence
    edited = lifecycle.edit(
        report, {"/narrative/radiologist_comment": new_comment}, who=user.display_name, role=user.role
    )
    reports.save(db, store, edited, study_id=row.study_id, analysis_id=row.analysis_id, user_id=user.id)
    a.include_in_report = True
    audit_event(
        db,
        user,
        "report.edit",
        target_type="report",
        target_id=row.id,
        detail={"paths": ["/narrative/radiologist_comment"], "annotation": a.id, "version": edited.version},
    )
    return _out(a, author)
