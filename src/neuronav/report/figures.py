"""Key images: slices of the reference image with the segmentation or the heatmap laid over it.

Display conventions (radiological): axial and coronal views show the patient's right on the image
left; axial anterior up; coronal and sagittal superior up; sagittal anterior on the left. Pixels are
square in millimetres whatever the voxel size (a 5 mm slice stack is stretched to its true height).

Label colours follow the usual BraTS pictures: 1 necrotic core red, 2 oedema green, 3 enhancing
yellow. The heatmap is the tumour probability (1 − background probability of the ensemble).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from neuronav.errors import ReportError

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

LABEL_COLOURS: dict[int, tuple[int, int, int]] = {1: (230, 40, 40), 2: (40, 200, 80), 3: (255, 225, 30)}
LABEL_NAMES: dict[int, str] = {1: "necrotic core", 2: "oedema", 3: "enhancing"}
OVERLAY_ALPHA = 0.45
HEATMAP_FLOOR = 0.1  # probabilities below this are not coloured


@dataclass(frozen=True)
class AnalysisImages:
    """The reference image, labels and heatmap of one analysis, reoriented to RAS+ (i→R, j→A, k→S)."""

    reference: F32
    labels: U8
    heatmap: F32
    affine: npt.NDArray[np.float64]  # voxel → RAS mm of the reoriented arrays

    @property
    def spacing(self) -> tuple[float, float, float]:
        n = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(n[0]), float(n[1]), float(n[2]))

    def index_of(self, ras_mm: npt.ArrayLike) -> tuple[int, int, int]:
        ijk = np.linalg.solve(self.affine[:3, :3], np.asarray(ras_mm, dtype=np.float64) - self.affine[:3, 3])
        idx = np.clip(np.rint(ijk).astype(int), 0, np.asarray(self.labels.shape) - 1)
        return (int(idx[0]), int(idx[1]), int(idx[2]))


def load_analysis_images(
    analysis_dir: Path,
    *,
    segmentation: str = "segmentation.nii.gz",
    heatmap: str = "probability.nii.gz",
    reference: str = "reference.nii.gz",
) -> AnalysisImages:
    """Read the three images an analysis wrote; ReportError naming the file when one is missing or unfit."""
    arrays: list[npt.NDArray[np.generic]] = []
    affines: list[npt.NDArray[np.float64]] = []
    for name in (reference, segmentation, heatmap):
        path = analysis_dir / name
        if not path.is_file():
            raise ReportError(f"{path}: missing; key images need the analysis folder of findings.json")
        try:
            arr, aff = _read_ras(path)
        except Exception as exc:  # nibabel raises many types for broken files
            raise ReportError(f"{path}: not a readable NIfTI image ({exc})") from exc
        arrays.append(arr)
        affines.append(aff)
    ref, seg, heat = arrays
    if not (ref.shape == seg.shape == heat.shape) or not np.allclose(affines[0], affines[1], atol=1e-3):
        raise ReportError(f"{analysis_dir}: reference, segmentation and heatmap are not on the same grid")
    return AnalysisImages(
        reference=np.asarray(ref, dtype=np.float32),
        labels=np.asarray(seg, dtype=np.uint8),
        heatmap=np.asarray(heat, dtype=np.float32),
        affine=affines[0],
    )


def _read_ras(path: Path) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """A NIfTI volume reoriented to RAS+ by axis swaps and flips (views, no resampling), and its affine.

    Integer data stored with a scale factor (the uint8 heatmap) is scaled to float32 here rather
    than by nibabel, which would make a float64 copy of the whole volume.
    """
    import nibabel as nib

    img: Any = nib.load(str(path))
    if len(img.shape) != 3:
        raise ReportError(f"{path}: expected a 3D image, got shape {img.shape}")
    proxy = img.dataobj
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    raw = np.asanyarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
    if slope != 1.0 or inter != 0.0:
        raw = raw.astype(np.float32) * np.float32(slope) + np.float32(inter)
    ornt = nib.orientations.io_orientation(img.affine)
    data = nib.orientations.apply_orientation(raw, ornt)
    affine = np.asarray(img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape), dtype=np.float64)
    return data, affine


def window(image: npt.ArrayLike, lo_pct: float = 1.0, hi_pct: float = 99.5) -> U8:
    """Grey levels 0–255 between two percentiles of the non-zero voxels (a robust window/level)."""
    arr = np.asarray(image, dtype=np.float32)
    nz = arr[arr > 0]
    if nz.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(nz, [lo_pct, hi_pct])
    scaled = (arr - lo) / max(float(hi - lo), 1e-6)
    return np.asarray(np.clip(scaled * 255.0, 0, 255), dtype=np.uint8)


def overlay_rgb(grey: U8, labels: npt.NDArray[np.integer], alpha: float = OVERLAY_ALPHA) -> U8:
    """RGB (…, 3) of a grey image with the BraTS labels blended in their colours."""
    rgb = np.repeat(np.asarray(grey, np.float32)[..., None], 3, axis=-1)
    for value, colour in LABEL_COLOURS.items():
        mask = labels == value
        if mask.any():
            rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(colour, np.float32)
    return np.asarray(np.clip(rgb, 0, 255), dtype=np.uint8)


def heatmap_rgb(grey: U8, probability: npt.ArrayLike) -> U8:
    """Tumour probability over the grey image: yellow (low) to red (high), more opaque as it rises."""
    p = np.clip(np.asarray(probability, np.float32), 0.0, 1.0)
    rgb = np.repeat(np.asarray(grey, np.float32)[..., None], 3, axis=-1)
    shown = p >= HEATMAP_FLOOR
    colour = np.stack([np.full_like(p, 255.0), 255.0 * (1.0 - p), np.zeros_like(p)], axis=-1)
    a = (0.35 + 0.45 * p)[..., None]
    blended = (1.0 - a) * rgb + a * colour
    rgb[shown] = blended[shown]
    return np.asarray(np.clip(rgb, 0, 255), dtype=np.uint8)


def _plane(volume: npt.NDArray[np.generic], plane: Plane, index: int) -> npt.NDArray[np.generic]:
    """A 2D slice of a RAS+ volume as displayed (rows top→bottom, columns left→right).

    Axial [i, j] at k: rows anterior→posterior, columns patient right→left. Coronal [i, k] at j:
    rows superior→inferior, columns right→left. Sagittal [j, k] at i: rows superior→inferior,
    columns anterior→posterior.
    """
    if plane == "axial":
        sl = volume[:, :, index]
    elif plane == "coronal":
        sl = volume[:, index, :]
    else:
        sl = volume[index, :, :]
    return np.asarray(sl.T[::-1, ::-1])


def _pixel_mm(images: AnalysisImages, plane: Plane) -> tuple[float, float]:
    """(row height, column width) in mm of a displayed slice."""
    si, sj, sk = images.spacing
    return {"axial": (sj, si), "coronal": (sk, si), "sagittal": (sk, sj)}[plane]


def slice_rgb(images: AnalysisImages, plane: Plane, index: int, *, mode: Literal["labels", "heatmap", "plain"]) -> U8:
    grey = window(_plane(images.reference, plane, index))
    if mode == "labels":
        return overlay_rgb(grey, np.asarray(_plane(images.labels, plane, index), dtype=np.uint8))
    if mode == "heatmap":
        return heatmap_rgb(grey, _plane(images.heatmap, plane, index))
    return np.repeat(grey[..., None], 3, axis=-1)


def to_png(rgb: U8, pixel_mm: tuple[float, float] = (1.0, 1.0), *, size_px: int = 360) -> bytes:
    """PNG bytes with square-millimetre pixels, the longer side ``size_px`` pixels."""
    from PIL import Image

    h_mm, w_mm = rgb.shape[0] * pixel_mm[0], rgb.shape[1] * pixel_mm[1]
    scale = size_px / max(h_mm, w_mm)
    size = (max(1, round(w_mm * scale)), max(1, round(h_mm * scale)))
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class KeyImage:
    name: str  # "axial", "coronal", "sagittal", "heatmap"
    caption: str
    png: bytes


def key_images(images: AnalysisImages, centre_ras_mm: npt.ArrayLike, *, size_px: int = 360) -> list[KeyImage]:
    """Axial, coronal and sagittal slices through ``centre_ras_mm`` with the labels, and the axial heatmap."""
    i, j, k = images.index_of(centre_ras_mm)
    c = np.asarray(centre_ras_mm, dtype=float)
    where = f"through RAS ({c[0]:.0f}, {c[1]:.0f}, {c[2]:.0f}) mm"
    out = [
        KeyImage(
            plane,
            f"{plane.capitalize()} {where}, segmentation overlay",
            to_png(slice_rgb(images, plane, idx, mode="labels"), _pixel_mm(images, plane), size_px=size_px),
        )
        for plane, idx in zip(PLANES, (k, j, i), strict=True)
    ]
    out.append(
        KeyImage(
            "heatmap",
            f"Axial {where}, tumour probability heatmap",
            to_png(slice_rgb(images, "axial", k, mode="heatmap"), _pixel_mm(images, "axial"), size_px=size_px),
        )
    )
    return out
