"""Studies and analyses, the same for every edge: receive a study, start its analysis, read it.

An HTTP upload, a DICOM association that completed a study and a CLI command all call
:func:`receive_and_analyse`: the files are validated whole and stored encrypted
(:mod:`neuronav.workflow.uploads`), the analysis is queued (:mod:`neuronav.workflow.jobs`), the
receipt is audited, and the job is handed to the worker once the rows are committed.

Reading follows the access policy (:mod:`neuronav.security.access`): a technician sees only the
processing status of studies they uploaded; reading the patient's identity needs ``study:read`` and is
audited; the AI images (segmentation, heatmap) of a study open to a neurologist once its report is
signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import get_row
from neuronav.errors import ConflictError, LifecycleError, NotFoundError
from neuronav.security.access import AI_IMAGES, Actor, ai_results_open, allowed
from neuronav.security.errors import PermissionDenied
from neuronav.security.permissions import Permission, StudyObject, object_access
from neuronav.security.throttle import ANALYSIS_RATE, IMAGE_RATE, UPLOAD_RATE
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import jobs, reports, throttles
from neuronav.workflow.access import audit_event, authorize_object, refusal
from neuronav.workflow.uploads import FileSource, private_tmp, receive_files, remove_tmp

IMAGES = {"reference": "reference.nii.gz", "segmentation": "segmentation.nii.gz", "heatmap": "probability.nii.gz"}


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
    order_state: str | None = None  # the HL7 order it answers: arrived, analysed, signed (None: no order)
    # the identity, on the worklist for the roles that may see it (security.access.identity_open); else None
    patient_name: str | None = None  # DICOM PN
    patient_id: str | None = None  # MRN
    patient_birth_date: str | None = None  # YYYYMMDD
    accession_number: str | None = None


class StudyDetail(StudyOut):
    patient_name: str | None
    patient_id: str | None
    patient_birth_date: str | None
    patient_id_issuer: str | None = None
    patient_sex: str | None = None
    accession_number: str | None = None
    referring_physician: str | None = None


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
        created_at=a.created_at,
        finished_at=a.finished_at,
        seconds=a.seconds,
        report_id=(a.result or {}).get("report_id"),
    )


def _latest(db: Session, study_id: str) -> AnalysisRow | None:
    return db.scalars(
        select(AnalysisRow).where(AnalysisRow.study_id == study_id).order_by(AnalysisRow.created_at.desc())
    ).first()


def study_out(db: Session, s: StudyRow, *, with_status: bool = True) -> StudyOut:
    latest, rep = _latest(db, s.id), reports.for_study(db, s.id)
    return StudyOut(
        id=s.id,
        state=s.state,
        flagged=s.flagged,
        uploaded_at=s.uploaded_at,
        patient_pseudonym=s.patient_pseudonym,
        study_date=s.study_date,
        description=s.description,
        sequences=sorted(s.sequences),
        n_files=s.n_files,
        analysis=_analysis_out(latest) if with_status else None,
        report_id=rep.id if rep else None,
        report_status=rep.status if rep else None,
        order_state=_order_state(db, s.id),
    )


def _order_state(db: Session, study_id: str) -> str | None:
    from neuronav.workflow.orders import order_of

    order = order_of(db, study_id)
    return order.state if order is not None else None


def load_study(db: Session, study_id: str) -> StudyRow:
    return get_row(db, StudyRow, study_id, "study")


def study_object(study: StudyRow) -> StudyObject:
    """The study as the access rules see it."""
    return StudyObject(study_id=study.id, uploaded_by=study.uploaded_by)


def may_access(actor: Actor, study: StudyRow, permission: Permission = Permission.STUDY_STATUS) -> bool:
    """Whether ``actor`` holds ``permission`` on the study (by default: may see it at all, its status: a
    reader, or the technician who uploaded it). Not audited: for filtering lists."""
    try:
        object_access(
            actor.role,
            permission,
            study_object(study),
            user_id=actor.id,
            active=True,
            verified=actor.verified,
            breakglass=actor.breakglass,
        )
    except PermissionDenied:
        return False
    return True


def _failed_runs(db: Session, study_id: str) -> int:
    stmt = select(func.count()).select_from(AnalysisRow)
    return int(db.scalar(stmt.where(AnalysisRow.study_id == study_id, AnalysisRow.state == "failed")) or 0)


def receive_and_analyse(
    db: Session, store: ObjectStore, settings: Settings, actor: Actor, source: FileSource, *, via: str
) -> UploadOut:
    """Receive one study's files (validated whole, stored encrypted, idempotent), start its analysis and
    audit the receipt (``via``: upload, dicom, cli); the job is dispatched once the rows are committed.

    ``source`` says where the files come from (:class:`~neuronav.workflow.uploads.UploadedFiles` for an
    HTTP upload, the stored instances of a DICOM association for the listener,
    :mod:`neuronav.workflow.dicom`). The routing rule is the validation: a brain MR study with a usable
    T1c, FLAIR or T2 series is stored and its analysis queued; anything else raises :class:`~neuronav.errors.InputError`
    naming why (the upload route answers 400; the DICOM listener keeps the instances and lists the study
    with that reason).

    Counted against the uploader's :data:`~neuronav.security.throttle.UPLOAD_RATE` when
    ``source.throttled`` (a DICOM node is limited per association instead). The same study sent
    again is the same study (``created=False``), with two limits:

    * sent by someone who may not see it (another technician's upload): :class:`ConflictError` (409)
      saying only that the study is in NeuroNav already and to ask a radiologist, who can find it;
      neither its id, pseudonym nor state is revealed (audited, with the study id, for the auditors).
      One study stays one record, with one analysis and one report: what a reading room expects.
    * a study whose analysis failed is queued again by a re-upload at most ``settings.failed_requeues``
      times (a radiologist can still run it again, ``force``); never while one is queued or running.
    """
    if source.throttled:
        throttles.spend(db, actor, UPLOAD_RATE)
    received = receive_files(db, store, settings, user_id=actor.id, source=source)
    study = received.study
    if not received.created and not may_access(actor, study):
        detail = {"files": source.files, "reason": "uploaded by another user", "via": via}
        audit_event(db, actor, "study.upload", outcome="denied", target_type="study", target_id=study.id, detail=detail)
        db.commit()
        raise ConflictError(
            "this study is in NeuroNav already, uploaded by another user; ask a radiologist to find it "
            "(nothing was stored again)"
        )
    if received.created:
        from neuronav.workflow.orders import match_study

        match_study(db, store, settings, study)  # the order it answers: by accession, else MRN and date
    latest = None if received.created else _latest(db, study.id)
    if latest is not None and latest.state == "failed" and _failed_runs(db, study.id) > settings.failed_requeues:
        analysis, queued = latest, False  # failed too often: a re-upload no longer queues it again
    else:
        analysis, queued = jobs.start_analysis(db, settings, study, user_id=actor.id)
    audit_event(
        db,
        actor,
        "study.upload",
        target_type="study",
        target_id=study.id,
        detail={"files": source.files, "created": received.created, "analysis": analysis.id, "via": via},
    )
    db.commit()  # the worker reads the rows: commit before handing the job over
    if queued:
        jobs.dispatch(settings, analysis.id)
    return UploadOut(study=study_out(db, study), created=received.created, analysis_queued=queued)


def read_study(db: Session, store: ObjectStore, actor: Actor, study_id: str) -> StudyOut:
    """A study: with the patient identity (decrypted, audited) for readers; its processing status for the
    technician who uploaded it."""
    study = load_study(db, study_id)
    obj = study_object(study)
    if not allowed(actor, Permission.STUDY_READ):
        authorize_object(db, actor, Permission.STUDY_STATUS, obj)
        return study_out(db, study)
    authorize_object(db, actor, Permission.STUDY_READ, obj)
    key = store.field_key()

    def dec(value: str | None, column: str) -> str | None:
        return decrypt_field(value, key, column) if value else None

    audit_event(db, actor, "study.read", target_type="study", target_id=study.id)
    identity = {"patient_name", "patient_id", "patient_birth_date", "accession_number"}  # set below
    return StudyDetail(
        **study_out(db, study).model_dump(exclude=identity),
        patient_name=dec(study.patient_name_enc, "studies.patient_name"),
        patient_id=dec(study.patient_id_enc, "studies.patient_id"),
        patient_birth_date=dec(study.patient_birth_date_enc, "studies.patient_birth_date"),
        patient_id_issuer=dec(study.patient_id_issuer_enc, "studies.patient_id_issuer"),
        patient_sex=dec(study.patient_sex_enc, "studies.patient_sex"),
        accession_number=dec(study.accession_enc, "studies.accession"),
        referring_physician=dec(study.referring_physician_enc, "studies.referring_physician"),
    )


def start(db: Session, settings: Settings, actor: Actor, study_id: str, *, force: bool = False) -> AnalysisOut:
    """Start (or return the cached / running) analysis of a study; ``force`` runs it again, refused
    (:class:`ConflictError`) while one is queued or running. Counted against
    :data:`~neuronav.security.throttle.ANALYSIS_RATE`."""
    throttles.spend(db, actor, ANALYSIS_RATE)
    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.ANALYSIS_START, study_object(study))
    if force:
        pending = db.scalars(
            select(AnalysisRow).where(AnalysisRow.study_id == study.id, AnalysisRow.state.in_(("queued", "running")))
        ).first()
        if pending is not None:
            raise ConflictError(
                f"analysis {pending.id} of study {study.id} is {pending.state}: wait for it before running it again"
            )
    analysis, queued = jobs.start_analysis(db, settings, study, user_id=actor.id, force=force)
    audit_event(
        db,
        actor,
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


def _analysis(db: Session, analysis_id: str) -> AnalysisRow:
    return get_row(db, AnalysisRow, analysis_id, "analysis")


def analysis_status(db: Session, actor: Actor, analysis_id: str) -> AnalysisOut:
    """Status and progress of an analysis (its uploader, or anyone who may read analyses)."""
    a = _analysis(db, analysis_id)
    authorize_object(db, actor, Permission.STUDY_STATUS, study_object(load_study(db, a.study_id)))
    out = _analysis_out(a)
    assert out is not None
    return out


def analysis_result(db: Session, actor: Actor, analysis_id: str) -> dict[str, Any]:
    """The findings summary of a finished analysis and its report id (audited)."""
    a = _analysis(db, analysis_id)
    authorize_object(db, actor, Permission.ANALYSIS_READ, study_object(load_study(db, a.study_id)))
    if a.state != "done":
        raise LifecycleError(f"analysis {analysis_id} is {a.state}, not done")  # 409: ask again when done
    audit_event(db, actor, "analysis.read", target_type="study", target_id=a.study_id, detail={"analysis": a.id})
    return {
        "analysis": a.id,
        "study": a.study_id,
        "summary": a.result.get("summary"),
        "report_id": a.result.get("report_id"),
    }


def latest_done(db: Session, study: StudyRow) -> AnalysisRow:
    """The newest finished analysis of ``study`` (404 when there is none)."""
    done = db.scalars(
        select(AnalysisRow)
        .where(AnalysisRow.study_id == study.id, AnalysisRow.state == "done")
        .order_by(AnalysisRow.created_at.desc())
    ).first()
    if done is None:
        raise NotFoundError(f"study {study.id} has no finished analysis")
    return done


def segmentation_file(analysis: AnalysisRow, version: int | None = None) -> str:
    """The stored label map of ``version`` (default: the latest) of an analysis's segmentation: version 1
    is the AI's ``segmentation.nii.gz``; a radiologist's corrections are ``segmentation-v<N>.nii.gz``
    (:mod:`neuronav.workflow.segmentations`)."""
    n = int((analysis.result or {}).get("segmentation_version") or 1) if version is None else version
    return IMAGES["segmentation"] if n == 1 else f"segmentation-v{n}.nii.gz"


def image_file(analysis: AnalysisRow, image: str) -> str:
    """The stored file behind a viewer image name: reference, segmentation (the latest version),
    segmentation-ai (the AI's original), segmentation-v<N>, heatmap or sequence-<NAME>."""
    stored = (analysis.result or {}).get("objects") or {}
    if image == "segmentation":
        return segmentation_file(analysis)
    if image == "segmentation-ai":
        return IMAGES["segmentation"]
    if image in IMAGES:
        return IMAGES[image]
    if image.startswith("segmentation-v") and f"{image}.nii.gz" in stored:
        return f"{image}.nii.gz"
    name = f"{image}.nii.gz"
    if image.startswith("sequence-") and name in stored:
        return name
    have = [
        *IMAGES,
        "segmentation-ai",
        *sorted(n.removesuffix(".nii.gz") for n in stored if n.startswith(("sequence-", "segmentation-v"))),
    ]
    raise NotFoundError(f"unknown image {image!r}; this study has {', '.join(have)}")


@dataclass(frozen=True)
class ImageFile:
    """A viewer image decrypted into a private temporary folder: remove ``folder`` once it is sent."""

    path: Path
    folder: Path


def study_image(db: Session, settings: Settings, actor: Actor, study_id: str, image: str) -> ImageFile:
    """A NIfTI image of the latest finished analysis (audited); the AI images only to readers of AI results
    (a technician, who may view the images of their own uploads to check their quality, never). Counted
    against :data:`~neuronav.security.throttle.IMAGE_RATE`."""
    throttles.spend(db, actor, IMAGE_RATE)
    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.STUDY_IMAGES, study_object(study))
    done = latest_done(db, study)
    file_name = image_file(done, image)
    if image in AI_IMAGES or image.startswith("segmentation-"):  # every version of the AI's label map
        rep = reports.for_study(db, study.id)
        if not ai_results_open(actor, rep.status if rep else None):
            raise refusal(
                db,
                actor,
                f"the {image} is an AI result: it opens to you once the report is signed",
                study_id=study.id,
                detail={"image": image},
            )
    folder = private_tmp(settings, "img-")
    try:
        path = jobs.result_path(settings, db, done, file_name, folder)
    except BaseException:
        remove_tmp(folder)
        raise
    audit_event(db, actor, "study.image", target_type="study", target_id=study.id, detail={"image": image})
    return ImageFile(path, folder)


__all__ = [
    "IMAGES",
    "AnalysisOut",
    "ImageFile",
    "StudyDetail",
    "StudyOut",
    "StudyPage",
    "UploadOut",
    "analysis_result",
    "analysis_status",
    "image_file",
    "latest_done",
    "load_study",
    "read_study",
    "receive_and_analyse",
    "segmentation_file",
    "start",
    "study_image",
    "study_object",
    "study_out",
]
