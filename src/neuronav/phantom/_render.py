"""Tissue → intensity for the four sequences, bias field and Rician noise.

Intensities are relative (white matter on T1 ≈ 1). The tables give the usual relative contrast:
T1 WM > GM > CSF; T1c as T1 with enhancing tumour, dura and venous sinus bright; T2 CSF bright;
FLAIR CSF dark and oedema bright. Lesion intensities depend on the lesion type (a meningioma is
near grey matter on T1/T2 and enhances homogeneously; a glioma's rim is heterogeneous), and every
value is jittered per study so that no model can learn a fixed number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from neuronav.phantom._anatomy import N_CLASSES, Anatomy
from neuronav.phantom._lesions import LesionRaster

F32 = npt.NDArray[np.float32]

SEQUENCES = ("T1", "T1c", "T2", "FLAIR")

# wm, gm, csf, then the classes outside the brain.
_BASE: dict[str, dict[str, float]] = {
    "T1": dict(
        wm=1.00,
        gm=0.62,
        csf=0.17,
        air=0.0,
        csf_shell=0.17,
        dura=0.35,
        bone=0.04,
        marrow=0.85,
        galea=0.45,
        fat=1.05,
        skin=0.55,
        sinus=0.22,
    ),
    "T1c": dict(
        wm=1.00,
        gm=0.63,
        csf=0.18,
        air=0.0,
        csf_shell=0.18,
        dura=0.80,
        bone=0.04,
        marrow=0.88,
        galea=0.50,
        fat=1.05,
        skin=0.58,
        sinus=1.15,
    ),
    "T2": dict(
        wm=0.32,
        gm=0.52,
        csf=1.00,
        air=0.0,
        csf_shell=1.00,
        dura=0.15,
        bone=0.03,
        marrow=0.45,
        galea=0.30,
        fat=0.65,
        skin=0.45,
        sinus=0.06,
    ),
    "FLAIR": dict(
        wm=0.48,
        gm=0.66,
        csf=0.07,
        air=0.0,
        csf_shell=0.07,
        dura=0.30,
        bone=0.03,
        marrow=0.55,
        galea=0.35,
        fat=0.75,
        skin=0.50,
        sinus=0.05,
    ),
}
_CLASS_KEYS = ("air", "brain", "csf_shell", "dura", "bone", "marrow", "galea", "fat", "skin", "sinus")

# (necrotic core, oedema, enhancing) per lesion type and sequence.
_LESION: dict[str, dict[str, tuple[float, float, float]]] = {
    "glioma": {
        "T1": (0.26, 0.52, 0.55),
        "T1c": (0.28, 0.54, 1.35),
        "T2": (0.95, 0.80, 0.66),
        "FLAIR": (0.42, 0.98, 0.82),
    },
    "meningioma": {
        "T1": (0.30, 0.52, 0.64),
        "T1c": (0.32, 0.54, 1.30),
        "T2": (0.90, 0.80, 0.56),
        "FLAIR": (0.45, 0.95, 0.68),
    },
    "metastasis": {
        "T1": (0.30, 0.50, 0.58),
        "T1c": (0.32, 0.52, 1.28),
        "T2": (0.92, 0.82, 0.60),
        "FLAIR": (0.50, 1.00, 0.76),
    },
}
_HAEMORRHAGE = {"T1": 1.15, "T1c": 1.18, "T2": 0.15, "FLAIR": 0.30}
# Heterogeneity (std of the multiplicative texture) of the enhancing part, per lesion type.
_TEXTURE = {"glioma": 0.16, "meningioma": 0.04, "metastasis": 0.08}


class Contrast:
    """The intensity tables of one study (randomised from the seed)."""

    def __init__(self, rng: np.random.Generator, lesion_kind: str, jitter: float = 0.06) -> None:
        self.lesion_kind = lesion_kind
        self.tables: dict[str, dict[str, float]] = {}
        for seq in SEQUENCES:
            t = {k: v * float(np.exp(rng.normal(0.0, jitter))) for k, v in _BASE[seq].items()}
            lesion = _LESION.get(lesion_kind, _LESION["glioma"])[seq]
            for name, v in zip(("core", "oedema", "enhancing"), lesion, strict=True):
                t[name] = v * float(np.exp(rng.normal(0.0, jitter)))
            t["haemorrhage"] = _HAEMORRHAGE[seq] * float(np.exp(rng.normal(0.0, jitter)))
            t["air"] = 0.0
            self.tables[seq] = t

    def class_lut(self, seq: str) -> F32:
        t = self.tables[seq]
        lut = np.zeros(N_CLASSES, dtype=np.float32)
        for n, key in enumerate(_CLASS_KEYS):
            lut[n] = 0.0 if key == "brain" else t[key]
        return lut


def render(
    seq: str,
    contrast: Contrast,
    anatomy: Anatomy,
    tissue: tuple[F32, F32, F32],
    lesions: Sequence[LesionRaster],
) -> F32:
    """The noiseless image of ``seq`` on the template grid."""
    from scipy import ndimage

    t = contrast.tables[seq]
    gm, wm, csf = tissue
    img = np.take(contrast.class_lut(seq), anatomy.classes)
    tmp = np.empty_like(img)
    for prob, key in ((gm, "gm"), (wm, "wm"), (csf, "csf")):
        np.multiply(prob, np.float32(t[key]), out=tmp)
        img += tmp
    del tmp
    tex_sd = _TEXTURE.get(contrast.lesion_kind, 0.1)
    for les in lesions:
        box = les.box
        labels = les.labels
        region = img[box]
        weights: list[tuple[F32, F32]] = []
        texture = les.texture if les.texture is not None else np.ones(labels.shape, np.float32)
        haem = les.haemorrhage
        for label, key, sd in ((1, "core", 0.06), (2, "oedema", 0.05), (3, "enhancing", tex_sd)):
            mask = labels == label
            if label == 1 and haem is not None:
                mask &= ~haem
            if not mask.any():
                continue
            w = ndimage.gaussian_filter(mask.astype(np.float32), 0.6)
            value = np.float32(t[key]) * (np.float32(1.0) + np.float32(sd / 0.5) * (texture - np.float32(1.0)))
            weights.append((w, value))
        if haem is not None and haem.any():
            w = ndimage.gaussian_filter(haem.astype(np.float32), 0.6)
            hval = np.float32(t["haemorrhage"]) * (np.float32(1.0) + np.float32(0.1) * (texture - np.float32(1.0)))
            weights.append((w, hval))
        if les.dural_tail is not None and seq == "T1c" and les.dural_tail.any():
            w = ndimage.gaussian_filter(les.dural_tail.astype(np.float32), 0.6)
            weights.append((w, np.full(labels.shape, t["enhancing"] * 0.8, dtype=np.float32)))
        if not weights:
            continue
        total = np.zeros(labels.shape, dtype=np.float32)
        acc = np.zeros(labels.shape, dtype=np.float32)
        for w, value in weights:
            total += w
            acc += w * value
        over = np.maximum(total, 1.0)
        region *= np.clip(1.0 - total, 0.0, 1.0)
        region += acc / over
    return img


def bias_field(rng: np.random.Generator, anatomy: Anatomy, strength: float = 0.12) -> tuple[F32, F32, F32]:
    """A smooth multiplicative field as three 1-D factors along the template axes."""
    factors = []
    centre = anatomy.head_centre
    g = rng.uniform(0.0, 0.25)
    for axis in range(3):
        x = (np.arange(anatomy.shape[axis]) + anatomy.origin[axis] - centre[axis]) / 100.0
        a1, a2 = rng.normal(0.0, strength, 2)
        f = np.exp(a1 * x + a2 * x * x - g * x * x)
        factors.append((f / f.mean()).astype(np.float32))
    return factors[0], factors[1], factors[2]


def apply_bias(img: F32, factors: tuple[F32, F32, F32]) -> None:
    fx, fy, fz = factors
    img *= (fx[:, None] * fy[None, :])[:, :, None]
    img *= fz[None, None, :]


def add_rician_noise(img: F32, sigma: float, rng: np.random.Generator) -> F32:
    """|img + n1 + i·n2| with n1, n2 ~ N(0, sigma): magnitude MR noise (in place where possible)."""
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n1 *= np.float32(sigma)
    n1 += img
    np.multiply(n1, n1, out=n1)
    n2 = rng.standard_normal(img.shape, dtype=np.float32)
    n2 *= np.float32(sigma)
    np.multiply(n2, n2, out=n2)
    n1 += n2
    del n2
    np.sqrt(n1, out=n1)
    return n1
