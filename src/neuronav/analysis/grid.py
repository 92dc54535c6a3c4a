"""The working grid in MNI152 space and the offline MNI152 template.

Coordinates are RAS mm throughout. The working grid is fixed: 2 mm isotropic, 96×112×96 voxels,
axis-aligned with MNI152 and centred on the template's bounding box (x −98…98, y −134…98,
z −72…116 mm), so it covers the whole head of the template. Every model runs on this grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """A voxel grid: ``affine`` maps voxel index (i, j, k) to MNI152 RAS mm."""

    shape: tuple[int, int, int]
    affine: FloatArray

    @property
    def spacing(self) -> tuple[float, float, float]:
        n = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(n[0]), float(n[1]), float(n[2]))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def _make_working_grid() -> WorkingGrid:
    shape = (96, 112, 96)
    spacing = 2.0
    centre = np.array([0.0, -18.0, 22.0])  # centre of the MNI152 template's bounding box
    origin = centre - spacing * (np.array(shape, dtype=np.float64) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] *= spacing
    affine[:3, 3] = origin
    return WorkingGrid(shape=shape, affine=affine)


WORKING_GRID: WorkingGrid = _make_working_grid()


@dataclass(frozen=True, eq=False)
class Template:
    """The MNI152 2009 T1 template (whole head) and its brain mask, as shipped with nilearn.

    ``t1``: float32, 0..1; ``brain_mask``: bool; both on the 1 mm grid of ``affine`` (RAS mm).
    """

    t1: npt.NDArray[np.float32]
    brain_mask: npt.NDArray[np.bool_]
    affine: FloatArray


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Load (once per process) the MNI152 template that ships inside nilearn; no network."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1_img = load_mni152_template(resolution=1)
    mask_img = load_mni152_brain_mask(resolution=1)
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32), dtype=np.float32)
    mask = np.asarray(mask_img.get_fdata(dtype=np.float32)) > 0.5
    t1.setflags(write=False)
    mask.setflags(write=False)
    return Template(t1=t1, brain_mask=mask, affine=np.asarray(t1_img.affine, dtype=np.float64))
