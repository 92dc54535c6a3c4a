"""Acquisition geometry: the grid of each series in scanner (patient RAS) space.

The head sits in the scanner rotated by a small study-wide rotation about its centre: a point q of
the head (template frame) appears at scanner position ``p = R·(q − c) + c``. Series grids are set
in scanner space, centred on c (plus a small table offset), so a series is axial/sagittal/coronal
with respect to the scanner while the head inside it is tilted, as in a real examination.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# Unit vectors (RAS) of the voxel axes i (along a row), j (down the columns), k (slice normal, the
# direction of increasing slice position), as DICOM scanners write them.
_BASES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # row → patient left, column → posterior (LPS (1,0,0), (0,1,0))
    "axial": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    # row → posterior, column → inferior (LPS (0,1,0), (0,0,-1))
    "sagittal": ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
    # row → patient left, column → inferior (LPS (1,0,0), (0,0,-1))
    "coronal": ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


@dataclass(frozen=True)
class SeriesSpec:
    """One series of a geometry profile."""

    name: str  # 'T1' | 'T1c' | 'T2' | 'FLAIR'
    orientation: str  # 'axial' | 'sagittal' | 'coronal' | 'oblique'
    acquisition: str  # '3D' | '2D'
    voxel_mm: tuple[float, float, float]  # spacing along i (row), j (column), k (slice)
    shape: tuple[int, int, int]  # columns, rows, slices
    slice_order: Literal["ascending", "descending"] = "ascending"
    multiframe: bool = False
    # For 'oblique': rotation (degrees) of an axial grid about the L-R axis (pitch), then A-P (roll).
    oblique_deg: tuple[float, float] = (0.0, 0.0)

    @property
    def base_orientation(self) -> str:
        return "axial" if self.orientation == "oblique" else self.orientation


@dataclass(frozen=True)
class GeometryProfile:
    name: str
    description: str
    series: tuple[SeriesSpec, ...]  # in acquisition order
    max_rotation_deg: float  # head rotation in the scanner, per axis, uniform in ±this
    max_offset_mm: float  # table/FOV offset of the grid centre, per axis


_SAG_3D = (256, 240, 176)
_AX_3D = (240, 240, 176)

GEOMETRY_PROFILES: MappingProxyType[str, GeometryProfile] = MappingProxyType(
    {
        "clinical": GeometryProfile(
            name="clinical",
            description="3D 1 mm sagittal T1, 2D 5 mm axial T2, 3D 1 mm sagittal FLAIR, "
            "3D 1 mm axial T1c; small head rotation (~580 DICOM files)",
            series=(
                SeriesSpec("T1", "sagittal", "3D", (1.0, 1.0, 1.0), _SAG_3D),
                SeriesSpec("T2", "axial", "2D", (0.9, 0.9, 5.0), (256, 256, 32), "descending"),
                SeriesSpec("FLAIR", "sagittal", "3D", (1.0, 1.0, 1.0), _SAG_3D),
                SeriesSpec("T1c", "axial", "3D", (1.0, 1.0, 1.0), (240, 240, 192)),
            ),
            max_rotation_deg=3.0,
            max_offset_mm=3.0,
        ),
        "iso1mm": GeometryProfile(
            name="iso1mm",
            description="all four sequences 3D 1 mm axial on one grid, no head rotation",
            series=(
                SeriesSpec("T1", "axial", "3D", (1.0, 1.0, 1.0), _AX_3D),
                SeriesSpec("T2", "axial", "3D", (1.0, 1.0, 1.0), _AX_3D),
                SeriesSpec("FLAIR", "axial", "3D", (1.0, 1.0, 1.0), _AX_3D),
                SeriesSpec("T1c", "axial", "3D", (1.0, 1.0, 1.0), _AX_3D),
            ),
            max_rotation_deg=0.0,
            max_offset_mm=0.0,
        ),
        "varied": GeometryProfile(
            name="varied",
            description="sagittal 3D T1 (descending), axial 2D 5 mm T2, oblique 2D 5 mm FLAIR "
            "(descending), coronal 3D T1c with non-square pixels as one enhanced multi-frame file; "
            "head rotated up to 10° per axis",
            series=(
                SeriesSpec("T1", "sagittal", "3D", (1.0, 1.0, 1.0), (240, 220, 176), "descending"),
                SeriesSpec("T2", "axial", "2D", (0.9, 0.9, 5.0), (256, 256, 32)),
                SeriesSpec(
                    "FLAIR", "oblique", "2D", (0.9, 0.9, 5.0), (256, 256, 32), "descending", oblique_deg=(18.0, 6.0)
                ),
                SeriesSpec("T1c", "coronal", "3D", (1.0, 1.2, 1.0), (200, 170, 216), multiframe=True),
            ),
            max_rotation_deg=10.0,
            max_offset_mm=6.0,
        ),
    }
)


def rotation_matrix(angles_deg: npt.ArrayLike) -> F64:
    """R = Rz·Ry·Rx for rotations (degrees) about the RAS x (pitch), y (roll) and z (yaw) axes."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def head_to_scanner(rotation: F64, centre: F64) -> F64:
    """4×4 affine: head (template) RAS → scanner RAS."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = centre - rotation @ centre
    return m


def series_affine(spec: SeriesSpec, centre: F64) -> F64:
    """Voxel → scanner RAS affine of a series whose grid is centred on ``centre``."""
    row, col = (np.array(v) for v in _BASES[spec.base_orientation])
    if spec.orientation == "oblique":
        pitch, roll = spec.oblique_deg
        r = rotation_matrix((pitch, roll, 0.0))
        row, col = r @ row, r @ col
    # DICOM's slice normal is row × column computed in LPS; convert the factors and the result.
    lps_row = row * np.array([-1.0, -1.0, 1.0])
    lps_col = col * np.array([-1.0, -1.0, 1.0])
    lps_normal = np.cross(lps_row, lps_col)
    normal = lps_normal * np.array([-1.0, -1.0, 1.0])
    axes = np.stack([row, col, normal], axis=1) * np.array(spec.voxel_mm)[None, :]
    aff = np.eye(4)
    aff[:3, :3] = axes
    half = (np.array(spec.shape, dtype=np.float64) - 1.0) / 2.0
    aff[:3, 3] = centre - axes @ half
    return aff


def slice_normal_axis(spec: SeriesSpec, rotation: F64) -> int:
    """The template axis closest to the slice normal of ``spec`` (for slice-profile blurring)."""
    aff = series_affine(spec, np.zeros(3))
    n = rotation.T @ aff[:3, 2]
    return int(np.argmax(np.abs(n)))
