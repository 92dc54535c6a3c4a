"""Midline shift: displacement of the septum pellucidum from the brain's own midline.

Measured on the working grid (MNI152 space, 2 mm) of :class:`~neuronav.analysis.preprocess.Preprocessed`.

1. CSF score: the mean of the signed z-scored channels present (T2 +, FLAIR −, T1 −, T1c −), so
   the ventricles score ≈ +3 and brain tissue ≤ 0 whatever sequences are available.
2. Septum: in the region of the frontal horns at the foramina of Monro (MNI y −2…18 mm,
   z 4…20 mm, |x| ≤ 24 mm), the CSF profiles along x of the axial rows are averaged with Gaussian
   weights centred on the normal septum (y 4, z 12; σ 6 mm in y, 5 mm in z). The septum is the thin
   tissue strip between the two frontal horns: a dip in that profile flanked by two CSF peaks.
   The profile is interpolated to 0.05 mm with a cubic spline; the inner walls of the horns are the
   half-level crossings between the dip and each peak; the septum x is the midpoint of the two
   inner walls (sub-voxel precision from the intensity edges, not from voxel counts). When no dip
   is resolved (one horn effaced or the septum thinner than the grid), the midpoint of the
   half-maximum edges of the CSF lump is used instead and ``level`` says so.
3. Ideal midline: the plane of left-right mirror symmetry of the brain, x = a, found by minimising
   the robust (L1) difference between the CSF score and its mirror image about x = a over the
   brain outside a 50 mm ball around the septum (so a residual registration offset is not counted
   as shift and the mass itself barely weighs), a searched over ±8 mm, refined to 0.05 mm.
4. Shift = septum x − a: positive towards the patient's right (RAS +x), as in the findings model.

Validated on phantoms (see tests/analysis/test_measure_midline.py) against the generator's truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from neuronav.analysis._measure_common import csf_score, produced_by
from neuronav.analysis.preprocess import Preprocessed
from neuronav.findings import MidlineShift

__all__ = ["SeptumFit", "find_septum", "midline_shift", "midline_shift_on_grid", "symmetry_plane_x"]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

_ROI_Y = (-2.0, 18.0)
_ROI_Z = (4.0, 20.0)
_ROI_X = 24.0
_CENTRE_Y, _CENTRE_Z = 4.0, 12.0
_SIGMA_Y, _SIGMA_Z = 6.0, 5.0
_FINE = 0.05  # mm
_MIN_PROMINENCE = 0.4  # CSF-score units between the dip and the lower of its two peaks
_MIN_PEAK = 0.8  # a peak must look like CSF
_SEPTUM_MAX_OFFSET = 15.0  # mm from the symmetry plane
_SYM_SEARCH = 8.0  # mm
_SYM_EXCLUDE_MM = 50.0


@dataclass(frozen=True)
class SeptumFit:
    x_mm: float
    method: str  # "septum" (dip between the horns) or "lump" (no dip resolved)
    left_wall_mm: float
    right_wall_mm: float


def _axis_mm(affine: F64, shape: tuple[int, ...], axis: int) -> F64:
    return np.asarray(affine[axis, 3] + affine[axis, axis] * np.arange(shape[axis]), dtype=np.float64)


def _check_axis_aligned(affine: F64) -> None:
    off = affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))
    if np.any(np.abs(off) > 1e-6) or np.any(np.diag(affine[:3, :3]) <= 0):
        raise ValueError("the midline measurement needs an axis-aligned RAS working grid")


def septum_profile(score: F32, mask: npt.NDArray[np.bool_], affine: F64) -> tuple[F64, F64]:
    """Weighted mean CSF profile along x across the septal region: (x mm, profile)."""
    _check_axis_aligned(affine)
    xs, ys, zs = (_axis_mm(affine, score.shape, a) for a in range(3))
    ix = np.flatnonzero(np.abs(xs) <= _ROI_X)
    iy = np.flatnonzero((ys >= _ROI_Y[0]) & (ys <= _ROI_Y[1]))
    iz = np.flatnonzero((zs >= _ROI_Z[0]) & (zs <= _ROI_Z[1]))
    if ix.size < 5 or iy.size == 0 or iz.size == 0:
        raise ValueError("the working grid does not cover the septal region")
    sub = score[np.ix_(ix, iy, iz)].astype(np.float64)
    inside = mask[np.ix_(ix, iy, iz)]
    wy = np.exp(-0.5 * ((ys[iy] - _CENTRE_Y) / _SIGMA_Y) ** 2)
    wz = np.exp(-0.5 * ((zs[iz] - _CENTRE_Z) / _SIGMA_Z) ** 2)
    w = (wy[:, None] * wz[None, :])[None, :, :] * inside
    total = w.sum(axis=(1, 2))
    prof = np.where(total > 0, (sub * w).sum(axis=(1, 2)) / np.maximum(total, 1e-12), np.nan)
    if np.all(np.isnan(prof)):
        raise ValueError("the septal region lies outside the brain mask")
    prof = np.where(np.isnan(prof), np.nanmin(prof), prof)
    return xs[ix], np.asarray(prof, dtype=np.float64)


def _crossing(x: F64, p: F64, start: int, stop: int, level: float) -> float:
    """First x, walking from index ``start`` towards ``stop``, where p crosses ``level`` (linear)."""
    step = 1 if stop > start else -1
    for n in range(start, stop, step):
        a, b = p[n], p[n + step]
        if (a - level) * (b - level) <= 0 and a != b:
            return float(x[n] + (level - a) / (b - a) * (x[n + step] - x[n]))
    return float(x[stop])


def find_septum(x: F64, profile: F64) -> SeptumFit | None:
    """Septum x (mm) from a CSF profile along x; None when no CSF is found."""
    from scipy.interpolate import CubicSpline

    fx = np.arange(x[0], x[-1] + 1e-9, _FINE)
    fp = CubicSpline(x, profile)(fx)
    n = len(fp)
    # local extrema on the fine profile
    d = np.diff(fp)
    minima = np.flatnonzero((np.r_[d[:1], d] < 0) & (np.r_[d, d[-1:]] >= 0))
    best: tuple[float, int, int, int] | None = None
    reach = int(12.0 / _FINE)
    for m_ in minima:
        m = int(m_)
        if abs(fx[m]) > _SEPTUM_MAX_OFFSET:
            continue
        l0, r1 = max(0, m - reach), min(n, m + 1 + reach)
        if m - l0 < 2 or r1 - (m + 1) < 2:
            continue
        li = l0 + int(np.argmax(fp[l0:m]))
        ri = m + 1 + int(np.argmax(fp[m + 1 : r1]))
        prom = min(fp[li], fp[ri]) - fp[m]
        if prom < _MIN_PROMINENCE or min(fp[li], fp[ri]) < _MIN_PEAK:
            continue
        if best is None or prom > best[0]:
            best = (float(prom), m, li, ri)
    if best is not None:
        _, m, li, ri = best
        left = _crossing(fx, fp, m, li, 0.5 * (fp[m] + fp[li]))
        right = _crossing(fx, fp, m, ri, 0.5 * (fp[m] + fp[ri]))
        return SeptumFit(x_mm=0.5 * (left + right), method="septum", left_wall_mm=left, right_wall_mm=right)
    # no dip: the CSF lump nearest the middle, its half-maximum edges
    centre = np.abs(fx) <= _SEPTUM_MAX_OFFSET
    peak = int(np.flatnonzero(centre)[int(np.argmax(fp[centre]))])
    base = float(np.percentile(fp, 10))
    if fp[peak] < _MIN_PEAK:
        return None
    level = 0.5 * (fp[peak] + base)
    left = _crossing(fx, fp, peak, 0, level)
    right = _crossing(fx, fp, peak, n - 1, level)
    return SeptumFit(x_mm=0.5 * (left + right), method="lump", left_wall_mm=left, right_wall_mm=right)


def symmetry_plane_x(score: F32, mask: npt.NDArray[np.bool_], affine: F64, *, exclude_centre: F64) -> float:
    """x (mm) of the sagittal plane of best left-right mirror symmetry of ``score`` (see module doc)."""
    _check_axis_aligned(affine)
    sx = float(affine[0, 0])
    xs, ys, zs = (_axis_mm(affine, score.shape, a) for a in range(3))
    far = (
        (xs[:, None, None] - exclude_centre[0]) ** 2
        + (ys[None, :, None] - exclude_centre[1]) ** 2
        + (zs[None, None, :] - exclude_centre[2]) ** 2
    ) > _SYM_EXCLUDE_MM**2
    use = mask & far
    idx = np.nonzero(use)
    if idx[0].size < 1000:
        return 0.0
    vals = score[idx].astype(np.float64)
    x = xs[idx[0]]

    def cost(a: float) -> float:
        mirrored_i = (2.0 * a - x - affine[0, 3]) / sx
        mv = ndi.map_coordinates(score, [mirrored_i, idx[1], idx[2]], order=1, mode="constant", cval=0.0)
        mm = ndi.map_coordinates(mask.astype(np.float32), [mirrored_i, idx[1], idx[2]], order=1, mode="constant")
        ok = mm > 0.99
        return float(np.mean(np.abs(vals[ok] - mv[ok]))) if np.any(ok) else np.inf

    coarse = np.arange(-_SYM_SEARCH, _SYM_SEARCH + 1e-9, 0.5)
    costs = np.array([cost(float(a)) for a in coarse])
    a0 = float(coarse[int(np.argmin(costs))])
    fine = np.arange(a0 - 0.5, a0 + 0.5 + 1e-9, 0.1)
    fcost = np.array([cost(float(a)) for a in fine])
    k = int(np.argmin(fcost))
    a1 = float(fine[k])
    if 0 < k < len(fine) - 1:  # parabolic refinement
        c0, c1, c2 = fcost[k - 1], fcost[k], fcost[k + 1]
        den = c0 - 2 * c1 + c2
        if den > 0:
            a1 += 0.1 * 0.5 * (c0 - c2) / den
    return a1


def midline_shift(pre: Preprocessed) -> MidlineShift:
    """Signed midline shift (mm, + towards the patient's right) at the septum pellucidum.

    See the module docstring for the method. When no ventricular CSF is found in the septal region
    the shift is reported as 0 with ``level`` saying that it could not be measured."""
    return midline_shift_on_grid(pre.channels, pre.brain_mask, np.asarray(pre.grid.affine, dtype=np.float64))


def midline_shift_on_grid(channels: Mapping[str, F32], brain_mask: npt.NDArray[np.bool_], affine: F64) -> MidlineShift:
    """:func:`midline_shift` on z-scored channels of an axis-aligned RAS grid in MNI space."""
    score = csf_score(channels)
    x, prof = septum_profile(score, brain_mask, affine)
    fit = find_septum(x, prof)
    by = produced_by("midline_shift")
    if fit is None:
        return MidlineShift(
            shift_mm=0.0,
            magnitude_mm=0.0,
            level="not measurable: no ventricular CSF found at the foramina of Monro",
            produced_by=by,
        )
    centre = np.array([fit.x_mm, _CENTRE_Y, _CENTRE_Z])
    plane = symmetry_plane_x(score, brain_mask, affine, exclude_centre=centre)
    shift = round(fit.x_mm - plane, 2)
    where = "septum pellucidum at the foramina of Monro"
    if fit.method == "lump":
        where = "centre of the frontal horns at the foramina of Monro (septum not resolved)"
    return MidlineShift(
        shift_mm=shift,
        magnitude_mm=abs(shift),
        level=f"{where}, against the brain's mirror-symmetry plane (MNI x {plane:+.1f} mm)",
        produced_by=by,
    )
