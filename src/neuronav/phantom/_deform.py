"""Mass effect: a smooth radial displacement that pushes brain tissue away from each lesion.

Model: each lesion inserts a ball of radius R at its centre c. Tissue at distance r moves out to
(r^p + R^p)^(1/p), tapered by exp(−(r/L)²) so the effect fades far away. p = 3 would preserve
volume in an unbounded medium; the brain is enclosed by the skull, which transmits the push further
(towards the ventricles and across the midline), so p = 2 (the slower, cylinder-like fall-off) is
used. We store the backward map (target → source), which is analytic:
``src = x − s(r)·(x − c)/r`` with ``s(r) = (r − (max(r^p − R^p, 0))^(1/p))·exp(−(r/L)²)``; s falls
with r, so the map is monotone along each ray and never folds. Displacements of several lesions add.

The skull and scalp are not deformed; the brain mask stays fixed, and CSF is recomputed as what the
displaced grey and white matter leave inside it (so sulci and ventricles are effaced near a mass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from neuronav.phantom._anatomy import Anatomy

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_MIN_SHIFT_MM = 0.05  # displacements below this are not applied (defines the box deformed)


@dataclass(frozen=True)
class MassSource:
    centre: tuple[float, float, float]  # RAS mm (template / head frame)
    radius_mm: float  # radius of the inserted ball
    taper_mm: float  # L in exp(-(r/L)^2)
    power: float = 2.0


def _shift(r: npt.NDArray[np.floating], src: MassSource) -> npt.NDArray[np.floating]:
    p = src.power
    inner = np.maximum(r**p - src.radius_mm**p, 0.0) ** (1.0 / p)
    return np.asarray((r - inner) * np.exp(-((r / src.taper_mm) ** 2)))


def backward_displacement(points: F64, sources: list[MassSource]) -> F64:
    """Displacement u with src = x − u(x), for points (…, 3) in RAS mm."""
    pts = np.asarray(points, dtype=np.float64)
    u = np.zeros_like(pts)
    for s in sources:
        d = pts - np.asarray(s.centre)
        r = np.linalg.norm(d, axis=-1, keepdims=True)
        safe = np.where(r > 1e-9, r, 1.0)
        u += _shift(r, s) * d / safe
    return u


def forward_position(point: F64, sources: list[MassSource], iterations: int = 100) -> F64:
    """Where tissue that started at ``point`` ends up (solves x − u(x) = point by fixed point)."""
    p = np.asarray(point, dtype=np.float64)
    x = p.copy()
    for _ in range(iterations):
        nxt = p + backward_displacement(x, sources)
        if float(np.max(np.abs(nxt - x))) < 1e-6:
            return nxt
        x = nxt
    return x


def _reach_mm(src: MassSource) -> float:
    r = np.linspace(src.radius_mm, src.radius_mm + 6.0 * src.taper_mm, 2000)
    s = _shift(r, src)
    above = np.nonzero(s >= _MIN_SHIFT_MM)[0]
    return float(r[above[-1]]) if above.size else src.radius_mm


def deform_tissue(anatomy: Anatomy, sources: list[MassSource]) -> tuple[F32, F32, F32]:
    """Grey matter, white matter and CSF probability maps after the mass effect (new arrays)."""
    from scipy import ndimage

    gm = anatomy.gm.copy()
    wm = anatomy.wm.copy()
    if not sources:
        return gm, wm, anatomy.csf.copy()
    shape = np.array(anatomy.shape)
    lo = shape.copy()
    hi = np.zeros(3, dtype=int)
    for s in sources:
        c = anatomy.to_index(s.centre)
        reach = _reach_mm(s)
        lo = np.minimum(lo, np.floor(c - reach).astype(int))
        hi = np.maximum(hi, np.ceil(c + reach).astype(int) + 1)
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return gm, wm, anatomy.csf.copy()
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    brain = anatomy.brain[box]
    inside = np.nonzero(brain)
    offs = [np.asarray(inside[n], dtype=np.float32) + np.float32(lo[n]) for n in range(3)]
    coords = np.stack(offs)
    for s in sources:
        c = anatomy.to_index(s.centre).astype(np.float32)
        d = [offs[n] - c[n] for n in range(3)]
        r = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        factor = (_shift(r, s) / np.maximum(r, np.float32(1e-6))).astype(np.float32)
        for n in range(3):
            coords[n] -= factor * d[n]
    for arr, src_map in ((gm, anatomy.gm), (wm, anatomy.wm)):
        sampled = ndimage.map_coordinates(src_map, coords, order=1, mode="nearest", output=np.float32)
        arr[box][inside] = sampled
    gbox, wbox = gm[box], wm[box]
    total = gbox + wbox
    over = total > 1.0
    if np.any(over):
        scale = np.where(over, 1.0 / np.maximum(total, 1e-6), 1.0).astype(np.float32)
        gbox *= scale
        wbox *= scale
    csf = anatomy.csf.copy()
    csf[box] = np.clip(brain.astype(np.float32) - gbox - wbox, 0.0, 1.0)
    return gm, wm, csf
