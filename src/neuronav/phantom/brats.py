"""A phantom study written as a BraTS case: what a new user feeds a brain-tumour tool first.

:func:`generate_brats_case` calls the phantom generator (:func:`neuronav.phantom.generate_study`,
NIfTI output, unchanged) and writes its four series the way the BraTS challenge distributes data:

- skull-stripped (the phantom's brain mask, with the lesion; zero outside),
- co-registered, 1 mm isotropic, 240 × 240 × 155 voxels on an SRI24-like grid: the affine of the
  BraTS files (i → −x, j → −y, k → +z, so the voxel axes run left→right … in LPS order), the
  template brain centred in it,
- BraTS 2023 names (``<case>-t1n``, ``-t1c``, ``-t2w``, ``-t2f``) and the truth as ``<case>-seg``
  (BraTS labels 1 necrotic core, 2 oedema, 3 enhancing, on the same grid),
- ``truth.json``: the generator's truth, plus the volumes counted on this grid.

Each image is ONE interpolation from the generator's own series (through its head pose in the
scanner, read back from its 1 mm label map); the labels are sampled from the generator's 1 mm
label map (nearest neighbour). The same seed gives the same case.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from neuronav.errors import InputError
from neuronav.volume import Volume, load_nifti, save_nifti

BRATS_SHAPE = (240, 240, 155)
# the voxel → world map of BraTS / SRI24 files: x and y flipped (LPS voxel order), 1 mm
BRATS_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float64
)
BRATS_2023_SUFFIX = {"T1": "t1n", "T1c": "t1c", "T2": "t2w", "FLAIR": "t2f"}


@dataclass(frozen=True)
class BratsCase:
    """A written case: its folder, the image file per sequence, the label file and the truth."""

    folder: Path
    case_id: str
    images: dict[str, Path]
    labels: Path
    truth: dict[str, Any]


def case_id_for(seed: int) -> str:
    return f"BraTS-PHN-{int(seed):05d}-000"


def _grid_to_template(
    brain: npt.NDArray[np.bool_], template_affine: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """4×4: BraTS voxel → template RAS mm, the template brain's bounding-box centre at the grid centre
    (z a little low, as in SRI24, where the grid holds more room above the vertex than below)."""
    idx = np.argwhere(brain)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    centre_tpl = template_affine[:3, :3] @ ((lo + hi) / 2.0) + template_affine[:3, 3]
    m = np.eye(4)
    m[:3, :3] = BRATS_AFFINE[:3, :3]
    centre_grid = (np.array(BRATS_SHAPE, dtype=np.float64) - 1.0) / 2.0
    centre_grid[2] -= 4.0
    m[:3, 3] = centre_tpl - m[:3, :3] @ centre_grid
    return m


def _sample(
    data: npt.NDArray[Any], src_affine: npt.NDArray[np.float64], vox_to_world: npt.NDArray[np.float64], *, order: int
) -> npt.NDArray[Any]:
    from scipy import ndimage as ndi

    m = np.linalg.inv(src_affine) @ vox_to_world
    src = np.asarray(data, dtype=np.float32) if order > 0 else data
    return np.asarray(
        ndi.affine_transform(
            src, m[:3, :3], offset=m[:3, 3], output_shape=BRATS_SHAPE, order=order, mode="constant", cval=0.0
        )
    )


def generate_brats_case(
    out_dir: str | Path,
    *,
    seed: int,
    lesion: str = "glioma",
    haemorrhage: bool | None = None,
    profile: str = "clinical",
) -> BratsCase:
    """Write phantom ``seed`` as a BraTS 2023 case folder in ``out_dir`` (see the module docstring).

    ``profile``: the generator's acquisition geometry the BraTS images are resampled from (BraTS
    data are resampled to 1 mm from clinical acquisitions, 2D thick-slice series among them).
    """
    from neuronav.phantom import generate_study
    from neuronav.phantom._anatomy import load_anatomy

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError("the output folder is not empty", str(out))
    out.mkdir(parents=True, exist_ok=True)
    case = case_id_for(seed)
    anatomy = load_anatomy()
    with tempfile.TemporaryDirectory(prefix="neuronav-brats-", dir=out.parent) as tmp:
        study = generate_study(
            Path(tmp) / "study", seed=seed, lesion=lesion, fmt="nifti", haemorrhage=haemorrhage, profile=profile
        )
        labels_1mm = load_nifti(study.out_dir / "truth" / "labels_1mm.nii.gz")
        # the head pose: template RAS → scanner RAS (the 1 mm label map is the template grid in the scanner)
        head_to_scanner = np.asarray(labels_1mm.affine @ np.linalg.inv(anatomy.affine), dtype=np.float64)
        grid_to_tpl = _grid_to_template(np.asarray(anatomy.brain), anatomy.affine)
        vox_to_scanner = head_to_scanner @ grid_to_tpl
        labels = np.asarray(
            _sample(np.asarray(labels_1mm.data, np.uint8), labels_1mm.affine, vox_to_scanner, order=0), np.uint8
        )
        brain = _sample(np.asarray(anatomy.brain, np.float32), anatomy.affine, grid_to_tpl, order=1) > 0.5
        brain |= labels > 0  # a lesion at the surface stays whole
        labels[~brain] = 0
        images: dict[str, Path] = {}
        for series in study.series:
            vol = load_nifti(series.path)
            img = np.asarray(_sample(vol.data, vol.affine, vox_to_scanner, order=1), dtype=np.float32)
            img = np.clip(img, 0.0, None)
            img[~brain] = 0.0
            images[series.name] = save_nifti(
                Volume(img, BRATS_AFFINE.copy()), out / f"{case}-{BRATS_2023_SUFFIX[series.name]}.nii.gz"
            )
        truth = dict(study.truth)
    label_path = save_nifti(Volume(labels, BRATS_AFFINE.copy()), out / f"{case}-seg.nii.gz")
    ml = 0.001  # 1 mm³ voxels
    counts = np.bincount(labels.ravel(), minlength=4)
    truth["brats"] = {
        "case_id": case,
        "shape": list(BRATS_SHAPE),
        "affine": BRATS_AFFINE.tolist(),
        "skull_stripped": True,
        "profile_resampled_from": profile,
        "grid_to_template": grid_to_tpl.tolist(),
        "volumes_ml": {
            "necrotic_core": round(float(counts[1]) * ml, 3),
            "oedema": round(float(counts[2]) * ml, 3),
            "enhancing": round(float(counts[3]) * ml, 3),
            "whole_tumour": round(float(counts[1:].sum()) * ml, 3),
        },
        "brain_ml": round(float(brain.sum()) * ml, 1),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2, default=str) + "\n")
    return BratsCase(folder=out, case_id=case, images=images, labels=label_path, truth=truth)


def remove_case(case: BratsCase) -> None:
    shutil.rmtree(case.folder, ignore_errors=True)
