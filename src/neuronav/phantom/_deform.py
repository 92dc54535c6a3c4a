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
    rim_mm: float = 0.0  # > 0: the push fades to 0 at the brain surface over this depth (large mass effect)


def _rim_factor(depth: npt.NDArray[np.floating], rim_mm: float) -> npt.NDArray[np.floating]:
    """Smoothstep of depth / rim: 0 at the brain surface, 1 from ``rim_mm`` inwards."""
    t = np.clip(np.asarray(depth) / rim_mm, 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t))


def _shift(r: npt.NDArray[np.floating], src: MassSource) -> npt.NDArray[np.floating]:
    p = src.power
    inner = np.maximum(r**p - src.radius_mm**p, 0.0) ** (1.0 / p)
    return np.asarray((r - inner) * np.exp(-((r / src.taper_mm) ** 2)))


_HULL_CACHE: dict[int, F32] = {}


def hull_depth(anatomy: Anatomy) -> F32:
    """Depth (mm) below the brain's outer hull: the brain mask closed over 8 mm (sulci, the
    interhemispheric fissure) with its cavities (ventricles) filled; 0 outside. Cached per anatomy."""
    from scipy import ndimage

    key = id(anatomy.brain)
    if key not in _HULL_CACHE:
        dilated = ndimage.distance_transform_edt(~anatomy.brain) <= 8.0
        closed = ndimage.distance_transform_edt(np.pad(dilated, 10))[10:-10, 10:-10, 10:-10] > 8.0
        hull = ndimage.binary_fill_holes(closed | anatomy.brain)
        _HULL_CACHE.clear()
        _HULL_CACHE[key] = ndimage.distance_transform_edt(hull).astype(np.float32)
    return _HULL_CACHE[key]


def depth_at(anatomy: Anatomy, points: F64) -> F64:
    """Depth below the brain's hull (mm, linear interpolation of :func:`hull_depth`) at RAS points (…, 3)."""
    from scipy import ndimage

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    idx = np.stack([anatomy.to_index(p) for p in pts], axis=1)
    vals = ndimage.map_coordinates(hull_depth(anatomy), idx, order=1, mode="constant", cval=0.0)
    return np.asarray(vals, dtype=np.float64).reshape(np.asarray(points).shape[:-1])


def backward_displacement(points: F64, sources: list[MassSource], anatomy: Anatomy | None = None) -> F64:
    """Displacement u with src = x − u(x), for points (…, 3) in RAS mm. Sources with a rim need the
    ``anatomy`` (its depth map)."""
    pts = np.asarray(points, dtype=np.float64)
    u = np.zeros_like(pts)
    depth = None
    for s in sources:
        d = pts - np.asarray(s.centre)
        r = np.linalg.norm(d, axis=-1, keepdims=True)
        safe = np.where(r > 1e-9, r, 1.0)
        w: npt.NDArray[np.floating] | float = 1.0
        if s.rim_mm > 0:
            if anatomy is None:
                raise ValueError("a mass source with a rim needs the anatomy")
            if depth is None:
                depth = depth_at(anatomy, pts)[..., None]
            w = _rim_factor(depth, s.rim_mm)
        u += _shift(r, s) * w * d / safe
    return u


def forward_position(
    point: F64, sources: list[MassSource], iterations: int = 100, anatomy: Anatomy | None = None
) -> F64:
    """Where tissue that started at ``point`` ends up (solves x − u(x) = point by fixed point)."""
    p = np.asarray(point, dtype=np.float64)
    x = p.copy()
    for _ in range(iterations):
        nxt = p + backward_displacement(x, sources, anatomy)
        if float(np.max(np.abs(nxt - x))) < 1e-6:
            return nxt
        x = nxt
    return x


def septum_shift_mm(sources: list[MassSource], septum: F64, anatomy: Anatomy | None = None) -> float:
    """Signed lateral (x) displacement of the tissue that started at ``septum`` (exact, from the map)."""
    if not sources:
        return 0.0
    return float(forward_position(septum, sources, anatomy=anatomy)[0] - np.asarray(septum, dtype=np.float64)[0])


def septum_at_level_mm(sources: list[MassSource], septum: F64, anatomy: Anatomy | None = None) -> float:
    """x (mm) where the midsagittal septum sheet (template x = septum x) crosses the septum's own level
    (y, z) after the deformation, minus its x before: the shift a reader measures at the foramina of
    Monro in the deformed image (Eulerian), exact from the backward map (a 1-D root by bisection)."""
    c = np.asarray(septum, dtype=np.float64)
    if not sources:
        return 0.0

    def src_x(x: float) -> float:
        p = np.array([x, c[1], c[2]])
        return float(p[0] - backward_displacement(p, sources, anatomy)[0] - c[0])

    lo, hi = c[0] - 40.0, c[0] + 40.0
    if src_x(lo) > 0 or src_x(hi) < 0:
        raise ValueError("the septum sheet left the search range")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if src_x(mid) < 0:
            lo = mid
        else:
            hi = mid
    return float(0.5 * (lo + hi) - float(c[0]))


RIM_MM = 25.0


def scale_to_shift(sources: list[MassSource], septum: F64, target_mm: float, anatomy: Anatomy) -> list[MassSource]:
    """The sources with a wider-reaching push so that the septum at its level
    (:func:`septum_at_level_mm`) moves by ``target_mm`` (magnitude) along x, away from the mass
    (a large mass effect: the enclosed brain transmits the push).

    One parameter t spreads the push: for t in [0, 1] the fall-off power goes from p to 1
    (p = 1 moves all tissue outside the ball by the same R, tapered) and the taper L grows by (1 + t);
    for t in [1, 2] the inserted radius grows by up to 50 %; for t in [-1, 0] the ball shrinks (a
    target below the seed's own shift). The septum's displacement grows with t, so a bisection on
    it converges. The skull does not move, so the push fades to 0 at the brain surface over
    ``RIM_MM`` (the cortex stays in place; deep structures and the midline move). Raises ValueError
    when t = 2 does not reach the target (a mass too small, too far from, or centred on, the midline)."""
    if not sources:
        raise ValueError("no mass to shift the midline with")

    def spread(t: float) -> list[MassSource]:
        a, b, c = min(max(t, 0.0), 1.0), max(t - 1.0, 0.0), max(-t, 0.0)
        return [
            MassSource(
                centre=s.centre,
                radius_mm=s.radius_mm * (1.0 + 0.5 * b) * (1.0 - 0.9 * c),
                taper_mm=s.taper_mm * (1.0 + a) * (1.0 + 0.5 * b),
                power=s.power - a * (s.power - 1.0),
                rim_mm=RIM_MM,
            )
            for s in sources
        ]

    target = abs(float(target_mm))
    lo, hi = -1.0, 2.0  # t < 0: the seed's own fall-off with a smaller ball (for a target below its shift)
    if abs(septum_at_level_mm(spread(hi), septum, anatomy)) < target:
        raise ValueError(f"the mass cannot shift the midline by {target:.1f} mm")
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if abs(septum_at_level_mm(spread(mid), septum, anatomy)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-6:
            break
    return spread(hi)


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
        if s.rim_mm > 0:
            factor *= _rim_factor(
                anatomy.depth[inside[0] + lo[0], inside[1] + lo[1], inside[2] + lo[2]], s.rim_mm
            ).astype(np.float32)
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
