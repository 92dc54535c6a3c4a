"""Readers' measurements: geometry checks and values computed from the image (neuronav.workflow.annotations)."""

from __future__ import annotations

import numpy as np
import pytest

from neuronav.errors import InputError
from neuronav.volume import Volume
from neuronav.workflow import annotations as logic


def _volume(affine: np.ndarray) -> Volume:
    # value = 1000*i + j + 0.001*k: every voxel tells where it is
    i, j, k = np.meshgrid(np.arange(20), np.arange(30), np.arange(10), indexing="ij")
    return Volume((1000.0 * i + j + 0.001 * k).astype(np.float32), affine)


def test_distance_is_the_euclidean_length() -> None:
    g = logic.parse("distance", [[0, 0, 0], [3, 4, 12]], None, None, None)
    assert logic.distance_mm(g) == pytest.approx(13.0)


def test_roi_on_an_axial_plane_of_a_scaled_grid() -> None:
    # 2 mm voxels along x, 1 mm along y, 3 mm slices; origin shifted
    affine = np.diag([2.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 0.0]
    vol = _volume(affine)
    # box x ∈ [-6, 0] → i ∈ {2, 3, 4, 5}; y ∈ [10, 14] → j ∈ {5..9}; z = 9 → k = 3
    g = logic.parse("roi", [[-6.0, 10.0, 9.0], [0.0, 14.0, 9.0]], "axial", "reference", None)
    stats = logic.roi_stats(g, vol)
    expected = [1000.0 * i + j + 0.003 for i in range(2, 6) for j in range(5, 10)]
    assert stats["n_voxels"] == 20
    assert stats["area_mm2"] == pytest.approx(20 * 2.0 * 1.0)
    assert stats["mean"] == pytest.approx(np.mean(expected), abs=1e-3)
    assert stats["min"] == pytest.approx(min(expected), abs=1e-3)
    assert stats["max"] == pytest.approx(max(expected), abs=1e-3)


def test_roi_on_a_sagittal_plane_of_a_flipped_grid() -> None:
    # LPS-like storage: x and y axes reversed (as DICOM volumes are), 1 mm isotropic
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    vol = _volume(affine)
    # x = -4 → i = 4; y ∈ [-12, -10] → j ∈ {10, 11, 12}; z ∈ [2, 3] → k ∈ {2, 3}
    g = logic.parse("roi", [[-4.0, -12.0, 2.0], [-4.0, -10.0, 3.0]], "sagittal", "reference", None)
    stats = logic.roi_stats(g, vol)
    expected = [4000.0 + j + 0.001 * k for j in (10, 11, 12) for k in (2, 3)]
    assert stats["n_voxels"] == 6
    assert stats["area_mm2"] == pytest.approx(6.0)
    assert stats["mean"] == pytest.approx(np.mean(expected), abs=1e-3)


def test_ellipse_and_rectangle_are_distinct_regions_with_their_own_statistics() -> None:
    vol = _volume(np.eye(4))  # 1 mm isotropic, value = 1000 i + j + 0.001 k
    box = [[2.0, 5.0, 4.0], [12.0, 25.0, 4.0]]  # i ∈ 2..12, j ∈ 5..25 on slice k = 4
    rect = logic.roi_stats(logic.parse("roi", box, "axial", "reference", None), vol)
    ellipse = logic.roi_stats(logic.parse("ellipse", box, "axial", "reference", None), vol)
    assert rect["n_voxels"] == 11 * 21
    # the voxel centres inside the inscribed ellipse (centre (7, 15), radii 5 and 10), counted here
    i, j = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    inside = ((i - 7.0) / 5.0) ** 2 + ((j - 15.0) / 10.0) ** 2 <= 1.0
    assert ellipse["n_voxels"] == int(inside.sum()) < rect["n_voxels"]
    assert ellipse["area_mm2"] == pytest.approx(inside.sum() * 1.0)
    assert abs(ellipse["area_mm2"] - np.pi * 5 * 10) < 0.1 * np.pi * 5 * 10  # close to π a b
    assert ellipse["mean"] == pytest.approx(np.mean(1000.0 * i[inside] + j[inside] + 0.004), abs=1e-3)
    assert ellipse["max"] < rect["max"]  # the box's corners are outside the ellipse


def test_bidimensional_is_the_product_of_perpendicular_diameters() -> None:
    g = logic.parse("bidimensional", [[0, 0, 5], [30, 0, 5], [15, -6, 5], [15, 6, 5]], "axial", None, None)
    assert logic.bidimensional_values(g) == {"long_mm": 30.0, "short_mm": 12.0, "product_mm2": 360.0}
    with pytest.raises(InputError, match="perpendicular"):
        logic.parse("bidimensional", [[0, 0, 5], [30, 0, 5], [0, 0, 5], [10, 10, 5]], "axial", None, None)
    line = logic.report_sentence("bidimensional", {}, logic.bidimensional_values(g), None, "Dr D")
    assert line == "Reader measurement (Dr D): bidimensional 30.0 × 12.0 mm (product 360.0 mm²)."


@pytest.mark.parametrize(
    ("kind", "points", "plane", "image", "text", "message"),
    [
        ("circle", [[0, 0, 0]], None, None, None, "unknown annotation kind"),
        ("distance", [[0, 0, 0]], None, None, None, "needs 2 point"),
        ("distance", [[0, 0], [1, 1, 1]], None, None, None, r"point 1 must be \[x, y, z\]"),
        ("distance", [[0, 0, "a"], [1, 1, 1]], None, None, None, "three numbers"),
        ("distance", [[0, 0, 1e9], [1, 1, 1]], None, None, None, "within 10 m"),
        ("text", [[0, 0, 0]], None, None, "  ", "needs its text"),
        ("roi", [[0, 0, 0], [5, 5, 0]], "oblique", "reference", None, "needs its plane"),
        ("roi", [[0, 0, 0], [5, 5, 0]], "axial", None, None, "image it was drawn on"),
        ("roi", [[0, 0, 0], [0, 5, 0]], "axial", "reference", None, "has no area"),
        ("ellipse", [[0, 0, 0], [5, 5, 0]], None, "reference", None, "needs its plane"),
        ("bidimensional", [[0, 0, 0], [5, 5, 0]], "axial", None, None, "needs 4 point"),
        ("bidimensional", [[0, 0, 0], [5, 0, 0], [2, 0, 0], [2, 0, 0]], "axial", None, None, "non-zero length"),
        ("distance", [[0, 0, 0], [5, 5, 0]], "oblique", None, None, "axial, coronal or sagittal"),
    ],
)
def test_bad_geometry_is_refused_with_the_reason(
    kind: str, points: list[list[float]], plane: str | None, image: str | None, text: str | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        logic.parse(kind, points, plane, image, text)


def test_an_roi_outside_the_image_is_refused() -> None:
    vol = _volume(np.eye(4))
    g = logic.parse("roi", [[500.0, 500.0, 5.0], [510.0, 510.0, 5.0]], "axial", "reference", None)
    with pytest.raises(InputError, match=r"outside the image|no voxel centre"):
        logic.roi_stats(g, vol)


def test_report_sentences_name_the_value_and_the_author() -> None:
    dist = logic.report_sentence("distance", {"points_mm": [[0, 0, 0], [3, 4, 0]]}, {"length_mm": 5.0}, "ring", "Dr A")
    assert dist == "Reader measurement (Dr A): distance 5.0 mm — ring."
    roi = logic.report_sentence(
        "roi",
        {"plane": "axial", "image": "sequence-T1c"},
        {"area_mm2": 40.0, "mean": 812.25, "sd": 10.0, "n_voxels": 40},
        None,
        "Dr B",
    )
    assert "axial plane of sequence-T1c" in roi and "area 40.0 mm²" in roi and "mean intensity 812.2" in roi
    note = logic.report_sentence("text", {"points_mm": [[1.25, -2, 3]]}, {}, "enhancing rim", "Dr C")
    assert note == "Reader annotation (Dr C) at (1.2, -2.0, 3.0) mm: enhancing rim"
