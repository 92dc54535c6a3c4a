"""Readers' measurements and annotations on a study: validated geometry, values computed from the image.

A viewer sends what the reader drew, in scanner (RAS) millimetres; the values stored with it are
computed here from the stored image, never taken from the client:

    distance  two points                     → ``length_mm``
    roi       two opposite corners of a box  → ``area_mm2``, ``mean``, ``sd``, ``min``, ``max``,
              on one plane (axial, coronal,     ``n_voxels``, of the voxels of ``image`` whose centres
              sagittal) of ``image``            lie in the box, within half a voxel of the plane
    text      one point, or two corners      → the reader's text (no value)

:func:`report_sentence` writes the one line a radiologist adds to the report when including it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from neuronav.errors import InputError
from neuronav.volume import Volume

Kind = Literal["distance", "roi", "text"]
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
    if kind not in ("distance", "roi", "text"):
        raise InputError(f"unknown annotation kind {kind!r}; one of distance, roi, text")
    if not isinstance(points_mm, list):
        raise InputError("points_mm must be a list of [x, y, z] points")
    want = {"distance": (2,), "roi": (2,), "text": (1, 2)}[kind]
    if len(points_mm) not in want:
        raise InputError(f"a {kind} annotation needs {' or '.join(map(str, want))} point(s), got {len(points_mm)}")
    points = [_point(p, f"point {i + 1}") for i, p in enumerate(points_mm)]
    if kind == "text" and not (text or "").strip():
        raise InputError("a text annotation needs its text")
    if text is not None and len(text) > MAX_TEXT:
        raise InputError(f"the text is longer than {MAX_TEXT} characters")
    if kind == "roi":
        if plane not in PLANE_AXIS:
            raise InputError(f"an roi needs its plane: axial, coronal or sagittal (got {plane!r})")
        if not image:
            raise InputError("an roi needs the image it was drawn on")
        axis = PLANE_AXIS[plane]
        (a, b) = points
        spans = [abs(a[i] - b[i]) for i in range(3) if i != axis]
        if min(spans) <= 0:
            raise InputError("the roi has no area: its two corners share a row or a column")
    return Geometry(kind=kind, points_mm=points, plane=plane if kind == "roi" else None, image=image)  # type: ignore[arg-type]


def distance_mm(geometry: Geometry) -> float:
    a, b = (np.asarray(p, dtype=float) for p in geometry.points_mm)
    return float(np.linalg.norm(a - b))


def roi_stats(geometry: Geometry, volume: Volume) -> dict[str, float | int]:
    """Area and intensity statistics of the voxels of ``volume`` inside the roi box on its plane."""
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
    if kind == "roi":
        return (
            f"Reader measurement ({author}): region of interest on the {geometry.get('plane')} plane of "
            f"{geometry.get('image')}, area {values['area_mm2']:.1f} mm², mean intensity {values['mean']:.1f} "
            f"(SD {values['sd']:.1f}, {values['n_voxels']} voxels){note}."
        )
    where = _fmt_point(points[0]) if points else "the image"
    return f"Reader annotation ({author}) at {where}: {(text or '').strip()}"
