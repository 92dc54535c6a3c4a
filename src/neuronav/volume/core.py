"""The Volume type. Geometry convention: ``affine`` maps voxel index (i, j, k) to RAS mm.

For a DICOM series, i runs along a row (the first ImageOrientationPatient vector), j down the
columns (the second vector) and k through the slices in the order of the ``source_uids``: the same
convention as NIfTI files written by nibabel and dcm2niix (before dcm2niix's own row flip).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# DICOM patient coordinates are LPS; NIfTI/NeuroNav world coordinates are RAS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine_lps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Convert a 4×4 affine whose output is LPS mm into one whose output is RAS mm."""
    return np.asarray(LPS_TO_RAS @ affine_lps, dtype=np.float64)


def ras_to_lps(affine_ras: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Convert a 4×4 affine whose output is RAS mm into one whose output is LPS mm."""
    return np.asarray(LPS_TO_RAS @ affine_ras, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image with its geometry.

    data:        3D array indexed [i, j, k].
    affine:      4×4 float64, voxel index → RAS mm.
    source_uids: SOPInstanceUIDs the voxels came from (slice order for 2D series); empty for NIfTI.
    series_uid:  SeriesInstanceUID when read from DICOM.
    """

    data: npt.NDArray[np.generic]
    affine: npt.NDArray[np.float64]
    source_uids: tuple[str, ...] = ()
    series_uid: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D, got shape {self.data.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError("Volume affine must be a finite 4×4 matrix")
        if abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise ValueError("Volume affine is singular")
        object.__setattr__(self, "affine", aff)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.data.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def orientation_codes(self) -> str:
        """Axis codes such as 'RAS' or 'LPI' (nibabel's convention: direction each axis points to)."""
        import nibabel as nib

        return "".join(nib.orientations.aff2axcodes(self.affine))

    def index_to_ras(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Voxel indices (…, 3) → RAS mm (…, 3)."""
        pts = np.asarray(ijk, dtype=np.float64)
        return np.asarray(pts @ self.affine[:3, :3].T + self.affine[:3, 3], dtype=np.float64)

    def ras_to_index(self, ras: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """RAS mm (…, 3) → continuous voxel indices (…, 3)."""
        inv = np.linalg.inv(self.affine)
        pts = np.asarray(ras, dtype=np.float64)
        return np.asarray(pts @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)

    def canonical(self) -> Volume:
        """The same image reoriented (flips/permutations only, no resampling) to RAS+ axes."""
        import nibabel as nib

        ornt = nib.orientations.io_orientation(self.affine)
        target = nib.orientations.axcodes2ornt(("R", "A", "S"))
        transform = nib.orientations.ornt_transform(ornt, target)
        data = nib.orientations.apply_orientation(self.data, transform)
        inv = nib.orientations.inv_ornt_aff(transform, self.data.shape)
        return Volume(
            data=np.ascontiguousarray(data),
            affine=self.affine @ inv,
            source_uids=self.source_uids,
            series_uid=self.series_uid,
            meta=dict(self.meta),
        )
