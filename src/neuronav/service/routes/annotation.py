"""Readers' measurements and annotations (``/api/studies/{id}/annotations``, ``/api/annotations/{id}``).

Saved on the server per user and shown to every reader of the study with its author. Values (length,
roi area and intensity) are computed from the stored image by :mod:`neuronav.workflow.annotations`.
The author may change the text, move it (its values computed again) or delete
it; a radiologist includes an annotation in the report draft
(``POST /api/annotations/{id}/include``): its one-line statement is appended to the radiologist's
comment through the report lifecycle, so it is recorded as an edit and exported in every format.

Thin: storage, the author rule and the audit events are :mod:`neuronav.workflow.annotations`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DbDep, SettingsDep, StoreDep, requires
from neuronav.workflow import annotations as logic
from neuronav.workflow.annotations import AnnotationOut

router = APIRouter(tags=["annotations"], route_class=AuthFirstRoute)

Reader = Annotated[Actor, Depends(requires(Permission.ANNOTATION_READ))]
Author = Annotated[Actor, Depends(requires(Permission.ANNOTATION_CREATE))]
Editor = Annotated[Actor, Depends(requires(Permission.REPORT_EDIT))]


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["distance", "roi", "ellipse", "bidimensional", "text"]
    points_mm: list[list[float]] = Field(
        description="Scanner (RAS) millimetres: 2 points for a distance, 2 opposite corners of the box for a "
        "rectangle (roi) or an ellipse, 4 for a bidimensional measurement (the longest diameter, then its "
        "perpendicular), 1 point (or 2 corners of a region) for a text annotation.",
        max_length=4,
    )
    plane: Literal["axial", "coronal", "sagittal"] | None = Field(
        default=None, description="Required for a rectangle or an ellipse; kept for a distance or bidimensional."
    )
    image: str | None = Field(
        default=None, max_length=64, description="The image it was drawn on (reference, sequence-T1c, …)."
    )
    text: str | None = Field(default=None, max_length=logic.MAX_TEXT)


class AnnotationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=logic.MAX_TEXT)
    points_mm: list[list[float]] | None = Field(
        default=None,
        max_length=4,
        description="Move it: its new points (as many as it has), on the same plane; its values are computed "
        "again from the image. Refused (409) once it is included in the report.",
    )


@router.get("/api/studies/{study_id}/annotations", response_model=list[AnnotationOut])
def list_annotations(study_id: str, user: Reader, db: DbDep) -> list[AnnotationOut]:
    """Every reader's annotations on the study, oldest first, each with its author."""
    return logic.list_for_study(db, user, study_id)


@router.post("/api/studies/{study_id}/annotations", response_model=AnnotationOut, status_code=201)
def create_annotation(
    study_id: str, body: AnnotationIn, user: Author, db: DbDep, settings: SettingsDep
) -> AnnotationOut:
    """Save a measurement or annotation; its values are computed here from the stored image."""
    return logic.create(
        db,
        settings,
        user,
        study_id,
        kind=body.kind,
        points_mm=body.points_mm,
        plane=body.plane,
        image=body.image,
        text=body.text,
    )


@router.patch("/api/annotations/{annotation_id}", response_model=AnnotationOut)
def update_annotation(
    annotation_id: str, body: AnnotationPatch, user: Author, db: DbDep, settings: SettingsDep
) -> AnnotationOut:
    """Change the text of your annotation, or move it (``points_mm``: its values are computed again)."""
    if body.points_mm is None:
        return logic.update_text(db, user, annotation_id, body.text)
    out = logic.move(db, settings, user, annotation_id, body.points_mm)
    if "text" in body.model_fields_set:
        out = logic.update_text(db, user, annotation_id, body.text)
    return out


@router.delete("/api/annotations/{annotation_id}", status_code=204)
def delete_annotation(annotation_id: str, user: Author, db: DbDep) -> None:
    """Delete your annotation (one already included in a report stays in the report's history)."""
    logic.delete(db, user, annotation_id)


@router.post("/api/annotations/{annotation_id}/include", response_model=AnnotationOut)
def include_annotation(annotation_id: str, user: Editor, db: DbDep, store: StoreDep) -> AnnotationOut:
    """Include an annotation (any author's) in the study's report draft: its statement is appended to
    the radiologist's comment as a recorded edit. A signed report must be amended first (409)."""
    return logic.include_in_report(db, store, user, annotation_id)


__all__ = ["router"]
