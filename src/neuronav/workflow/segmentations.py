"""A radiologist corrects the AI's segmentation: lesions accepted or rejected, brush and eraser.

The result is a new version of the analysis's label map (version 1 is the AI's ``segmentation.nii.gz``,
kept untouched and still served as the image ``segmentation-ai``): ``segmentation-v<N>.nii.gz``, stored
encrypted, with a :class:`~neuronav.db.models.SegmentationVersionRow` (author, time, parent version,
what changed). The volumes, the lesions (with their diameters, centroids and atlas location, through the
registration the analysis stored) and the oedema are measured again from it by the same functions as the
AI's (:mod:`neuronav.analysis.measure`), the change against a prior is recomputed from the prior's
volumes, and the report draft is rewritten from these findings
(:func:`neuronav.report.lifecycle.correct_segmentation`: recorded as an edit, the status unchanged, a
signed report amended first). Every output (JSON, PDF, SEG, SR, FHIR, HL7) is then written from the
corrected label map, which ``findings.segmentation.label_file`` names; the findings say who corrected it
(``findings.segmentation.edited``).

Not measured again: the detection and classification (the AI's, from its probabilities), the midline
shift, ventricles and haemorrhage (computed on the registered images of the analysis, which are not
kept): they stay as the AI measured them.

Who: whoever may edit the report (``report:edit``, a radiologist); the versions and their images are
read by whoever may see the AI's results. Each correction is audited as ``segmentation.edit``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, SegmentationVersionRow, StoredObjectRow, UserRow
from neuronav.errors import ConflictError, InputError, LifecycleError, NotFoundError
from neuronav.findings import Findings, SegmentationEdit
from neuronav.security.access import Actor, ai_results_open
from neuronav.security.permissions import Permission
from neuronav.storage.store import ObjectStore
from neuronav.workflow import jobs, reports
from neuronav.workflow.access import audit_event, authorize_object, refusal
from neuronav.workflow.studies import load_study, segmentation_file, study_object
from neuronav.workflow.uploads import private_tmp, remove_tmp

BRATS_LABELS = (0, 1, 2, 3)
AFFINE_TOLERANCE_MM = 0.01  # a NIfTI writer's float32 header rounds the affine; the grid is the same


class SegmentationVersionOut(BaseModel):
    """One version of an analysis's label map (version 1: the AI's)."""

    version: int
    parent_version: int | None
    image: str  # the viewer image name: segmentation-ai, segmentation-v2, …
    author: str  # "AI" for version 1
    author_role: str | None
    created_at: datetime | None
    changes: dict[str, Any]
    current: bool


class SegmentationVersionsOut(BaseModel):
    study_id: str
    analysis_id: str
    current_version: int
    versions: list[SegmentationVersionOut]


def read_labels(data: bytes, shape: tuple[int, ...], affine: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """A label map sent by a reader (NIfTI-1, gzipped or not) checked against the grid it corrects: same
    shape and affine, BraTS labels only; :class:`InputError` naming what is wrong."""
    import nibabel as nib

    limit = int(np.prod(shape)) * 8 + 1_000_000  # float64 voxels and a header: no more (a gzip bomb stops here)
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"the label map is not a readable gzip file ({exc})") from exc
        if len(data) > limit:
            raise InputError(f"the label map is larger than a {'×'.join(map(str, shape))} image can be")
    try:
        img = nib.Nifti1Image.from_bytes(data)
        arr = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds for a broken file
        raise InputError(f"the label map is not a NIfTI-1 image ({str(exc)[:200]})") from exc
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise InputError(
            f"the label map is {'×'.join(map(str, arr.shape))} voxels; the segmentation it corrects is "
            f"{'×'.join(map(str, shape))} (the reference grid the viewer shows)"
        )
    off = float(np.max(np.abs(np.asarray(img.affine, dtype=np.float64) - affine)))
    if not off <= AFFINE_TOLERANCE_MM:
        raise InputError(
            f"the label map is not on the reference grid: its affine differs from the segmentation's by "
            f"{off:.3g} mm (draw on the reference image)"
        )
    if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
        raise InputError("the label map holds values that are not whole numbers; labels are 0, 1, 2 and 3")
    found = sorted(int(v) for v in np.unique(arr))
    bad = [v for v in found if v not in BRATS_LABELS]
    if bad:
        raise InputError(
            f"the label map holds {', '.join(map(str, bad[:10]))}: labels are 0 background, 1 necrotic / "
            "non-enhancing core, 2 oedema and 3 enhancing tumour (BraTS)"
        )
    return np.asarray(arr, dtype=np.uint8)


def _rows(db: Session, analysis_id: str) -> list[SegmentationVersionRow]:
    return list(
        db.scalars(
            select(SegmentationVersionRow)
            .where(SegmentationVersionRow.analysis_id == analysis_id)
            .order_by(SegmentationVersionRow.version)
        )
    )


def _current(analysis: AnalysisRow) -> int:
    return int((analysis.result or {}).get("segmentation_version") or 1)


def _report_analysis(db: Session, study_id: str) -> tuple[Any, AnalysisRow]:
    row = reports.for_study(db, study_id)
    if row is None:
        raise NotFoundError(f"study {study_id} has no report yet: its analysis has not finished")
    analysis = db.get(AnalysisRow, row.analysis_id)
    if analysis is None or analysis.state != "done":
        raise NotFoundError(f"the analysis of study {study_id}'s report is gone")
    return row, analysis


def _out(analysis: AnalysisRow, rows: list[SegmentationVersionRow], study_id: str) -> SegmentationVersionsOut:
    current = _current(analysis)
    versions = [
        SegmentationVersionOut(
            version=1,
            parent_version=None,
            image="segmentation-ai",
            author="AI",
            author_role=None,
            created_at=analysis.finished_at,
            changes={},
            current=current == 1,
        ),
        *(
            SegmentationVersionOut(
                version=r.version,
                parent_version=r.parent_version,
                image=f"segmentation-v{r.version}",
                author=r.author_name,
                author_role=r.author_role,
                created_at=r.created_at,
                changes=r.changes,
                current=current == r.version,
            )
            for r in rows
        ),
    ]
    return SegmentationVersionsOut(
        study_id=study_id, analysis_id=analysis.id, current_version=current, versions=versions
    )


def segmentation_versions(db: Session, study_id: str) -> SegmentationVersionsOut:
    """The versions of the segmentation of the study's report (no access check: the caller's)."""
    _, analysis = _report_analysis(db, study_id)
    return _out(analysis, _rows(db, analysis.id), study_id)


def list_versions(db: Session, actor: Actor, study_id: str) -> SegmentationVersionsOut:
    """The versions of the segmentation of the study's report (for whoever may see the AI's results)."""
    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.STUDY_IMAGES, study_object(study))
    row, analysis = _report_analysis(db, study.id)
    if not ai_results_open(actor, row.status):
        raise refusal(
            db,
            actor,
            "the segmentation is an AI result: it opens to you once the report is signed",
            study_id=study.id,
            detail={"segmentations": True},
        )
    return _out(analysis, _rows(db, analysis.id), study.id)


def correct(
    db: Session,
    store: ObjectStore,
    settings: Settings,
    actor: Actor,
    study_id: str,
    *,
    parent_version: int,
    labels_nifti: bytes | None = None,
    accepted_lesions: list[int] | None = None,
    rejected_lesions: list[int] | None = None,
    note: str = "",
) -> SegmentationVersionsOut:
    """Save a radiologist's correction of the study's segmentation as a new version and measure the
    report again from it (see the module docstring). ``parent_version`` is the version the reader edited:
    :class:`ConflictError` when another correction was saved meanwhile. ``labels_nifti``: the corrected
    label map (NIfTI on the reference grid); ``rejected_lesions``: lesion numbers of the parent version
    whose voxels (core and its oedema) are removed; ``accepted_lesions``: confirmed as they are."""
    from neuronav.analysis import measure
    from neuronav.analysis.pipeline import REGISTRATION_FILE, change_against, read_registration, summary
    from neuronav.report.build import key_slices
    from neuronav.report.lifecycle import correct_segmentation
    from neuronav.volume import Volume, load_nifti, save_nifti

    accepted = sorted(set(accepted_lesions or []))
    rejected = sorted(set(rejected_lesions or []))
    study = load_study(db, study_id)
    authorize_object(db, actor, Permission.REPORT_EDIT, study_object(study))
    row, analysis = _report_analysis(db, study.id)
    report = reports.load(db, store, row.id)
    if report.signature is not None:  # before any work: the lifecycle refuses it too
        raise LifecycleError(
            f"report {report.report_id} v{report.version} is signed ({report.status}); amend it before "
            "correcting its segmentation"
        )
    current = _current(analysis)
    if parent_version != current:
        raise ConflictError(
            f"the segmentation is at version {current} now, not {parent_version}: reload it and correct it again"
        )
    if labels_nifti is None and not accepted and not rejected:
        raise InputError("nothing to save: send a corrected label map, or lesions accepted or rejected")
    both = sorted(set(accepted) & set(rejected))
    if both:
        raise InputError(f"lesion {', '.join(map(str, both))} is both accepted and rejected")
    folder = private_tmp(settings, "seg-")
    key: str | None = None
    try:
        parent_vol = load_nifti(jobs.result_path(settings, db, analysis, segmentation_file(analysis), folder))
        parent = np.asarray(parent_vol.data, dtype=np.uint8)
        affine = np.asarray(parent_vol.affine, dtype=np.float64)
        try:
            w2m = read_registration(jobs.result_path(settings, db, analysis, REGISTRATION_FILE, folder))
        except LifecycleError as exc:
            raise LifecycleError(
                f"analysis {analysis.id} predates segmentation editing (it stored no registration to locate "
                "lesions with): run the analysis again, then correct it"
            ) from exc
        labels = parent.copy() if labels_nifti is None else read_labels(labels_nifti, parent.shape, affine)
        if accepted or rejected:
            owner = measure.lesion_map(parent, affine)
            n = int(owner.max())
            unknown = [i for i in (*accepted, *rejected) if not 1 <= i <= n]
            if unknown:
                have = f"lesions 1–{n}" if n > 1 else ("lesion 1" if n == 1 else "no lesion")
                raise InputError(f"no lesion {', '.join(map(str, unknown))}: version {current} has {have}")
            for i in rejected:
                labels[owner == i] = 0
        changed = int(np.count_nonzero(labels != parent))
        if changed == 0 and not accepted:
            raise InputError(f"the label map is the same as version {current}: nothing changed")
        version = max([1, *(r.version for r in _rows(db, analysis.id))]) + 1
        name = f"segmentation-v{version}.nii.gz"
        path = save_nifti(Volume(labels, affine), folder / name)
        volumes = measure.tumour_volumes(labels, affine)
        found = measure.tumour_lesions(labels, affine, w2m)
        now = datetime.now(UTC)
        edit = SegmentationEdit(
            version=version,
            parent_version=current,
            edited_by=actor.display_name,
            role=actor.role,
            edited_at=now,
            accepted_lesions=accepted,
            rejected_lesions=rejected,
            voxels_changed=changed,
            note=note,
        )
        old = report.findings
        change = old.change
        if change is not None:
            change = (
                change_against(
                    volumes.model_dump(),
                    change.prior_volumes_ml,
                    prior_study=change.prior_study,
                    prior_date=change.prior_date,
                )
                if change.prior_volumes_ml
                else None  # the prior's volumes were not kept (findings before 1.1): no comparison to state
            )
        findings = Findings.model_validate(
            {
                **old.model_dump(),
                "schema_version": Findings.model_fields["schema_version"].default,
                "segmentation": {
                    **old.segmentation.model_dump(),
                    "volumes": volumes.model_dump(),
                    "lesions": [x.model_dump() for x in found.lesions],
                    "oedema_islands_ml": found.oedema_islands_ml,
                    "label_file": name,
                    "edited": edit.model_dump(),
                },
                "oedema": measure.oedema(volumes).model_dump(),
                "change": change.model_dump() if change is not None else None,
            }
        )
        rewritten = correct_segmentation(
            report, findings, who=actor.display_name, role=actor.role, key_slices=key_slices(findings, path), when=now
        )
        obj = store.put(path.read_bytes(), kind="result")
        key = obj.key
        db.add(
            StoredObjectRow(
                key=obj.key, study_id=study.id, kind=f"result:{name}", name=name, sha256=obj.sha256, size_bytes=obj.size
            )
        )
        author = db.get(UserRow, actor.id)
        changes: dict[str, Any] = {
            "accepted_lesions": accepted,
            "rejected_lesions": rejected,
            "painted": labels_nifti is not None,
            "voxels_changed": changed,
            "voxels_per_label": {str(k): int(np.count_nonzero(labels == k)) for k in (1, 2, 3)},
            # the note is free text (it could name the patient): kept in the encrypted report's findings only
        }
        db.add(
            SegmentationVersionRow(
                analysis_id=analysis.id,
                study_id=study.id,
                version=version,
                parent_version=current,
                object_key=obj.key,
                sha256=obj.sha256,
                author_id=author.id if author is not None else None,
                author_name=actor.display_name,
                author_role=actor.role,
                created_at=now,
                changes=changes,
                report_id=row.id,
                report_version=rewritten.version,
            )
        )
        result = dict(analysis.result or {})
        result["objects"] = {**(result.get("objects") or {}), name: obj.key}
        result["segmentation_version"] = version
        result["summary"] = summary(findings)
        analysis.result = result  # a new dict: the JSON column is written again
        reports.save(db, store, rewritten, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
        audit_event(
            db,
            actor,
            "segmentation.edit",
            target_type="study",
            target_id=study.id,
            detail={
                "analysis": analysis.id,
                "version": version,
                "parent_version": current,
                "accepted_lesions": accepted,
                "rejected_lesions": rejected,
                "voxels_changed": changed,
                "report": row.id,
                "report_version": rewritten.version,
            },
        )
        db.flush()
    except BaseException:
        if key is not None:  # not committed: no row refers to it
            store.delete(key, missing_ok=True)
        raise
    finally:
        remove_tmp(folder)
    return _out(analysis, _rows(db, analysis.id), study.id)


__all__ = [
    "BRATS_LABELS",
    "SegmentationVersionOut",
    "SegmentationVersionsOut",
    "correct",
    "list_versions",
    "read_labels",
    "segmentation_versions",
]
