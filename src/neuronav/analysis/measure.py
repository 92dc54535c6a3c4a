"""Measurements of the analysis engine, returned as :mod:`neuronav.findings` objects.

Public API (each function is an algorithm computed from the labels/images; its docstring says how):

* :func:`tumour_volumes`  per-label, whole-tumour and tumour-core volumes (mL) of a BraTS label map
* :func:`lesions`         lesions as radiologists count them (:func:`tumour_lesions`): a tumour core
                          with its oedema, satellites joined, oedema islands never a lesion; core
                          volume, centroid (RAS and MNI), 3D and axial diameters, bidimensional
                          product, atlas location, enhancing and oedema volumes
* :func:`lesion_map`      which lesion each voxel belongs to (the voxels a reader rejects with it)
* :func:`locate`          hemisphere, lobe and AAL2 region of an MNI point (:mod:`.atlas`)
* :func:`midline_shift`   septum pellucidum vs the brain's symmetry plane (:mod:`.midline`)
* :func:`ventricles`      lateral ventricle volume, left/right asymmetry and status
* :func:`haemorrhage`     T1-bright, T2-dark region inside the tumour core
* :func:`oedema`          oedema present when its volume reaches :data:`OEDEMA_MIN_ML`

Volumes measured on the working grid (MNI space) are converted back to the patient's own size by
the determinant of the registration (``world_to_mni``), so a brain that the affine registration
enlarged is not reported with enlarged ventricles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from neuronav.analysis._measure_common import ALGORITHM_VERSION, csf_score, produced_by
from neuronav.analysis.atlas import ATLAS_INFO, locate
from neuronav.analysis.midline import midline_shift
from neuronav.analysis.preprocess import Preprocessed
from neuronav.findings import Haemorrhage, Lesion, Oedema, Vec3, Ventricles, Volumes

__all__ = [
    "ALGORITHM_VERSION",
    "ATLAS_INFO",
    "HAEMORRHAGE_MIN_ML",
    "OEDEMA_MIN_ML",
    "SATELLITE_DISTANCE_MM",
    "VENTRICLE_ASYMMETRY_LIMIT",
    "haemorrhage",
    "lesion_map",
    "lesions",
    "locate",
    "midline_shift",
    "normal_ventricle_range_ml",
    "oedema",
    "tumour_lesions",
    "tumour_volumes",
    "ventricles",
]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
BoolArr = npt.NDArray[np.bool_]

OEDEMA_MIN_ML = 1.0
HAEMORRHAGE_MIN_ML = 0.2
VENTRICLE_ASYMMETRY_LIMIT = 0.25
# Normal lateral-ventricle volume: this factor range × the template's own volume measured by the
# same algorithm (the MNI152 2009 template is an average of 152 young adults).
VENTRICLE_NORMAL_FACTORS = (0.4, 2.5)
# core fragments closer than this belong to one lesion (a satellite of its tumour); RANO-BM counts
# lesions at least 10 mm apart as separate, and 10 mm is the smallest measurable lesion
SATELLITE_DISTANCE_MM = 10.0
_CONN26 = np.ones((3, 3, 3), dtype=bool)


def _voxel_ml(affine: F64) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def _check_labels(labels: npt.NDArray[np.generic], affine: F64) -> None:
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D array, got shape {labels.shape}")
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise ValueError("affine must be a non-singular 4×4 matrix (voxel → RAS mm)")


def tumour_volumes(labels: npt.NDArray[np.generic], affine: F64) -> Volumes:
    """Volumes (mL) of BraTS labels 1 (necrotic core), 2 (oedema), 3 (enhancing), whole tumour
    (1+2+3) and tumour core (1+3): exact voxel counts × |det(affine[:3, :3])| / 1000."""
    _check_labels(labels, affine)
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel().clip(0, 4), minlength=5)
    v = _voxel_ml(affine)
    n1, n2, n3 = (float(counts[k]) * v for k in (1, 2, 3))
    return Volumes(
        necrotic_core_ml=round(n1, 4),
        oedema_ml=round(n2, 4),
        enhancing_ml=round(n3, 4),
        whole_tumour_ml=round(n1 + n2 + n3, 4),
        tumour_core_ml=round(n1 + n3, 4),
    )


def oedema(volumes: Volumes) -> Oedema:
    """Oedema is present when the label-2 volume is at least :data:`OEDEMA_MIN_ML` (1 mL: smaller
    rims are within the partial-volume margin of a segmentation on a 1–2 mm grid)."""
    return Oedema(present=volumes.oedema_ml >= OEDEMA_MIN_ML, volume_ml=volumes.oedema_ml)


# ---------------------------------------------------------------------------------------- lesions


def _max_pairwise(points: F64) -> tuple[float, F64, F64]:
    """Largest distance between points (on their convex hull) and its two end points."""
    from scipy.spatial import ConvexHull, QhullError

    pts = points
    if len(points) > points.shape[1] + 1:
        try:
            pts = points[ConvexHull(points).vertices]
        except QhullError:  # flat or collinear: use the extreme points along each axis (and all if few)
            if len(points) > 4000:
                keep = np.unique(np.r_[np.argmin(points, axis=0), np.argmax(points, axis=0)])
                sub = points[:: max(1, len(points) // 4000)]
                pts = np.vstack([points[keep], sub])
    if len(pts) < 2:
        return 0.0, pts[0], pts[0]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return float(np.sqrt(d2[i, j])), pts[i], pts[j]


@dataclass(frozen=True)
class _Axial:
    longest: float
    perpendicular: float


def _axial_diameters(ras: F64, affine: F64) -> _Axial:
    """Longest diameter in an axial plane and the widest extent perpendicular to it on that plane.

    Axial = perpendicular to the RAS S axis, whatever the grid. Voxel centres (RAS mm) are grouped
    into axial slabs of thickness t = max_c |affine[2, c]| (one index step's largest S step: the
    slice thickness of an axial grid, the in-plane spacing of a sagittal or coronal one), slab n
    holding S in [n·t − t/2, n·t + t/2). In each slab the longest distance between the centres'
    (R, A) positions is found on their 2D convex hull; the slab with the longest such diameter is
    "the slice where the lesion is largest" (ties: larger perpendicular extent), and the
    perpendicular diameter is the extent of that slab's points along the direction at right
    angles to the longest one. Distances are between voxel centres."""
    t = float(np.max(np.abs(affine[2, :3])))
    slab = np.floor(ras[:, 2] / t + 0.5).astype(np.int64)
    best = _Axial(0.0, 0.0)
    for n in np.unique(slab):
        pts = ras[slab == n][:, :2]
        if len(pts) < 2:
            continue
        longest, a, b = _max_pairwise(pts)
        if longest <= 0:
            continue
        u = (b - a) / longest
        perp = np.array([-u[1], u[0]])
        proj = pts @ perp
        width = float(proj.max() - proj.min())
        if (longest, width) > (best.longest, best.perpendicular):
            best = _Axial(longest, width)
    return best


def _spacing(affine: F64) -> F64:
    """Voxel size along each index axis (mm): the column norms of the affine's linear part."""
    return np.asarray(np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0)), dtype=np.float64)


def _points(mask: BoolArr, offset: npt.NDArray[np.int64], affine: F64) -> F64:
    ijk = np.stack(np.nonzero(mask), axis=1).astype(np.float64) + offset.astype(np.float64)
    return np.asarray(ijk @ affine[:3, :3].T + affine[:3, 3], dtype=np.float64)


@dataclass(frozen=True)
class TumourLesions:
    """:func:`tumour_lesions`: the lesions, and the oedema that surrounds no core (never a lesion)."""

    lesions: list[Lesion]
    oedema_islands_ml: float


@dataclass(frozen=True)
class _Groups:
    """:func:`_group`: the lesions' voxels in a box around the tumour (``lo``: the box's first index)."""

    lo: npt.NDArray[np.int64]
    box: tuple[slice, ...]
    labels: npt.NDArray[np.generic]  # the labels in the box
    owner: npt.NDArray[np.int64]  # group number per voxel of the box (0: none)
    order: list[int]  # the groups that are lesions, largest core first (lesion n is order[n - 1])
    fragments: npt.NDArray[np.int32]
    islands: BoolArr


def _group(lab: npt.NDArray[Any], aff: F64, *, min_volume_ml: float, satellite_mm: float) -> _Groups | float:
    """The lesion grouping of :func:`tumour_lesions` (its steps 1–3); a float (the oedema-island volume,
    mL) when there is no tumour core at all."""
    if satellite_mm < 0:
        raise ValueError(f"satellite_mm must be ≥ 0, got {satellite_mm}")
    whole = lab > 0
    v = _voxel_ml(aff)
    if not np.any(whole):
        return 0.0
    spacing = _spacing(aff)
    nz = np.nonzero(whole)
    pad = np.ceil(satellite_mm / np.maximum(spacing, 1e-6)).astype(np.int64) + 1
    lo = np.maximum(np.array([int(a.min()) for a in nz]) - pad, 0)
    hi = np.minimum(np.array([int(a.max()) for a in nz]) + pad + 1, np.array(lab.shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    lb = lab[box]
    wb = whole[box]
    cb = (lb == 1) | (lb == 3)
    if not np.any(cb):
        return round(float(wb.sum()) * v, 4)
    dist, nearest = ndi.distance_transform_edt(~cb, sampling=spacing, return_indices=True)
    groups, _ = ndi.label(dist <= satellite_mm / 2.0, structure=_CONN26)
    wcomp, nw = ndi.label(wb, structure=_CONN26)
    has_core = np.zeros(nw + 1, dtype=bool)
    has_core[np.unique(wcomp[cb])] = True
    has_core[0] = False
    oed = wb & ~cb
    attached = oed & has_core[wcomp]
    islands = oed & ~has_core[wcomp]
    owner = np.zeros(lb.shape, dtype=np.int64)
    owner[cb] = groups[cb]
    owner[attached] = groups[tuple(n[attached] for n in nearest)]
    fragments, _ = ndi.label(cb, structure=_CONN26)
    core_owner = np.where(cb, owner, 0)
    core_sizes = np.bincount(core_owner.ravel())
    core_sizes[0] = 0
    order = [int(g) for g in np.argsort(-core_sizes, kind="stable") if core_sizes[g] > 0]
    order = [g for g in order if core_sizes[g] * v >= min_volume_ml]
    return _Groups(lo=lo, box=box, labels=lb, owner=owner, order=order, fragments=fragments, islands=islands)


def lesion_map(
    labels: npt.NDArray[np.generic],
    affine: F64,
    *,
    min_volume_ml: float = 0.05,
    satellite_mm: float = SATELLITE_DISTANCE_MM,
) -> npt.NDArray[np.int32]:
    """Which lesion of :func:`tumour_lesions` (same parameters, same numbering) each voxel belongs to:
    its core and the oedema assigned to it; 0 elsewhere (background, oedema islands, specks below
    ``min_volume_ml``). The voxels a reader removes when rejecting a lesion."""
    _check_labels(labels, affine)
    out = np.zeros(np.shape(labels), dtype=np.int32)
    grouped = _group(
        np.asarray(labels), np.asarray(affine, dtype=np.float64), min_volume_ml=min_volume_ml, satellite_mm=satellite_mm
    )
    if isinstance(grouped, float):
        return out
    rank = np.zeros(int(grouped.owner.max()) + 1, dtype=np.int32)
    for n, g in enumerate(grouped.order, start=1):
        rank[g] = n
    out[grouped.box] = rank[grouped.owner]
    return out


def tumour_lesions(
    labels: npt.NDArray[np.generic],
    affine: F64,
    world_to_mni: F64,
    *,
    min_volume_ml: float = 0.05,
    satellite_mm: float = SATELLITE_DISTANCE_MM,
    probability: npt.NDArray[np.floating[Any]] | None = None,
) -> TumourLesions:
    """Lesions as radiologists count them, largest core first.

    1. The tumour core is labels 1 (necrotic / non-enhancing) and 3 (enhancing). Core fragments closer
       than ``satellite_mm`` to each other are one lesion (a satellite belongs to its tumour): the
       groups are the connected components (26-connectivity) of the voxels within ``satellite_mm / 2``
       of the core (Euclidean distance transform in mm, anisotropic voxels measured as they are), so
       two fragments join when the gap between them is at most about ``satellite_mm``.
    2. Oedema (label 2) connected to a core through the whole tumour belongs to the lesion whose core
       voxel is nearest; oedema connected to no core is an "oedema island": counted in the volumes and
       in ``oedema_islands_ml``, never a lesion.
    3. A group whose core is smaller than ``min_volume_ml`` is not a lesion (a speck of segmentation
       noise far from any tumour).

    Per lesion: the core's volume, centroid (RAS and, through ``world_to_mni``, MNI), largest 3D
    distance between voxel centres, axial diameters (:func:`_axial_diameters`) and their product, and
    location (:func:`locate`); the enhancing part's volume and largest diameter; the lesion's oedema
    volume and the largest extent of the lesion with it; ``volume_ml`` is core + its oedema; with
    ``probability`` (the tumour probability on the grid of ``labels``), its mean and maximum over the
    lesion's voxels.
    """
    _check_labels(labels, affine)
    if probability is not None and probability.shape != labels.shape:
        raise ValueError(f"probability has shape {probability.shape}, the labels {labels.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    w2m = np.asarray(world_to_mni, dtype=np.float64)
    v = _voxel_ml(aff)
    grouped = _group(np.asarray(labels), aff, min_volume_ml=min_volume_ml, satellite_mm=satellite_mm)
    if isinstance(grouped, float):
        return TumourLesions([], grouped)
    lo, lb, owner, order, fragments, islands = (
        grouped.lo,
        grouped.labels,
        grouped.owner,
        grouped.order,
        grouped.fragments,
        grouped.islands,
    )
    boxes = ndi.find_objects(owner)
    out: list[Lesion] = []
    for rank, g in enumerate(order, start=1):
        sub = boxes[g - 1]
        assert sub is not None
        offset = np.array([s.start for s in sub], dtype=np.int64) + lo
        mine = owner[sub] == g
        lab_sub = lb[sub]
        core_mask = mine & ((lab_sub == 1) | (lab_sub == 3))
        enh_mask = mine & (lab_sub == 3)
        ras = _points(core_mask, offset, aff)
        mni = ras @ w2m[:3, :3].T + w2m[:3, 3]
        c_ras = ras.mean(axis=0)
        c_mni = c_ras @ w2m[:3, :3].T + w2m[:3, 3]
        max3d, _, _ = _max_pairwise(ras)
        ax = _axial_diameters(ras, aff)
        n_enh = int(enh_mask.sum())
        enh3d = _max_pairwise(_points(enh_mask, offset, aff))[0] if n_enh >= 2 else 0.0
        n_all = int(mine.sum())
        all3d = _max_pairwise(_points(mine, offset, aff))[0] if n_all >= 2 else 0.0
        n_core = int(core_mask.sum())
        c_mni_t: Vec3 = (float(c_mni[0]), float(c_mni[1]), float(c_mni[2]))
        p_mean = p_max = None
        if probability is not None:
            p_here = np.asarray(probability[grouped.box][sub], dtype=np.float64)[mine]
            p_mean = round(float(np.clip(p_here.mean(), 0.0, 1.0)), 4)
            p_max = round(float(np.clip(p_here.max(), 0.0, 1.0)), 4)
        out.append(
            Lesion(
                index=rank,
                volume_ml=round(n_all * v, 4),
                centroid_ras_mm=(round(float(c_ras[0]), 2), round(float(c_ras[1]), 2), round(float(c_ras[2]), 2)),
                centroid_mni_mm=(round(c_mni_t[0], 2), round(c_mni_t[1], 2), round(c_mni_t[2], 2)),
                max_diameter_mm=round(max3d, 2),
                max_axial_diameter_mm=round(ax.longest, 2),
                perpendicular_axial_diameter_mm=round(ax.perpendicular, 2),
                bidimensional_product_mm2=round(ax.longest * ax.perpendicular, 2),
                location=locate(c_mni_t, component_mni_points=mni),
                core_ml=round(n_core * v, 4),
                enhancing_ml=round(n_enh * v, 4),
                oedema_ml=round((n_all - n_core) * v, 4),
                enhancing_max_diameter_mm=round(enh3d, 2),
                oedema_max_diameter_mm=round(all3d, 2),
                satellites=max(0, len(np.unique(fragments[sub][core_mask])) - 1),
                probability=p_mean,
                probability_max=p_max,
            )
        )
    return TumourLesions(out, round(float(islands.sum()) * v, 4))


def lesions(
    labels: npt.NDArray[np.generic],
    affine: F64,
    world_to_mni: F64,
    *,
    min_volume_ml: float = 0.05,
    satellite_mm: float = SATELLITE_DISTANCE_MM,
) -> list[Lesion]:
    """The lesions of :func:`tumour_lesions` (a tumour core with its oedema; satellites joined)."""
    return tumour_lesions(labels, affine, world_to_mni, min_volume_ml=min_volume_ml, satellite_mm=satellite_mm).lesions


# ------------------------------------------------------------------------------------ ventricles

# Box (MNI mm) holding the lateral ventricles of the template, with room for displacement.
_VENT_BOX = ((-36.0, 36.0), (-56.0, 40.0), (-12.0, 40.0))
_VENT_PRIOR_DILATE_VOX = 3  # 6 mm on the working grid
_VENT_MIN_COMPONENT_ML = 0.1


def _axis_mm(affine: F64, shape: tuple[int, ...], axis: int) -> F64:
    return np.asarray(affine[axis, 3] + affine[axis, axis] * np.arange(shape[axis]), dtype=np.float64)


def _box_mask(affine: F64, shape: tuple[int, int, int]) -> BoolArr:
    xs, ys, zs = (_axis_mm(affine, shape, a) for a in range(3))
    (x0, x1), (y0, y1), (z0, z1) = _VENT_BOX
    return np.asarray(
        ((xs >= x0) & (xs <= x1))[:, None, None]
        & ((ys >= y0) & (ys <= y1))[None, :, None]
        & ((zs >= z0) & (zs <= z1))[None, None, :],
        dtype=bool,
    )


def _csf_threshold(score: F32, brain: BoolArr, region: BoolArr) -> float:
    """Half-way between brain tissue (median score in the brain) and ventricular CSF (the 97th
    percentile of the score in ``region``): the partial-volume boundary of the CSF."""
    tissue = float(np.median(score[brain])) if np.any(brain) else 0.0
    csf = float(np.percentile(score[region & brain], 97)) if np.any(region & brain) else tissue + 2.0
    return 0.5 * (tissue + max(csf, tissue + 1.0))


def _segment_ventricles(score: F32, brain: BoolArr, prior: BoolArr, exclude: BoolArr) -> BoolArr:
    thr = _csf_threshold(score, brain, prior)
    csf = prior & brain & ~exclude & (score >= thr)
    comp, n = ndi.label(csf, structure=_CONN26)
    if n == 0:
        return csf
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    min_vox = max(1, int(np.ceil(_VENT_MIN_COMPONENT_ML / 0.008)))
    keep = np.flatnonzero(sizes >= min_vox)
    return np.asarray(np.isin(comp, keep) & csf, dtype=bool)


@dataclass(frozen=True, eq=False)
class _VentriclePrior:
    region: BoolArr  # where the lateral ventricles may be on the working grid
    template_ml: float  # the template's own lateral-ventricle volume by the same algorithm


@lru_cache(maxsize=1)
def _ventricle_prior() -> _VentriclePrior:
    """The lateral ventricles of the MNI152 template on the working grid: CSF (dark on the T1
    template) inside :data:`_VENT_BOX`, off the midline (|x| > 3 mm, which drops the third ventricle
    and the interhemispheric fissure), the two largest components; dilated by 6 mm for the prior."""
    from neuronav.analysis import registration as reg
    from neuronav.analysis.grid import WORKING_GRID, load_template
    from neuronav.analysis.preprocess import _template_mask_on_grid, normalise_channel

    t = load_template()
    g = WORKING_GRID
    t1 = np.asarray(reg.resample(t.t1, t.affine, g.shape, g.affine), dtype=np.float32)
    brain = np.asarray(_template_mask_on_grid(), dtype=bool)
    score = -normalise_channel(t1, brain)
    box = _box_mask(g.affine, g.shape)
    xs = _axis_mm(g.affine, g.shape, 0)
    off_mid = np.broadcast_to((np.abs(xs) > 3.0)[:, None, None], g.shape)
    deep = np.asarray(ndi.binary_erosion(brain, iterations=5), dtype=bool)  # away from the cortex
    thr = _csf_threshold(score, brain, box & deep)
    csf = box & deep & off_mid & (score >= thr)
    comp, _ = ndi.label(csf, structure=_CONN26)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    core = np.isin(comp, np.argsort(-sizes)[:2]) & (comp > 0)
    region = np.asarray(ndi.binary_dilation(core, iterations=_VENT_PRIOR_DILATE_VOX), dtype=bool) & box
    ml = float(_segment_ventricles(score, brain, region, np.zeros_like(region)).sum()) * g.voxel_volume_ml
    region.setflags(write=False)
    return _VentriclePrior(region=region, template_ml=ml)


def normal_ventricle_range_ml() -> tuple[float, float]:
    """The normal lateral-ventricle volume range (mL): :data:`VENTRICLE_NORMAL_FACTORS` × the
    template's own volume measured by the same algorithm (about 26 mL for MNI152 2009)."""
    ml = _ventricle_prior().template_ml
    return (VENTRICLE_NORMAL_FACTORS[0] * ml, VENTRICLE_NORMAL_FACTORS[1] * ml)


def _native_factor(pre: Preprocessed) -> float:
    """Patient volume per working-grid volume: 1 / |det| of the registration's linear part."""
    det = abs(float(np.linalg.det(np.asarray(pre.world_to_mni, dtype=np.float64)[:3, :3])))
    return 1.0 / det if det > 1e-6 else 1.0


def _check_grid_labels(pre: Preprocessed, grid_labels: npt.NDArray[np.generic]) -> None:
    if grid_labels.shape != pre.grid.shape:
        raise ValueError(f"grid_labels must be on the working grid {pre.grid.shape}, got {grid_labels.shape}")


def ventricles(pre: Preprocessed, grid_labels: npt.NDArray[np.generic]) -> Ventricles:
    """Lateral ventricle volume (mL), left/right volumes, asymmetry and status.

    On the working grid: CSF score (T2 +, FLAIR/T1/T1c −) at or above the half-way level between
    brain tissue and ventricular CSF, inside the template-derived ventricle region (the template's
    lateral ventricles dilated by 6 mm), inside the brain mask, outside the tumour (labels 1–3
    dilated by one voxel), in components of ≥ 0.1 mL. Left = MNI x < 0. Volumes are converted to the
    patient's size (÷ |det| of the registration). asymmetry = (left − right) / (left + right).
    Status: "enlarged" above, "compressed" below :func:`normal_ventricle_range_ml`; otherwise
    "asymmetric" when |asymmetry| > :data:`VENTRICLE_ASYMMETRY_LIMIT`; else "normal".
    """
    _check_grid_labels(pre, grid_labels)
    prior = _ventricle_prior()
    score = csf_score(pre.channels)
    tumour = np.asarray(ndi.binary_dilation(np.asarray(grid_labels) > 0, iterations=1), dtype=bool)
    vent = _segment_ventricles(score, pre.brain_mask, prior.region, tumour)
    xs = _axis_mm(np.asarray(pre.grid.affine, dtype=np.float64), pre.grid.shape, 0)
    v = pre.grid.voxel_volume_ml * _native_factor(pre)
    per_x = vent.sum(axis=(1, 2))
    left = float(per_x[xs < 0].sum()) * v
    right = float(per_x[xs >= 0].sum()) * v
    total = left + right
    asym = (left - right) / total if total > 0 else 0.0
    lo, hi = normal_ventricle_range_ml()
    status: str
    if total > hi:
        status = "enlarged"
    elif total < lo:
        status = "compressed"
    elif abs(asym) > VENTRICLE_ASYMMETRY_LIMIT:
        status = "asymmetric"
    else:
        status = "normal"
    return Ventricles(
        total_ml=round(total, 2),
        left_ml=round(left, 2),
        right_ml=round(right, 2),
        asymmetry=round(asym, 3),
        status=status,  # type: ignore[arg-type]
        produced_by=produced_by("ventricles"),
    )


# ---------------------------------------------------------------------------------- haemorrhage


def _tissue_levels(channel: F32, brain: BoolArr, bright_wm: bool) -> tuple[float, float]:
    """(white matter, grey matter) levels of a channel: the medians of the brighter and darker
    halves of the brain's parenchyma (CSF-like voxels, the darkest/brightest 15 %, left out)."""
    vals = channel[brain]
    if vals.size == 0:
        return (0.0, 0.0)
    vals = vals[vals > np.percentile(vals, 15)] if bright_wm else vals[vals < np.percentile(vals, 85)]
    mid = float(np.median(vals))
    upper = float(np.median(vals[vals >= mid]))
    lower = float(np.median(vals[vals < mid])) if np.any(vals < mid) else mid
    return (upper, lower) if bright_wm else (lower, upper)


def haemorrhage(pre: Preprocessed, grid_labels: npt.NDArray[np.generic]) -> Haemorrhage:
    """Suspected haemorrhage: a region inside the tumour core (labels 1 and 3 on the working grid)
    that is bright on the pre-contrast T1 (above the midpoint between grey- and white-matter levels,
    i.e. at least white-matter bright, where necrosis and tumour are dark) AND dark on T2 (below the
    midpoint between white- and grey-matter levels; FLAIR when there is no T2). Components of the
    region (26-connectivity) of at least 2 voxels count; suspected when they total at least
    :data:`HAEMORRHAGE_MIN_ML`. Without a pre-contrast T1 (T1c cannot tell blood from enhancement)
    nothing is flagged. Tissue levels come from the brain's own intensity distribution
    (:func:`_tissue_levels`); the volume is converted to the patient's size."""
    _check_grid_labels(pre, grid_labels)
    by = produced_by("haemorrhage")
    lab = np.asarray(grid_labels)
    core = (lab == 1) | (lab == 3)
    if "T1" not in pre.channels or not np.any(core):
        return Haemorrhage(suspected=False, volume_ml=0.0, produced_by=by)
    brain = pre.brain_mask & ~(lab > 0)
    t1 = pre.channels["T1"]
    wm1, gm1 = _tissue_levels(t1, brain, bright_wm=True)
    cand = core & (t1 >= 0.5 * (wm1 + gm1))
    dark_name = "T2" if "T2" in pre.channels else ("FLAIR" if "FLAIR" in pre.channels else None)
    if dark_name is not None:
        ch = pre.channels[dark_name]
        wm2, gm2 = _tissue_levels(ch, brain, bright_wm=False)
        cand &= ch <= 0.5 * (wm2 + gm2)
    comp, n = ndi.label(cand, structure=_CONN26)
    if n:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        cand = np.isin(comp, np.flatnonzero(sizes >= 2)) & cand
    vol = float(cand.sum()) * pre.grid.voxel_volume_ml * _native_factor(pre)
    return Haemorrhage(suspected=vol >= HAEMORRHAGE_MIN_ML, volume_ml=round(vol, 3), produced_by=by)
