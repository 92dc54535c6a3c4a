"""Normal head anatomy for phantoms, from the MNI152 2009 maps shipped with nilearn.

Inside the brain mask the tissue is given by probabilities (grey matter, white matter, CSF) that sum
to the mask; outside it a synthetic head is built as shells at fixed distances from a smoothed brain
envelope (subarachnoid CSF, dura, skull tables and diploe, galea, fat, skin) and stored as a class
map. Everything here is computed once per process and must be treated as read-only.

Coordinates: the template grid is 1 mm, axis-aligned, voxel → RAS mm (MNI space), so
``ras = index + origin``; this module checks that and relies on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]

# Class map values. Inside the brain the class is BRAIN and tissue comes from the probability maps.
AIR, BRAIN, CSF_SHELL, DURA, BONE, MARROW, GALEA, FAT, SKIN, SINUS = range(10)
N_CLASSES = 10
CLASS_NAMES = ("air", "brain", "csf_shell", "dura", "bone", "marrow", "galea", "fat", "skin", "sinus")

# Outer edges (mm from the brain envelope) of the shells that make the head outside the brain.
_SHELLS: tuple[tuple[float, int], ...] = (
    (1.5, CSF_SHELL),
    (2.5, DURA),
    (4.0, BONE),
    (7.0, MARROW),
    (8.5, BONE),
    (10.0, GALEA),
    (13.5, FAT),
    (15.0, SKIN),
)

# Septum pellucidum at the level of the foramina of Monro, MNI152 2009 sym (checked on the template:
# frontal horns flank x = 0 at y 2–17 mm, z 5–15 mm).
SEPTUM_MNI = np.array([0.0, 4.0, 12.0])


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The normal head on the 1 mm template grid (all arrays read-only)."""

    affine: F64
    gm: F32
    wm: F32
    csf: F32
    brain: BoolArr
    classes: npt.NDArray[np.uint8]
    depth: F32  # mm from each brain voxel to the outside of the brain mask (0 outside)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.gm.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def origin(self) -> F64:
        return np.asarray(self.affine[:3, 3], dtype=np.float64)

    def to_index(self, ras: npt.ArrayLike) -> F64:
        return np.asarray(np.asarray(ras, dtype=np.float64) - self.origin, dtype=np.float64)

    def to_ras(self, ijk: npt.ArrayLike) -> F64:
        return np.asarray(np.asarray(ijk, dtype=np.float64) + self.origin, dtype=np.float64)

    @property
    def head_centre(self) -> F64:
        """Centre of the head's bounding box (RAS mm): the isocentre the series grids are set on."""
        return _head_centre(self)


@lru_cache(maxsize=1)
def _head_centre(anatomy: Anatomy) -> F64:
    inside = np.nonzero(anatomy.classes != AIR)
    lo = np.array([int(a.min()) for a in inside], dtype=np.float64)
    hi = np.array([int(a.max()) for a in inside], dtype=np.float64)
    return anatomy.to_ras((lo + hi) / 2.0)


def _readonly(*arrays: npt.NDArray[np.generic]) -> None:
    for a in arrays:
        a.setflags(write=False)


@lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Load the MNI152 maps (offline, shipped with nilearn) and build the head. Cached."""
    from nilearn import datasets
    from scipy import ndimage

    t1_img = datasets.load_mni152_template(resolution=1)
    affine = np.asarray(t1_img.affine, dtype=np.float64)
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise RuntimeError("the MNI152 template is expected on an axis-aligned 1 mm RAS grid")
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32))
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32))
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32))
    brain = mask > 0.5
    brain_f = brain.astype(np.float32)
    gm *= brain_f
    wm *= brain_f
    # CSF: what the GM/WM maps leave inside the mask, plus voxels dark on the T1 template (ventricles
    # and sulci that the GM map counts as grey matter). csf + wm <= 1 by construction.
    residual = np.clip(brain_f - gm - wm, 0.0, 1.0)
    dark = np.clip((np.float32(0.62) - t1) / np.float32(0.30), 0.0, 1.0) * brain_f
    csf = np.maximum(residual, dark * (np.float32(1.0) - wm))
    gm = np.clip(brain_f - wm - csf, 0.0, 1.0)
    del residual, dark, t1

    envelope = (ndimage.gaussian_filter(brain_f, 2.0) > 0.3) | brain
    dist_out = ndimage.distance_transform_edt(~envelope).astype(np.float32)
    classes = np.full(brain.shape, AIR, dtype=np.uint8)
    for edge, cls in reversed(_SHELLS):
        classes[dist_out <= edge] = cls
    classes[envelope] = CSF_SHELL
    classes[brain] = BRAIN
    # Superior sagittal sinus: a midline channel in the dura over the vertex and the occiput.
    x = np.arange(brain.shape[0], dtype=np.float64) + affine[0, 3]
    y = np.arange(brain.shape[1], dtype=np.float64) + affine[1, 3]
    z = np.arange(brain.shape[2], dtype=np.float64) + affine[2, 3]
    near_mid = np.abs(x) <= 4.0
    sinus_zone = (z[None, :] > 5.0) | (y[:, None] < -70.0)
    sinus = (
        near_mid[:, None, None]
        & sinus_zone[None, :, :]
        & ((classes == CSF_SHELL) | (classes == DURA))
        & (dist_out <= 2.5)
    )
    classes[sinus] = SINUS
    depth = ndimage.distance_transform_edt(brain).astype(np.float32)
    _readonly(gm, wm, csf, brain, classes, depth)
    return Anatomy(affine=affine, gm=gm, wm=wm, csf=csf, brain=brain, classes=classes, depth=depth)


@lru_cache(maxsize=8)
def candidate_indices(kind: str) -> npt.NDArray[np.intp]:
    """Flat voxel indices where a lesion of ``kind`` may be centred (on a 2 mm sub-grid)."""
    a = load_anatomy()
    sub = np.zeros(a.shape, dtype=bool)
    sub[::2, ::2, ::2] = True
    z = (np.arange(a.shape[2]) + a.affine[2, 3])[None, None, :]
    x = (np.arange(a.shape[0]) + a.affine[0, 3])[:, None, None]
    if kind == "glioma":
        y = (np.arange(a.shape[1]) + a.affine[1, 3])[None, :, None]
        d2 = (x - SEPTUM_MNI[0]) ** 2 + (y - SEPTUM_MNI[1]) ** 2 + (z - SEPTUM_MNI[2]) ** 2
        ok = (a.wm > 0.85) & (a.depth > 14.0) & (np.abs(x) > 14.0) & (z > -20.0) & (d2 < 62.0**2)
    elif kind == "metastasis":
        junction = (a.gm > 0.3) & (a.gm < 0.7) & (a.wm > 0.3) & (a.wm < 0.7)
        ok = junction & (a.depth > 8.0) & (a.depth < 28.0) & (z > -45.0)
    elif kind == "convexity":
        y = (np.arange(a.shape[1]) + a.affine[1, 3])[None, :, None]
        ok = (a.classes == CSF_SHELL) & (z > -5.0) & (y > -85.0) & (y < 55.0) & (np.abs(x) > 12.0)
    else:
        raise ValueError(f"unknown candidate kind {kind!r}")
    flat = np.flatnonzero(ok & sub)
    flat.setflags(write=False)
    return flat


def outward_normal(anatomy: Anatomy, ras: F64) -> F64:
    """Unit vector pointing out of the brain at a point near its surface (smoothed mask gradient)."""
    from scipy import ndimage

    c = np.rint(anatomy.to_index(ras)).astype(int)
    r = 12
    lo = np.maximum(c - r, 0)
    hi = np.minimum(c + r + 1, np.array(anatomy.shape))
    box = anatomy.brain[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32)
    sm = ndimage.gaussian_filter(box, 4.0)
    gx, gy, gz = np.gradient(sm)
    p = tuple(int(v) for v in (c - lo))
    g = -np.array([gx[p], gy[p], gz[p]], dtype=np.float64)
    n = float(np.linalg.norm(g))
    if n < 1e-9:
        d = np.asarray(ras, dtype=np.float64) - anatomy.head_centre
        return np.asarray(d / np.linalg.norm(d), dtype=np.float64)
    return np.asarray(g / n, dtype=np.float64)
