"""Image features of the segmented tumour, the inputs of the detection and classification models.

Computed on the working grid (2 mm, MNI space) from the ensemble's output and the normalised
channels, identically at training and at inference time. Each feature is something a
neuroradiologist looks at: size, how much is necrotic or enhancing, how much oedema surrounds
it, how many separate lesions there are, and whether it sits at the brain surface (extra-axial,
dural-based) or deep in the white matter.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from neuronav.analysis.grid import WORKING_GRID

DETECTION_FEATURES = (
    "log_tumour_ml",
    "max_tumour_probability",
    "mean_probability_in_tumour",
    "log_confident_ml",
)
CLASSIFICATION_FEATURES = (
    "log_whole_tumour_ml",
    "log_core_ml",
    "necrosis_fraction_of_core",
    "enhancing_fraction_of_core",
    "oedema_fraction_of_whole",
    "n_lesions",
    "core_surface_fraction",
    "core_depth_mm",
    "core_sphericity",
    "rim_ratio",
    "t1c_enhancing_contrast",
)
VOXEL_ML = float(abs(np.linalg.det(WORKING_GRID.affine[:3, :3]))) / 1000.0  # mL per working-grid voxel


def detection_features(
    tumour_probability: npt.NDArray[np.float32], brain_mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    p = np.where(brain_mask, tumour_probability, 0.0)
    tumour = p > 0.5
    n = int(tumour.sum())
    return np.asarray(
        [
            np.log(n * VOXEL_ML + 0.01),
            float(p.max()) if p.size else 0.0,
            float(p[tumour].mean()) if n else 0.0,
            np.log(float((p > 0.9).sum()) * VOXEL_ML + 0.01),
        ],
        dtype=np.float32,
    )


def classification_features(
    labels: npt.NDArray[np.integer], brain_mask: npt.NDArray[np.bool_], t1c: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.float32]:
    """Features of the tumour in ``labels`` (BraTS labels on the working grid)."""
    whole = labels > 0
    core = (labels == 1) | (labels == 3)
    n_whole, n_core = int(whole.sum()), int(core.sum())
    n1, n3 = int((labels == 1).sum()), int((labels == 3).sum())
    lab, n_lesions = ndi.label(whole, structure=np.ones((3, 3, 3)))
    if n_lesions:
        sizes = np.bincount(lab.ravel())[1:] * VOXEL_ML
        n_lesions = int((sizes >= 0.1).sum())
    # depth: distance (mm) from each core voxel to the outside of the brain mask
    depth = ndi.distance_transform_edt(brain_mask) * WORKING_GRID.spacing[0]
    region = core if n_core else whole
    if region.any():
        d = depth[region]
        surface_fraction = float((d <= 6.0).mean())
        core_depth = float(np.median(d))
        eroded = ndi.binary_erosion(region)
        surface = int((region & ~eroded).sum())
        sphericity = float(np.pi ** (1 / 3) * (6 * region.sum()) ** (2 / 3) / max(surface, 1))
    else:
        surface_fraction, core_depth, sphericity = 0.0, 0.0, 0.0
    rim_ratio = n3 / max(n_core, 1) if n1 else 1.0
    if t1c is not None and n3 and (brain_mask & ~whole).any():
        contrast = float(np.median(t1c[labels == 3]) - np.median(t1c[brain_mask & ~whole]))
    else:
        contrast = 0.0
    return np.asarray(
        [
            np.log(n_whole * VOXEL_ML + 0.01),
            np.log(n_core * VOXEL_ML + 0.01),
            n1 / max(n_core, 1),
            n3 / max(n_core, 1),
            (n_whole - n_core) / max(n_whole, 1),
            float(min(n_lesions, 5)),
            surface_fraction,
            core_depth,
            min(sphericity, 1.5),
            rim_ratio,
            contrast,
        ],
        dtype=np.float32,
    )
