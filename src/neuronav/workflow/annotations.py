"""Readers' measurements and annotations on a study: validated geometry, values computed from the image,
stored per author (list, create, change the text, move, delete, include in the report).

A viewer sends what the reader drew, in scanner (RAS) millimetres; the values stored with it are
computed here from the stored image, never taken from the client:

    distance  two points                     → ``length_mm``
    roi       two opposite corners of a box  → ``area_mm2``, ``mean``, ``sd``, ``min``, ``max``,
              (a rectangle) on one plane        ``n_voxels``, of the voxels of ``image`` whose centres
              (axial, coronal, sagittal)        lie in the box, within half a voxel of the plane
              of ``image``
    ellipse   two opposite corners of the    → the same statistics, of the voxels whose centres lie in
              box the ellipse is drawn in       the ellipse inscribed in that box
    bidimensional  the longest diameter (two → ``long_mm``, ``short_mm`` and ``product_mm2`` (RANO:
              points) and the longest           the product of the perpendicular diameters); the second
              perpendicular to it (two)         must be perpendicular to the first within 10°
    text      one point, or two corners      → the reader's text (no value)

Distances and bidimensional measurements may name the ``plane`` they were drawn on (the viewer draws
them again on that plane).

:func:`report_sentence` writes the one line a radiologist adds to the report when including it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnnotationRow, UserRow
from neuronav.db.session import get_row
from neuronav.errors import InputError, LifecycleError, NotFoundError
from neuronav.report import lifecycle
from neuronav.report.codes import AREA
from neuronav.report.model import Code, ReaderMeasurement
from neuronav.security.access import AI_IMAGES, Actor, ai_results_open
from neuronav.security.permissions import Permission, StudyObject
from neuronav.storage.store import ObjectStore
from neuronav.volume import Volume, load_nifti
from neuronav.workflow import jobs, reports
from neuronav.workflow.access import audit_event, authorize_object, refusal
from neuronav.workflow.studies import image_file, latest_done, load_study
from neuronav.workflow.uploads import private_tmp, remove_tmp

Kind = Literal["distance", "roi", "ellipse", "bidimensional", "text"]
KINDS: tuple[str, ...] = ("distance", "roi", "ellipse", "bidimensional", "text")
AREA_KINDS = ("roi", "ellipse")  # regions with intensity statistics
MAX_PERPENDICULAR_DEG = 10.0
Plane = Literal["axial", "coronal", "sagittal"]
PLANE_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}  # the RAS axis normal to the plane
MAX_TEXT = 2000
MAX_ROI_VOXELS = 2_000_000


@dataclass(frozen=True)
class Geometry:
    kind: Kind
    points_mm: list[tuple[float, float, float]]
    plane: Plane | None = None
    image: str | None = None


def _point(value: Any, what: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise InputError(f"{what} must be [x, y, z] in millimetres")
    try:
        x, y, z = (float(v) for v in value[:3])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be three numbers (millimetres)") from exc
    if not all(math.isfinite(v) and abs(v) < 10_000 for v in (x, y, z)):
        raise InputError(f"{what} must be finite millimetre coordinates within 10 m of the scanner origin")
    return (x, y, z)


def parse(kind: str, points_mm: Any, plane: str | None, image: str | None, text: str | None) -> Geometry:
    """Check what a viewer sent; raise :class:`InputError` naming the problem."""
    if kind not in KINDS:
        raise InputError(f"unknown annotation kind {kind!r}; one of {', '.join(KINDS)}")
    if not isinstance(points_mm, list):
        raise InputError("points_mm must be a list of [x, y, z] points")
    want = {"distance": (2,), "roi": (2,), "ellipse": (2,), "bidimensional": (4,), "text": (1, 2)}[kind]
    if len(points_mm) not in want:
        raise InputError(f"a {kind} annotation needs {' or '.join(map(str, want))} point(s), got {len(points_mm)}")
    points = [_point(p, f"point {i + 1}") for i, p in enumerate(points_mm)]
    if kind == "text" and not (text or "").strip():
        raise InputError("a text annotation needs its text")
    if text is not None and len(text) > MAX_TEXT:
        raise InputError(f"the text is longer than {MAX_TEXT} characters")
    if kind in AREA_KINDS:
        if plane not in PLANE_AXIS:
            raise InputError(f"an {kind} needs its plane: axial, coronal or sagittal (got {plane!r})")
        if not image:
            raise InputError(f"an {kind} needs the image it was drawn on")
        axis = PLANE_AXIS[plane]
        (a, b) = points
        spans = [abs(a[i] - b[i]) for i in range(3) if i != axis]
        if min(spans) <= 0:
            raise InputError(f"the {kind} has no area: its two corners share a row or a column")
    if plane is not None and plane not in PLANE_AXIS:
        raise InputError(f"the plane is axial, coronal or sagittal, not {plane!r}")
    if kind == "bidimensional":
        long_mm, short_mm, angle = _diameters(points)
        if long_mm <= 0 or short_mm <= 0:
            raise InputError("a bidimensional measurement needs two diameters of non-zero length")
        if abs(90.0 - angle) > MAX_PERPENDICULAR_DEG:
            raise InputError(
                f"the second diameter must be perpendicular to the first (within {MAX_PERPENDICULAR_DEG:.0f}°; "
                f"it makes {angle:.0f}°)"
            )
    keep_plane = kind in (*AREA_KINDS, "distance", "bidimensional")
    return Geometry(kind=kind, points_mm=points, plane=plane if keep_plane else None, image=image)  # type: ignore[arg-type]


def _diameters(points: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The two diameters of a bidimensional measurement (mm) and the angle between them (degrees)."""
    a, b, c, d = (np.asarray(p, dtype=float) for p in points)
    u, v = b - a, d - c
    long_mm, short_mm = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if long_mm == 0 or short_mm == 0:
        return long_mm, short_mm, 0.0
    cos = abs(float(np.dot(u, v))) / (long_mm * short_mm)
    return long_mm, short_mm, math.degrees(math.acos(min(1.0, cos)))


def bidimensional_values(geometry: Geometry) -> dict[str, float | int]:
    """RANO's bidimensional product: the longest diameter, its perpendicular, their product."""
    first, second, _ = _diameters(geometry.points_mm)
    long_mm, short_mm = max(first, second), min(first, second)
    return {"long_mm": round(long_mm, 2), "short_mm": round(short_mm, 2), "product_mm2": round(long_mm * short_mm, 2)}


def distance_mm(geometry: Geometry) -> float:
    a, b = (np.asarray(p, dtype=float) for p in geometry.points_mm)
    return float(np.linalg.norm(a - b))


def roi_stats(geometry: Geometry, volume: Volume) -> dict[str, float | int]:
    """Area and intensity statistics of the voxels of ``volume`` inside the roi box on its plane (an
    ``ellipse``: inside the ellipse inscribed in the box)."""
    assert geometry.plane is not None
    axis = PLANE_AXIS[geometry.plane]
    lo = np.minimum(*[np.asarray(p, float) for p in geometry.points_mm])
    hi = np.maximum(*[np.asarray(p, float) for p in geometry.points_mm])
    level = float(np.mean([p[axis] for p in geometry.points_mm]))
    affine = np.asarray(volume.affine, dtype=float)
    # half the extent of one voxel along the plane's normal: a voxel belongs to the plane when its centre
    # is within it
    half = 0.5 * float(np.sum(np.abs(affine[axis, :3])))
    lo[axis], hi[axis] = level - half, level + half
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise InputError(f"the roi image must be 3D, not {data.ndim}D")
    # the voxel-index box that holds the world box (its 8 corners mapped back), clipped to the image
    inv = np.linalg.inv(affine)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = (inv @ corners.T)[:3].T
    first = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
    last = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.asarray(data.shape) - 1)
    if np.any(last < first):
        raise InputError("the roi lies outside the image")
    n_candidates = int(np.prod(last - first + 1))
    if n_candidates > MAX_ROI_VOXELS:
        raise InputError(f"the roi covers too much of the image ({n_candidates} voxels); draw a smaller one")
    grids = np.meshgrid(*[np.arange(f, t + 1) for f, t in zip(first, last, strict=True)], indexing="ij")
    idx = np.stack([g.ravel() for g in grids])
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    inside = np.all((world >= lo[:, None]) & (world <= hi[:, None]), axis=0)
    if geometry.kind == "ellipse":
        centre, radius = (lo + hi) / 2.0, (hi - lo) / 2.0
        in_plane = [i for i in range(3) if i != axis]
        inside &= sum(((world[i] - centre[i]) / radius[i]) ** 2 for i in in_plane) <= 1.0
    values = data[tuple(idx[:, inside])].astype(float)
    if values.size == 0:
        raise InputError("the roi holds no voxel centre of the image; draw a larger one")
    voxel_volume = abs(float(np.linalg.det(affine[:3, :3])))
    return {
        "area_mm2": round(values.size * voxel_volume / (2.0 * half), 2),
        "mean": round(float(values.mean()), 3),
        "sd": round(float(values.std()), 3),
        "min": round(float(values.min()), 3),
        "max": round(float(values.max()), 3),
        "n_voxels": int(values.size),
    }


def _fmt_point(p: list[float] | tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in p[:3]) + ") mm"


def report_sentence(kind: str, geometry: dict[str, Any], values: dict[str, Any], text: str | None, author: str) -> str:
    """The line added to the radiologist's comment when this annotation is included in the report."""
    points = geometry.get("points_mm") or []
    note = f" — {text.strip()}" if text and text.strip() else ""
    if kind == "distance":
        return f"Reader measurement ({author}): distance {values['length_mm']:.1f} mm{note}."
    if kind == "bidimensional":
        return (
            f"Reader measurement ({author}): bidimensional {values['long_mm']:.1f} × {values['short_mm']:.1f} mm "
            f"(product {values['product_mm2']:.1f} mm²){note}."
        )
    if kind in AREA_KINDS:
        shape = "elliptical region" if kind == "ellipse" else "rectangular region"
        return (
            f"Reader measurement ({author}): {shape} on the {geometry.get('plane')} plane of "
            f"{geometry.get('image')}, area {values['area_mm2']:.1f} mm², mean intensity {values['mean']:.1f} "
            f"(SD {values['sd']:.1f}, {values['n_voxels']} voxels){note}."
        )
    where = _fmt_point(points[0]) if points else "the image"
    return f"Reader annotation ({author}) at {where}: {(text or '').strip()}"


READER_LENGTH = Code(value="410668003", scheme="SCT", meaning="Length")
READER_MEAN = Code(value="373098007", scheme="SCT", meaning="Mean value")


def reader_rows(
    annotation_id: str, kind: str, geometry: dict[str, Any], values: dict[str, Any], text: str | None, author: Any
) -> list[ReaderMeasurement]:
    """The structured rows of a reader's measurement (a distance: its length; a region: its area and mean
    intensity); none for a text note."""
    who = author.display_name if author is not None else "?"
    note = text.strip() if text and text.strip() else None
    common: dict[str, Any] = {"reader": who, "annotation_id": annotation_id, "plane": geometry.get("plane"),
              "image": geometry.get("image"), "note": note}  # fmt: skip
    if kind == "distance" and "length_mm" in values:
        return [
            ReaderMeasurement(
                key=f"reader_{annotation_id}_length",
                label="Distance (reader)",
                value=float(values["length_mm"]),
                unit="mm",
                concept=READER_LENGTH,
                **common,
            )
        ]
    if kind == "roi" and "area_mm2" in values:
        return [
            ReaderMeasurement(
                key=f"reader_{annotation_id}_area",
                label="Region area (reader)",
                value=float(values["area_mm2"]),
                unit="mm2",
                concept=AREA,
                **common,
            ),
            ReaderMeasurement(
                key=f"reader_{annotation_id}_mean",
                label="Region mean intensity (reader)",
                value=float(values["mean"]),
                unit="1",
                concept=READER_MEAN,
                **common,
            ),
        ]
    return []


# -- annotations in the database (every edge calls these) --------------------------------------------


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


def annotation_out(a: AnnotationRow, author: UserRow | None) -> AnnotationOut:
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
        created_at=a.created_at,
    )


def _load(db: Session, annotation_id: str) -> AnnotationRow:
    return get_row(db, AnnotationRow, annotation_id, "annotation")


def _object(db: Session, study_id: str) -> StudyObject:
    study = load_study(db, study_id)
    return StudyObject(study_id=study.id, uploaded_by=study.uploaded_by)


def list_for_study(db: Session, actor: Actor, study_id: str) -> list[AnnotationOut]:
    """Every reader's annotations on the study, oldest first, each with its author."""
    authorize_object(db, actor, Permission.ANNOTATION_READ, _object(db, study_id))
    rows = db.scalars(
        select(AnnotationRow)
        .where(AnnotationRow.study_id == study_id)
        .order_by(AnnotationRow.created_at, AnnotationRow.id)
    ).all()
    authors = {u.id: u for u in db.scalars(select(UserRow).where(UserRow.id.in_({a.author_id for a in rows})))}
    audit_event(db, actor, "annotation.list", target_type="study", target_id=study_id, detail={"count": len(rows)})
    return [annotation_out(a, authors.get(a.author_id)) for a in rows]


def _values(db: Session, settings: Settings, study_id: str, geometry: Geometry) -> dict[str, float | int]:
    """The values of a measurement, computed from its geometry (and, for a region, the stored image)."""
    values: dict[str, float | int] = {}
    if geometry.kind == "distance":
        values = {"length_mm": round(distance_mm(geometry), 2)}
    elif geometry.kind == "bidimensional":
        values = bidimensional_values(geometry)
    elif geometry.kind in AREA_KINDS:
        study = load_study(db, study_id)
        done = latest_done(db, study)
        file_name = image_file(done, geometry.image or "")
        folder = private_tmp(settings, "roi-")
        try:
            volume = load_nifti(jobs.result_path(settings, db, done, file_name, folder))
            values = roi_stats(geometry, volume)
        finally:
            remove_tmp(folder)
    return values


def create(
    db: Session,
    settings: Settings,
    actor: Actor,
    study_id: str,
    *,
    kind: str,
    points_mm: Any,
    plane: str | None,
    image: str | None,
    text: str | None,
) -> AnnotationOut:
    """Save a measurement or annotation; its values are computed here from the stored image."""
    authorize_object(db, actor, Permission.ANNOTATION_CREATE, _object(db, study_id))
    geometry = parse(kind, points_mm, plane, image, text)
    if geometry.image in AI_IMAGES:  # values measured on an AI image are AI results
        rep = reports.for_study(db, study_id)
        if not ai_results_open(actor, rep.status if rep else None):
            raise refusal(
                db,
                actor,
                f"the {geometry.image} is an AI result: measuring on it opens to you once the report is signed",
                study_id=study_id,
                detail={"image": geometry.image},
            )
    values = _values(db, settings, study_id, geometry)
    a = AnnotationRow(
        study_id=study_id,
        author_id=actor.id,
        kind=geometry.kind,
        geometry={
            "points_mm": [list(p) for p in geometry.points_mm],
            "plane": geometry.plane,
            "image": geometry.image,
            "values": values,
        },
        text=(text or "").strip() or None,
    )
    db.add(a)
    db.flush()
    audit_event(
        db,
        actor,
        "annotation.create",
        target_type="study",
        target_id=study_id,
        detail={"annotation": a.id, "kind": a.kind},
    )
    author = db.get(UserRow, actor.id)
    return annotation_out(a, author)


def _own(db: Session, actor: Actor, annotation_id: str) -> AnnotationRow:
    a = _load(db, annotation_id)
    authorize_object(db, actor, Permission.ANNOTATION_CREATE, _object(db, a.study_id))
    if a.author_id != actor.id:
        raise refusal(
            db,
            actor,
            "only its author can change or delete an annotation",
            study_id=a.study_id,
            detail={"annotation": a.id, "reason": "not the author"},
        )
    return a


def update_text(db: Session, actor: Actor, annotation_id: str, text: str | None) -> AnnotationOut:
    """Change the text of your annotation."""
    a = _own(db, actor, annotation_id)
    if a.kind == "text" and not (text or "").strip():
        raise InputError("a text annotation needs its text")
    a.text = (text or "").strip() or None
    audit_event(db, actor, "annotation.update", target_type="study", target_id=a.study_id, detail={"annotation": a.id})
    return annotation_out(a, db.get(UserRow, a.author_id))


def move(db: Session, settings: Settings, actor: Actor, annotation_id: str, points_mm: Any) -> AnnotationOut:
    """Move your annotation (a reader dragged it on the image): its new points are checked as when it was
    made, on the same plane and image, and its values computed again from the image at the new place. One
    already included in the report is refused (409): the report keeps the values it was signed with."""
    a = _own(db, actor, annotation_id)
    if a.include_in_report:
        raise LifecycleError(
            f"annotation {a.id} is in the report with its values: draw a new measurement instead of moving it"
        )
    old = dict(a.geometry or {})
    geometry = parse(a.kind, points_mm, old.get("plane"), old.get("image"), a.text)
    values = _values(db, settings, a.study_id, geometry)
    a.geometry = {
        "points_mm": [list(p) for p in geometry.points_mm],
        "plane": geometry.plane,
        "image": geometry.image,
        "values": values,
    }
    audit_event(
        db,
        actor,
        "annotation.move",
        target_type="study",
        target_id=a.study_id,
        detail={"annotation": a.id, "kind": a.kind},
    )
    return annotation_out(a, db.get(UserRow, a.author_id))


def delete(db: Session, actor: Actor, annotation_id: str) -> None:
    """Delete your annotation (one already included in a report stays in the report's history)."""
    a = _own(db, actor, annotation_id)
    study_id = a.study_id
    db.delete(a)
    audit_event(
        db, actor, "annotation.delete", target_type="study", target_id=study_id, detail={"annotation": annotation_id}
    )


def include_in_report(db: Session, store: ObjectStore, actor: Actor, annotation_id: str) -> AnnotationOut:
    """Include an annotation (any author's) in the study's report draft, as recorded edits: a measurement
    becomes structured rows (``reader_measurements``: SR, FHIR and HL7 rows) and its sentence is appended to
    the radiologist's comment (the PDF and the report panel show it); a note, the sentence only. A signed
    report must be amended first (409)."""
    a = _load(db, annotation_id)
    authorize_object(db, actor, Permission.REPORT_EDIT, _object(db, a.study_id))
    if a.include_in_report:
        raise LifecycleError(f"annotation {a.id} is already in the report")
    row = reports.for_study(db, a.study_id)
    if row is None:
        raise NotFoundError(f"study {a.study_id} has no report yet")
    report = reports.load(db, store, row.id)
    author = db.get(UserRow, a.author_id)
    sentence = report_sentence(
        a.kind, a.geometry or {}, (a.geometry or {}).get("values", {}), a.text, author.display_name if author else "?"
    )
    rows = reader_rows(a.id, a.kind, a.geometry or {}, (a.geometry or {}).get("values", {}), a.text, author)
    edited, paths = report, []
    for r in rows:  # a measurement: structured rows, which the SR, FHIR and HL7 write as such
        edited = lifecycle.edit(
            edited, {"/reader_measurements/-": r.model_dump(mode="json")}, who=actor.display_name, role=actor.role
        )
        paths.append("/reader_measurements/-")
    # and its sentence in the comment, which the PDF and the report panel show (they do not list the rows yet)
    comment = edited.narrative.radiologist_comment.rstrip()
    new_comment = f"{comment}\n{sentence}" if comment else sentence
    edited = lifecycle.edit(
        edited, {"/narrative/radiologist_comment": new_comment}, who=actor.display_name, role=actor.role
    )
    paths.append("/narrative/radiologist_comment")
    reports.save(db, store, edited, study_id=row.study_id, analysis_id=row.analysis_id, user_id=actor.id)
    a.include_in_report = True
    audit_event(
        db,
        actor,
        "report.edit",
        target_type="report",
        target_id=row.id,
        detail={"paths": paths, "annotation": a.id, "version": edited.version},
    )
    return annotation_out(a, author)
