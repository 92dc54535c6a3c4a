"""Lesions as BraTS label maps (1 necrotic core, 2 oedema, 3 enhancing) on the 1 mm template grid.

Each lesion is a set of nested, smoothly deformed ellipsoids (oedema ⊃ tumour ⊃ core) placed where
its type occurs:

- glioma: intra-axial, centred deep in white matter; irregular shape, necrotic core with a thick,
  irregular enhancing rim, large oedema that follows white matter; whole tumour 15–80 mL.
- meningioma: extra-axial, based on the dura of the convexity or the falx; round, sharply
  marginated, homogeneously enhancing, rarely a small necrotic/cystic core, oedema in some.
- metastasis: 1–3 small round lesions at the grey-white junction; thin ring enhancement (solid when
  tiny); oedema far larger than the lesion, confined to white matter.

Shapes are chosen first (on the normal anatomy); the label map is drawn after the mass effect,
against the displaced white matter. Haemorrhage, when present, fills the dependent (posterior, the
patient lying supine) part of one lesion's necrotic core and keeps label 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from neuronav.phantom._anatomy import (
    CSF_SHELL,
    DURA,
    SINUS,
    Anatomy,
    candidate_indices,
    outward_normal,
)
from neuronav.phantom._deform import MassSource

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Box = tuple[slice, slice, slice]

LABEL_CORE, LABEL_OEDEMA, LABEL_ENHANCING = 1, 2, 3


@dataclass(frozen=True)
class LesionShape:
    """Geometry of one lesion, in the head (template) frame, RAS mm."""

    kind: str
    centre: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]  # 3×3, columns are the ellipsoid axes
    r_oedema: tuple[float, float, float]
    r_tumour: tuple[float, float, float]
    r_core: tuple[float, float, float]  # zeros: no core
    core_offset: tuple[float, float, float]
    amp_oedema: float
    amp_tumour: float
    amp_core: float
    oedema_wm_min: float  # oedema only where the (displaced) white matter exceeds this
    extra_axial: bool
    side: int  # +1 right, -1 left, 0 none: for a falx lesion, the half-space it may occupy
    mass_fraction: float  # inserted volume / whole tumour volume (mass effect strength)
    noise_seed: int
    location: str
    hemisphere: str

    def scaled(self, f: float) -> LesionShape:
        def sc(r: tuple[float, float, float]) -> tuple[float, float, float]:
            return (r[0] * f, r[1] * f, r[2] * f)

        return replace(
            self,
            r_oedema=sc(self.r_oedema),
            r_tumour=sc(self.r_tumour),
            r_core=sc(self.r_core),
            core_offset=sc(self.core_offset),
        )


@dataclass
class LesionRaster:
    """One lesion drawn into a box of the template grid."""

    box: Box
    labels: npt.NDArray[np.uint8]
    haemorrhage: npt.NDArray[np.bool_] | None = None
    dural_tail: npt.NDArray[np.bool_] | None = None
    texture: F32 | None = field(default=None, repr=False)


def _random_rotation(rng: np.random.Generator) -> F64:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return np.asarray(q, dtype=np.float64)


def _radii(rng: np.random.Generator, volume_ml: float, elong: float) -> tuple[float, float, float]:
    """Ellipsoid radii (mm) of the given volume, with axis ratios up to ``elong``."""
    ratios = np.exp(rng.uniform(-np.log(elong), np.log(elong), 3) / 2.0)
    ratios /= np.cbrt(np.prod(ratios))
    r = np.cbrt(volume_ml * 1000.0 * 3.0 / (4.0 * np.pi))
    return (float(r * ratios[0]), float(r * ratios[1]), float(r * ratios[2]))


def _t3(a: npt.ArrayLike) -> tuple[float, float, float]:
    v = np.asarray(a, dtype=np.float64).ravel()
    return (float(v[0]), float(v[1]), float(v[2]))


def _rot_t(q: F64) -> tuple[tuple[float, float, float], ...]:
    return tuple(_t3(row) for row in q)


def _hemisphere(x: float) -> str:
    if abs(x) < 3.0:
        return "midline"
    return "right" if x > 0 else "left"


def _pick(rng: np.random.Generator, anatomy: Anatomy, kind: str) -> F64:
    flat = candidate_indices(kind)
    if flat.size == 0:
        raise RuntimeError(f"no candidate positions for {kind}")
    idx = np.unravel_index(int(flat[int(rng.integers(flat.size))]), anatomy.shape)
    return anatomy.to_ras(np.array(idx, dtype=np.float64) + rng.uniform(-0.5, 0.5, 3))


def choose_shapes(rng: np.random.Generator, anatomy: Anatomy, kind: str, need_core: bool) -> list[LesionShape]:
    """Random lesion geometry for ``kind`` ('glioma', 'meningioma', 'metastasis', 'none')."""
    if kind == "none":
        return []
    if kind == "glioma":
        wt = float(np.exp(rng.uniform(np.log(18.0), np.log(70.0))))
        c = _pick(rng, anatomy, "glioma")
        f_tumour = rng.uniform(0.3, 0.55)
        f_core = rng.uniform(0.2, 0.45)
        r_o = _radii(rng, wt, 1.8)
        r_t = _radii(rng, wt * f_tumour, 1.5)
        r_c = _radii(rng, wt * f_tumour * f_core, 1.6)
        off = rng.normal(0.0, 0.12, 3) * np.array(r_t)
        return [
            LesionShape(
                kind=kind,
                centre=_t3(c),
                rotation=_rot_t(_random_rotation(rng)),
                r_oedema=r_o,
                r_tumour=r_t,
                r_core=r_c,
                core_offset=_t3(off),
                amp_oedema=0.22,
                amp_tumour=0.16,
                amp_core=0.28,
                oedema_wm_min=0.15,
                extra_axial=False,
                side=0,
                mass_fraction=float(rng.uniform(0.7, 1.1)),
                noise_seed=int(rng.integers(2**32)),
                location="white matter",
                hemisphere=_hemisphere(float(c[0])),
            )
        ]
    if kind == "meningioma":
        vol = float(np.exp(rng.uniform(np.log(6.0), np.log(45.0))))
        r_t = _radii(rng, vol, 1.3)
        rmean = float(np.cbrt(np.prod(r_t)))
        if rng.uniform() < 0.3:
            side = int(rng.choice([-1, 1]))
            y = rng.uniform(-50.0, 25.0)
            z = rng.uniform(20.0, 50.0)
            c = np.array([side * rmean * rng.uniform(0.35, 0.6), y, z])
            location, falx_side = "falx", side
        else:
            p = _pick(rng, anatomy, "convexity")
            n = outward_normal(anatomy, p)
            c = p - n * rmean * rng.uniform(0.25, 0.5)
            location, falx_side = "convexity", 0
        has_core = need_core or rng.uniform() < 0.2
        r_c = _radii(rng, vol * rng.uniform(0.05, 0.15), 1.3) if has_core else (0.0, 0.0, 0.0)
        has_oedema = rng.uniform() < 0.6
        fo = rng.uniform(1.2, 1.6) if has_oedema else 0.0
        return [
            LesionShape(
                kind=kind,
                centre=_t3(c),
                rotation=_rot_t(_random_rotation(rng)),
                r_oedema=(r_t[0] * fo, r_t[1] * fo, r_t[2] * fo),
                r_tumour=r_t,
                r_core=r_c,
                core_offset=(0.0, 0.0, 0.0),
                amp_oedema=0.18,
                amp_tumour=0.04,
                amp_core=0.1,
                oedema_wm_min=0.3,
                extra_axial=True,
                side=falx_side,
                mass_fraction=float(rng.uniform(0.7, 1.0)),
                noise_seed=int(rng.integers(2**32)),
                location=location,
                hemisphere=_hemisphere(float(c[0])),
            )
        ]
    if kind == "metastasis":
        count = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        shapes: list[LesionShape] = []
        tries = 0
        while len(shapes) < count and tries < 200:
            tries += 1
            rt = float(rng.uniform(3.5, 11.0))
            if need_core and not shapes:
                rt = max(rt, 7.0)
            c = _pick(rng, anatomy, "metastasis")
            ro = rt * float(rng.uniform(1.8, 2.8))
            if any(np.linalg.norm(c - np.array(s.centre)) < ro + max(s.r_oedema) for s in shapes):
                continue
            r_t = _radii(rng, 4.0 / 3.0 * np.pi * rt**3 / 1000.0, 1.15)
            rim = float(rng.uniform(1.3, 2.4))
            r_c = _t3([max(r - rim, 0.0) for r in r_t]) if rt >= 5.0 else (0.0, 0.0, 0.0)
            r_o = _radii(rng, 4.0 / 3.0 * np.pi * ro**3 / 1000.0, 1.5)
            shapes.append(
                LesionShape(
                    kind=kind,
                    centre=_t3(c),
                    rotation=_rot_t(_random_rotation(rng)),
                    r_oedema=r_o,
                    r_tumour=r_t,
                    r_core=r_c,
                    core_offset=(0.0, 0.0, 0.0),
                    amp_oedema=0.25,
                    amp_tumour=0.05,
                    amp_core=0.05,
                    oedema_wm_min=0.35,
                    extra_axial=False,
                    side=0,
                    mass_fraction=float(rng.uniform(0.4, 0.7)),
                    noise_seed=int(rng.integers(2**32)),
                    location="grey-white junction",
                    hemisphere=_hemisphere(float(c[0])),
                )
            )
        return shapes
    raise ValueError(f"unknown lesion type {kind!r}")


def _wave_noise(rng: np.random.Generator, axes: list[F32], wavelength_mm: float, n_waves: int = 10) -> F32:
    """Smooth random field (mean 0, std ~1): a sum of plane waves with random directions and phases.

    Each wave is separable (a product of three 1-D complex exponentials), so the field costs one
    complex multiply per wave over the box.
    """
    shape = tuple(len(a) for a in axes)
    acc = np.zeros(shape, dtype=np.complex64)
    for _ in range(n_waves):
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        k = 2.0 * np.pi / (wavelength_mm * np.exp(rng.uniform(-0.6, 0.6))) * d
        phase = np.exp(1j * rng.uniform(0.0, 2.0 * np.pi))
        ex = (phase * np.exp(1j * k[0] * axes[0])).astype(np.complex64)
        ey = np.exp(1j * k[1] * axes[1]).astype(np.complex64)
        ez = np.exp(1j * k[2] * axes[2]).astype(np.complex64)
        acc += (ex[:, None] * ey[None, :])[:, :, None] * ez[None, None, :]
    return np.asarray(acc.real * np.float32(np.sqrt(2.0 / n_waves)), dtype=np.float32)


def _box_for(anatomy: Anatomy, centre: F64, half: float) -> tuple[Box, list[F32]]:
    c = anatomy.to_index(centre)
    shape = np.array(anatomy.shape)
    lo = np.clip(np.floor(c - half).astype(int), 0, shape)
    hi = np.clip(np.ceil(c + half).astype(int) + 1, 0, shape)
    box: Box = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(int(lo[2]), int(hi[2])))
    axes = [
        (np.arange(a, b) + anatomy.origin[n] - centre[n]).astype(np.float32)
        for n, (a, b) in enumerate(zip(lo, hi, strict=True))
    ]
    return box, axes


def rasterise(shape: LesionShape, anatomy: Anatomy, wm: F32, haemorrhage_fraction: float | None) -> LesionRaster:
    """Draw one lesion; ``wm`` is the (displaced) white matter that guides the oedema."""
    rng = np.random.default_rng(shape.noise_seed)
    centre = np.array(shape.centre)
    amp_max = max(shape.amp_oedema, shape.amp_tumour)
    half = max(*shape.r_oedema, *shape.r_tumour) * (1.0 + 3.0 * amp_max) + 3.0
    box, axes = _box_for(anatomy, centre, half)
    bshape = tuple(len(a) for a in axes)
    q = np.array(shape.rotation, dtype=np.float32)
    dx, dy, dz = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    u = [q[0, k] * dx + q[1, k] * dy + q[2, k] * dz for k in range(3)]

    def rho(
        radii: tuple[float, float, float],
        amp: float,
        scale: float,
        offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> F32:
        acc = np.zeros(bshape, dtype=np.float32)
        for k in range(3):
            t = (u[k] - np.float32(offset[k])) / np.float32(max(radii[k], 1e-3))
            acc += t * t
        out = np.sqrt(acc)
        if amp > 0:
            out *= 1.0 + np.float32(amp) * _wave_noise(rng, axes, scale)
        return out

    brain = anatomy.brain[box]
    classes = anatomy.classes[box]
    if shape.extra_axial:
        allowed = brain | (classes == CSF_SHELL) | (classes == DURA) | (classes == SINUS)
        if shape.side:
            allowed &= (dx + np.float32(centre[0])) * np.float32(shape.side) >= -0.5
    else:
        allowed = brain.copy()
    tumour = (rho(shape.r_tumour, shape.amp_tumour, 18.0) < 1.0) & allowed
    labels = np.zeros(bshape, dtype=np.uint8)
    if max(shape.r_oedema) > 0:
        oed = (rho(shape.r_oedema, shape.amp_oedema, 22.0) < 1.0) & brain & (wm[box] > shape.oedema_wm_min)
        labels[oed] = LABEL_OEDEMA
    labels[tumour] = LABEL_ENHANCING
    core = np.zeros(bshape, dtype=bool)
    if max(shape.r_core) > 0:
        core = (rho(shape.r_core, shape.amp_core, 12.0, shape.core_offset) < 1.0) & tumour
        labels[core] = LABEL_CORE
    texture = 1.0 + 0.5 * _wave_noise(rng, axes, 4.0, 14)
    raster = LesionRaster(box=box, labels=labels, texture=texture.astype(np.float32))
    if shape.kind == "meningioma":
        near = rho(shape.r_tumour, 0.0, 1.0) < float(rng.uniform(1.4, 1.9))
        raster.dural_tail = near & (classes == DURA) & ~tumour
    if haemorrhage_fraction is not None and core.any():
        ys = np.broadcast_to(dy, bshape)[core]
        level = float(np.quantile(ys, haemorrhage_fraction))
        raster.haemorrhage = core & (dy <= level)
    return raster


def calibrate(shape: LesionShape, anatomy: Anatomy, target_ml: float) -> LesionShape:
    """Rescale a shape so that its drawn whole-tumour volume is close to ``target_ml``."""
    out = shape
    for _ in range(2):
        r = rasterise(out, anatomy, anatomy.wm, None)
        vol = float(np.count_nonzero(r.labels)) / 1000.0
        if vol <= 0:
            return out
        f = float(np.clip(np.cbrt(target_ml / vol), 0.7, 1.5))
        if abs(f - 1.0) < 0.03:
            break
        out = out.scaled(f)
    return out


def mass_source(shape: LesionShape, raster: LesionRaster) -> MassSource:
    """The mass effect of a drawn lesion: a ball of ``mass_fraction`` × its volume."""
    vol_mm3 = float(np.count_nonzero(raster.labels)) * shape.mass_fraction
    radius = float(np.cbrt(3.0 * vol_mm3 / (4.0 * np.pi)))
    return MassSource(centre=shape.centre, radius_mm=radius, taper_mm=2.0 * radius + 45.0)


__all__ = [
    "LABEL_CORE",
    "LABEL_ENHANCING",
    "LABEL_OEDEMA",
    "LesionRaster",
    "LesionShape",
    "calibrate",
    "choose_shapes",
    "mass_source",
    "rasterise",
]
