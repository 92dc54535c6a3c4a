"""NIfTI in and out (nibabel). The NIfTI affine is already voxel → RAS mm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuronav.errors import NiftiReadError
from neuronav.volume.core import Volume

MAX_NIFTI_VOXELS = 1024**3  # refuse absurd headers before allocating


def load_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI (a 4D file with one volume is accepted). Raises NiftiReadError."""
    import nibabel as nib

    p = str(path)
    try:
        img: Any = nib.load(p)
    except Exception as exc:  # nibabel raises many types for broken files
        raise NiftiReadError(f"not a readable NIfTI file ({exc})", p) from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise NiftiReadError(f"expected a 3D image, got shape {shape}", p)
    if int(np.prod(shape)) > MAX_NIFTI_VOXELS:
        raise NiftiReadError(f"image of {shape} voxels exceeds the limit", p)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise NiftiReadError("the header has no usable geometry (singular or non-finite affine)", p)
    try:
        data = np.asarray(img.dataobj).reshape(shape)
    except Exception as exc:
        raise NiftiReadError(f"voxel data unreadable ({exc})", p) from exc
    return Volume(data=data, affine=affine, meta={"source_path": p})


def save_nifti(volume: Volume, path: str | Path, *, slope: float | None = None) -> Path:
    """Write a Volume as NIfTI-1 (gzip when the name ends in .gz) with sform and qform set.

    ``slope``: the stored integers are scaled by it when read (e.g. a probability map stored as uint8
    with slope 1/255, a quarter of float32's size and read back as floats by any NIfTI reader).
    """
    import nibabel as nib

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(volume.data, volume.affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units("mm")
    tmp = out.with_name(f".partial-{out.name}")  # same suffix, so nibabel gzips when asked
    nib.save(img, str(tmp))
    tmp.replace(out)
    return out
