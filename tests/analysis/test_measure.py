"""Measurements on synthetic label maps with known geometry: volumes, lesions, diameters, oedema."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from neuronav.analysis.measure import (
    ALGORITHM_VERSION,
    OEDEMA_MIN_ML,
    SATELLITE_DISTANCE_MM,
    lesion_map,
    lesions,
    oedema,
    tumour_lesions,
    tumour_volumes,
)
from neuronav.findings import Volumes


def _oblique_affine(spacing: tuple[float, float, float], deg: tuple[float, float, float], origin: tuple) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = Rotation.from_euler("xyz", deg, degrees=True).as_matrix() @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def _ellipsoid_mask(
    shape: tuple[int, int, int],
    affine: np.ndarray,
    centre: np.ndarray,
    radii: np.ndarray,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """Voxels whose centre (RAS mm) lies inside an ellipsoid with semi-axes ``radii`` along ``axes``."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3] - centre
    local = ras @ (np.eye(3) if axes is None else axes)
    return (((local / radii) ** 2).sum(axis=1) <= 1.0).reshape(shape)


AFFINE = _oblique_affine((0.9, 1.1, 2.5), (5.0, -8.0, 20.0), (-60.0, -40.0, -30.0))


def test_volumes_are_exact_voxel_counts_times_oblique_voxel_volume() -> None:
    labels = np.zeros((40, 50, 30), np.uint8)
    labels[5:10, 5:10, 5:10] = 1  # 125
    labels[20:30, 20:30, 10:14] = 2  # 400
    labels[30:33, 30:37, 20:25] = 3  # 105
    v = tumour_volumes(labels, AFFINE)
    voxel_ml = 0.9 * 1.1 * 2.5 / 1000.0
    assert v.necrotic_core_ml == pytest.approx(125 * voxel_ml, abs=1e-4)
    assert v.oedema_ml == pytest.approx(400 * voxel_ml, abs=1e-4)
    assert v.enhancing_ml == pytest.approx(105 * voxel_ml, abs=1e-4)
    assert v.whole_tumour_ml == pytest.approx(630 * voxel_ml, abs=1e-4)
    assert v.tumour_core_ml == pytest.approx(230 * voxel_ml, abs=1e-4)


def test_volumes_of_an_empty_map_are_zero_and_bad_input_is_refused() -> None:
    v = tumour_volumes(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    assert v.whole_tumour_ml == 0.0
    with pytest.raises(ValueError):
        tumour_volumes(np.zeros((4, 4), np.uint8), np.eye(4))
    with pytest.raises(ValueError):
        tumour_volumes(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4)))


def test_oedema_threshold() -> None:
    def vols(ml: float) -> Volumes:
        return Volumes(necrotic_core_ml=0, oedema_ml=ml, enhancing_ml=0, whole_tumour_ml=ml, tumour_core_ml=0)

    assert oedema(vols(OEDEMA_MIN_ML)).present
    assert not oedema(vols(0.4)).present
    assert oedema(vols(12.5)).volume_ml == 12.5


W2M = np.array([[1.05, 0, 0, 3.0], [0, 0.95, 0, -7.0], [0, 0, 1.0, 12.0], [0, 0, 0, 1.0]])


def test_two_lesions_largest_first_with_centroids_in_ras_and_mni() -> None:
    shape = (120, 110, 50)
    big_c, small_c = np.array([-20.0, 0.0, 20.0]), np.array([5.0, 40.0, 30.0])
    big = _ellipsoid_mask(shape, AFFINE, big_c, np.array([12.0, 9.0, 7.0]))
    small = _ellipsoid_mask(shape, AFFINE, small_c, np.array([5.0, 5.0, 5.0]))
    labels = np.zeros(shape, np.uint8)
    labels[big] = 2
    core = _ellipsoid_mask(shape, AFFINE, big_c, np.array([8.0, 7.0, 6.0]))  # largest core first
    labels[core] = 1
    labels[small] = 3
    labels[3, 3, 3] = 3  # a single voxel: below min_volume_ml
    found = lesions(labels, AFFINE, W2M)
    assert [les.index for les in found] == [1, 2]
    assert found[0].volume_ml > found[1].volume_ml
    voxel_ml = abs(np.linalg.det(AFFINE[:3, :3])) / 1000.0
    assert found[0].volume_ml == pytest.approx(big.sum() * voxel_ml, abs=1e-3)
    for les, c in zip(found, (big_c, small_c), strict=True):
        assert np.allclose(les.centroid_ras_mm, c, atol=0.6)
        assert np.allclose(les.centroid_mni_mm, W2M[:3, :3] @ c + W2M[:3, 3], atol=0.7)
    # the single voxel counts when the floor is lowered
    assert len(lesions(labels, AFFINE, W2M, min_volume_ml=0.0)) == 3


def test_ellipsoid_diameters_within_one_voxel_on_an_oblique_anisotropic_grid() -> None:
    aff = _oblique_affine((1.0, 1.0, 2.0), (0.0, 0.0, 30.0), (-50.0, -50.0, -40.0))
    shape = (110, 110, 45)
    # semi-axes 20 (along R rotated 25° in the axial plane), 10 (perpendicular in-plane), 8 (S)
    axes = Rotation.from_euler("z", 25, degrees=True).as_matrix()
    m = _ellipsoid_mask(shape, aff, np.array([0.0, 0.0, 0.0]), np.array([20.0, 10.0, 8.0]), axes)
    labels = m.astype(np.uint8) * 3  # the diameters are the core's
    (les,) = lesions(labels, aff, np.eye(4))
    tol = 2.0  # one voxel (largest spacing)
    assert les.max_diameter_mm == pytest.approx(40.0, abs=tol)
    assert les.max_axial_diameter_mm == pytest.approx(40.0, abs=tol)
    assert les.perpendicular_axial_diameter_mm == pytest.approx(20.0, abs=tol)
    assert les.bidimensional_product_mm2 == pytest.approx(
        les.max_axial_diameter_mm * les.perpendicular_axial_diameter_mm, rel=1e-3
    )


def test_axial_diameters_on_a_sagittal_grid_use_the_ras_axial_plane() -> None:
    # sagittal acquisition: i runs A→P... here i = A, j = S, k = R (1 × 1 × 1.5 mm)
    aff = np.zeros((4, 4))
    aff[1, 0], aff[2, 1], aff[0, 2], aff[3, 3] = 1.0, 1.0, 1.5, 1.0
    aff[:3, 3] = (-45.0, -50.0, -50.0)
    shape = (100, 100, 60)
    # tall ellipsoid: long in S (30), 16 along A, 10 along R
    m = _ellipsoid_mask(shape, aff, np.zeros(3), np.array([5.0, 8.0, 15.0]))
    (les,) = lesions(m.astype(np.uint8), aff, np.eye(4))
    assert les.max_diameter_mm == pytest.approx(30.0, abs=1.5)
    assert les.max_axial_diameter_mm == pytest.approx(16.0, abs=1.5)  # not the S extent
    assert les.perpendicular_axial_diameter_mm == pytest.approx(10.0, abs=1.5)


def test_lesion_location_comes_from_the_atlas_at_the_mni_centroid() -> None:
    aff = np.eye(4)
    aff[:3, 3] = (-80.0, -110.0, -60.0)
    labels = np.zeros((160, 200, 150), np.uint8)
    # left frontal: around MNI (-40, 20, 40)
    i, j, k = 40, 130, 100
    labels[i - 4 : i + 5, j - 4 : j + 5, k - 4 : k + 5] = 3
    (les,) = lesions(labels, aff, np.eye(4))
    assert les.location.hemisphere == "left"
    assert les.location.lobe == "frontal"
    assert "AAL2" in les.location.atlas
    assert ALGORITHM_VERSION


def test_no_tumour_gives_no_lesions() -> None:
    assert lesions(np.zeros((10, 10, 10), np.uint8), np.eye(4), np.eye(4)) == []


ISO = np.diag([1.0, 1.0, 1.0, 1.0])
ISO[:3, 3] = (-60.0, -60.0, -40.0)


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float], r: float) -> np.ndarray:
    return _ellipsoid_mask(shape, ISO, np.asarray(centre), np.array([r, r, r]))


def test_a_glioma_with_oedema_islands_is_one_lesion() -> None:
    """The issue's case: one glioma listed as 10 lesions (its oedema islands). A core with its oedema is
    one lesion; oedema around no core is in the volumes and in oedema_islands_ml, never a lesion."""
    shape = (120, 120, 80)
    labels = np.zeros(shape, np.uint8)
    labels[_ball(shape, (0, 0, 0), 25)] = 2
    labels[_ball(shape, (0, 0, 0), 12)] = 1
    labels[_ball(shape, (0, 0, 0), 12) & ~_ball(shape, (0, 0, 0), 9)] = 3
    islands = [(40, 40, 20), (-40, 40, -20), (40, -45, 10), (-45, -40, 0), (0, 50, 30)]
    for c in islands:
        labels[_ball(shape, c, 6)] = 2
    result = tumour_lesions(labels, ISO, np.eye(4))
    (les,) = result.lesions
    core = _ball(shape, (0, 0, 0), 12).sum() / 1000.0
    assert les.core_ml == pytest.approx(core, abs=1e-3)
    assert les.enhancing_ml == pytest.approx((labels == 3).sum() / 1000.0, abs=1e-3)
    assert les.oedema_ml == pytest.approx((_ball(shape, (0, 0, 0), 25).sum() / 1000.0) - core, abs=1e-3)
    assert les.max_diameter_mm == pytest.approx(24.0, abs=1.5)  # the core's, not the oedema's 50 mm
    assert les.oedema_max_diameter_mm == pytest.approx(50.0, abs=1.5)
    island_ml = sum(_ball(shape, c, 6).sum() for c in islands) / 1000.0
    assert result.oedema_islands_ml == pytest.approx(island_ml, abs=1e-3)
    assert les.satellites == 0


def test_a_satellite_within_the_distance_joins_its_tumour_and_a_distant_tumour_is_another_lesion() -> None:
    shape = (140, 120, 80)
    labels = np.zeros(shape, np.uint8)
    labels[_ball(shape, (-20, 0, 0), 10)] = 3
    gap = SATELLITE_DISTANCE_MM / 2  # 5 mm from the main core: a satellite
    labels[_ball(shape, (-20 + 10 + gap + 3, 0, 0), 3)] = 3
    labels[_ball(shape, (40, 0, 0), 6)] = 3  # 60 mm away: a second tumour (a metastasis)
    found = tumour_lesions(labels, ISO, np.eye(4)).lesions
    assert [les.index for les in found] == [1, 2]
    assert found[0].satellites == 1 and found[1].satellites == 0
    assert found[0].core_ml == pytest.approx(
        (_ball(shape, (-20, 0, 0), 10) | _ball(shape, (-20 + 10 + gap + 3, 0, 0), 3)).sum() / 1000.0, abs=1e-3
    )
    # with no satellite distance the fragment is a lesion of its own
    assert len(tumour_lesions(labels, ISO, np.eye(4), satellite_mm=0.0).lesions) == 3


def test_two_metastases_sharing_one_oedema_are_two_lesions_and_the_oedema_goes_to_the_nearest() -> None:
    shape = (140, 100, 80)
    labels = np.zeros(shape, np.uint8)
    labels[_ellipsoid_mask(shape, ISO, np.zeros(3), np.array([40.0, 15.0, 15.0]))] = 2
    labels[_ball(shape, (-22, 0, 0), 5)] = 3
    labels[_ball(shape, (22, 0, 0), 5)] = 3
    a, b = tumour_lesions(labels, ISO, np.eye(4)).lesions
    total_oedema = (labels == 2).sum() / 1000.0
    assert (a.oedema_ml or 0) + (b.oedema_ml or 0) == pytest.approx(total_oedema, abs=1e-3)
    assert abs((a.oedema_ml or 0) - (b.oedema_ml or 0)) < 0.1 * total_oedema  # split at the middle


def test_oedema_alone_is_never_a_lesion() -> None:
    shape = (40, 40, 40)
    labels = np.zeros(shape, np.uint8)
    labels[_ball(shape, (0, 0, -20), 8)] = 2
    result = tumour_lesions(labels, ISO, np.eye(4))
    assert result.lesions == [] and result.oedema_islands_ml == pytest.approx((labels == 2).sum() / 1000.0)
    with pytest.raises(ValueError, match="satellite_mm"):
        tumour_lesions(labels, ISO, np.eye(4), satellite_mm=-1.0)


def test_lesion_map_numbers_each_voxel_as_tumour_lesions_counts_it() -> None:
    """The voxels a reader rejects with lesion n: its core, its satellites and its oedema; islands none."""
    shape = (140, 120, 80)
    labels = np.zeros(shape, np.uint8)
    big, small = _ball(shape, (-20, 0, 0), 10), _ball(shape, (40, 0, 0), 6)
    labels[_ball(shape, (-20, 0, 0), 16)] = 2
    labels[big] = 3
    satellite = _ball(shape, (-20 + 10 + 5 + 3, 0, 0), 3) & ~_ball(shape, (-20, 0, 0), 16)
    labels[satellite] = 1
    labels[small] = 1
    island = _ball(shape, (0, 45, 30), 5)
    labels[island] = 2
    owner = lesion_map(labels, ISO)
    found = tumour_lesions(labels, ISO, np.eye(4)).lesions
    assert int(owner.max()) == len(found) == 2
    for les in found:  # the same numbering and the same voxels as the measured lesions
        assert (owner == les.index).sum() / 1000.0 == pytest.approx(les.volume_ml, abs=1e-4)
    assert np.all(owner[big] == 1) and np.all(owner[satellite] == 1) and np.all(owner[small] == 2)
    assert not np.any(owner[island]) and not np.any(owner[labels == 0])
    rejected = labels.copy()
    rejected[owner == 1] = 0
    (left,) = tumour_lesions(rejected, ISO, np.eye(4)).lesions
    assert left.core_ml == pytest.approx(small.sum() / 1000.0, abs=1e-4)
    assert not np.any(lesion_map(np.zeros(shape, np.uint8), ISO))
