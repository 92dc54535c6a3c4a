"""The viewer's manifest of a study: what a viewer (the web UI, or any other) loads for it.

Its images (each analysed sequence as acquired; the AI images only to readers of AI results), the
lesions (for readers of AI results, or once the report is signed; located in the same words as the
report, :func:`neuronav.report.build.location_text`), the report and the prior studies of the same
patient (same pseudonym and issuer, finished analysis, earlier examination; the one the analysis compared
with first, :mod:`neuronav.workflow.priors`). A technician (``study:images``, own
uploads) gets the acquired images only, to check their quality: no AI results, no report, no priors.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import StudyRow
from neuronav.findings import Findings
from neuronav.report.build import location_text
from neuronav.security.access import AI_IMAGES, Actor, ai_results_open, allowed, breakglass_study
from neuronav.security.permissions import Permission
from neuronav.workflow import jobs, reports
from neuronav.workflow.access import audit_event, authorize_object
from neuronav.workflow.segmentations import SegmentationVersionsOut, segmentation_versions
from neuronav.workflow.studies import IMAGES, latest_done, load_study, study_object
from neuronav.workflow.uploads import private_tmp, remove_tmp


class LesionOut(BaseModel):
    """One lesion as the report counts it (a tumour core with its oedema; diameters are the core's)."""

    index: int
    volume_ml: float  # the lesion with its oedema
    centroid_ras_mm: tuple[float, float, float]
    max_diameter_mm: float
    location: str
    core_ml: float | None = None
    oedema_ml: float | None = None
    max_axial_diameter_mm: float | None = None
    perpendicular_axial_diameter_mm: float | None = None


def lesion_list(findings: Findings) -> list[LesionOut]:
    """The lesions of ``findings`` as the viewer lists them: the same list, in the same order and words,
    as every report output."""
    return [
        LesionOut(
            index=les.index,
            volume_ml=les.volume_ml,
            centroid_ras_mm=(les.centroid_ras_mm[0], les.centroid_ras_mm[1], les.centroid_ras_mm[2]),
            max_diameter_mm=les.max_diameter_mm,
            location=location_text(les),
            core_ml=les.core_ml,
            oedema_ml=les.oedema_ml,
            max_axial_diameter_mm=les.max_axial_diameter_mm,
            perpendicular_axial_diameter_mm=les.perpendicular_axial_diameter_mm,
        )
        for les in findings.segmentation.lesions
    ]


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
    priors: list[PriorOut]  # the first: the prior the analysis compared with, when it did
    compared_prior_id: str | None = None  # the prior the analysis's change versus prior was computed on
    # the segmentation's versions (1: the AI's; then radiologists' corrections) when the AI results are open;
    # the image "segmentation" is the current one, "segmentation-ai" the AI's original
    segmentations: SegmentationVersionsOut | None = None


def priors_of(db: Session, study: StudyRow, settings: Settings | None = None) -> list[StudyRow]:
    """Earlier examinations of the same patient with a finished analysis (:func:`neuronav.workflow.priors.held_priors`:
    same pseudonym, no conflicting issuer), newest first; the prior the study's analysis compared with
    (``prior_study_id``, :mod:`neuronav.workflow.priors`) first of all: the viewer compares with the same prior."""
    from neuronav.config import get_settings
    from neuronav.workflow.priors import held_priors

    rows = held_priors(db, jobs.store_for(settings or get_settings()), study, analysed_only=True)
    used = [s for s in rows if s.id == study.prior_study_id]
    return [*used, *(s for s in rows if s.id != study.prior_study_id)]


def viewer_manifest(db: Session, settings: Settings, actor: Actor, study_id: str) -> ViewerOut:
    """What the viewer loads for a study: its images, the lesion centroids (for readers of AI results, or
    once the report is signed), the report and the prior studies of the same patient."""
    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.STUDY_IMAGES, study_object(study))
    reader = allowed(actor, Permission.STUDY_READ)  # else a technician checking image quality: images only
    done = latest_done(db, study)
    stored = (done.result or {}).get("objects") or {}
    sequences = sorted(n.removeprefix("sequence-").removesuffix(".nii.gz") for n in stored if n.startswith("sequence-"))
    rep = reports.for_study(db, study.id) if reader else None
    lesions: list[LesionOut] | None = None
    folder = private_tmp(settings, "viewer-")
    try:
        findings = Findings.model_validate_json(
            jobs.result_path(settings, db, done, "findings.json", folder).read_text()
        )
    finally:
        remove_tmp(folder)
    reference = findings.study.reference_sequence
    ai_open = reader and ai_results_open(actor, rep.status if rep else None)
    versions: SegmentationVersionsOut | None = None
    if ai_open:
        if rep is not None:  # the report's findings: what the radiologist edited and every output lists
            findings = reports.load(db, jobs.store_for(settings), rep.id).findings
            versions = segmentation_versions(db, study.id)
        lesions = lesion_list(findings)
    # a break-glass limited to one study opens that study only; a technician sees their uploads only
    priors = priors_of(db, study, settings) if reader and breakglass_study(actor) is None else []
    audit_event(db, actor, "study.viewer", target_type="study", target_id=study.id, detail={"analysis": done.id})
    return ViewerOut(
        study_id=study.id,
        analysis_id=done.id,
        images=[*(i for i in IMAGES if ai_open or i not in AI_IMAGES), *(f"sequence-{n}" for n in sequences)],
        sequences=sequences,
        reference_sequence=reference,
        lesions=lesions,
        report_id=rep.id if rep else None,
        report_status=rep.status if rep else None,
        segmentations=versions,
        priors=[
            PriorOut(study_id=p.id, study_date=p.study_date, uploaded_at=p.uploaded_at, description=p.description)
            for p in priors
        ],
        compared_prior_id=study.prior_study_id if any(p.id == study.prior_study_id for p in priors) else None,
    )


__all__ = ["LesionOut", "PriorOut", "ViewerOut", "priors_of", "viewer_manifest"]
