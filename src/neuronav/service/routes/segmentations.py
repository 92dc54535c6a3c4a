"""Segmentation versions (``/api/studies/{id}/segmentations``): a radiologist's corrections of the AI's
label map (lesions accepted or rejected, brush and eraser in the viewer), each saved as a new version from
which the report is measured again; the AI's original is kept (image ``segmentation-ai``).

Thin: the checks, storage, measurements, report rewrite and audit are :mod:`neuronav.workflow.segmentations`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from neuronav.errors import InputError
from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DbDep, SettingsDep, StoreDep, requires
from neuronav.workflow import segmentations
from neuronav.workflow.segmentations import SegmentationVersionsOut

router = APIRouter(tags=["segmentations"], route_class=AuthFirstRoute)

Editor = Annotated[Actor, Depends(requires(Permission.REPORT_EDIT))]
ImageViewer = Annotated[Actor, Depends(requires(Permission.STUDY_IMAGES))]


class SegmentationIn(BaseModel):
    """A correction of the segmentation: a corrected label map, lesion decisions, or both."""

    model_config = ConfigDict(extra="forbid")

    parent_version: int = Field(ge=1, le=10_000, description="The version edited (the current one).")
    labels_nifti: str | None = Field(
        default=None,
        max_length=1_000_000,
        description="The corrected label map, base64 of a NIfTI-1 file (gzipped or not) on the grid of the "
        "segmentation (the reference image): same shape and affine, labels 0 background, 1 necrotic / "
        "non-enhancing core, 2 oedema, 3 enhancing tumour.",
    )
    accepted_lesions: list[int] = Field(
        default_factory=list, max_length=100, description="Lesion numbers (of the edited version) confirmed."
    )
    rejected_lesions: list[int] = Field(
        default_factory=list,
        max_length=100,
        description="Lesion numbers (of the edited version) rejected: their voxels (core and oedema) are removed.",
    )
    note: str = Field(default="", max_length=500)


@router.get("/api/studies/{study_id}/segmentations", response_model=SegmentationVersionsOut)
def list_segmentations(study_id: str, user: ImageViewer, db: DbDep) -> SegmentationVersionsOut:
    """The versions of the study's segmentation: 1 the AI's, then each correction with its author, time,
    parent version and what changed; ``current_version`` is what the report is measured from."""
    return segmentations.list_versions(db, user, study_id)


@router.post("/api/studies/{study_id}/segmentations", response_model=SegmentationVersionsOut, status_code=201)
def correct_segmentation(
    study_id: str, body: SegmentationIn, user: Editor, db: DbDep, settings: SettingsDep, store: StoreDep
) -> SegmentationVersionsOut:
    """Save a correction as a new segmentation version (radiologists): volumes, lesions and every output
    of the report draft are measured again from it; the AI's original is kept. 409 when another version
    was saved meanwhile or the report is signed (amend it first); 400 naming the problem when the label
    map is not on the segmentation's grid or holds other labels."""
    data: bytes | None = None
    if body.labels_nifti is not None:
        try:
            data = base64.b64decode(body.labels_nifti, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError("labels_nifti is not base64") from exc
    return segmentations.correct(
        db,
        store,
        settings,
        user,
        study_id,
        parent_version=body.parent_version,
        labels_nifti=data,
        accepted_lesions=body.accepted_lesions,
        rejected_lesions=body.rejected_lesions,
        note=body.note,
    )


__all__ = ["router"]
