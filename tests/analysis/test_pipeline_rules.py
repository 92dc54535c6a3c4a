"""Rules of the analysis pipeline that do not need the networks: change vs prior, metrics, inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuronav.analysis.evaluate import dice, hd95
from neuronav.analysis.features import CLASSIFICATION_FEATURES, classification_features, detection_features
from neuronav.analysis.inputs import from_nifti, from_paths
from neuronav.analysis.pipeline import _change
from neuronav.errors import InputError
from neuronav.findings import Findings


def prior_with(enhancing: float, whole: float = 30.0) -> Findings:
    from tests.analysis.findings_factory import make_findings

    return make_findings(enhancing_ml=enhancing, whole_tumour_ml=whole)


def volumes(enhancing: float, whole: float = 30.0) -> dict[str, float]:
    return {
        "necrotic_core_ml": 2.0,
        "oedema_ml": whole - enhancing - 2.0,
        "enhancing_ml": enhancing,
        "whole_tumour_ml": whole,
        "tumour_core_ml": enhancing + 2.0,
    }


@pytest.mark.parametrize(
    ("before", "after", "category"),
    [
        (10.0, 14.0, "progression"),  # +40 %
        (10.0, 13.9, "stable"),
        (10.0, 3.5, "partial_response"),  # −65 %
        (10.0, 3.6, "stable"),
        (10.0, 0.0, "complete_response"),
        (0.0, 0.0, "stable"),
        (0.0, 2.0, "progression"),  # new enhancement
    ],
)
def test_rano_volumetric_categories(before: float, after: float, category: str) -> None:
    change = _change(volumes(after), prior_with(before))
    assert change.rano_category == category
    if before > 0:
        assert change.volume_change_percent["enhancing_ml"] == pytest.approx(100 * (after - before) / before, abs=0.1)
    else:
        assert change.volume_change_percent["enhancing_ml"] is None


def test_dice_and_hd95_on_shifted_cubes() -> None:
    a = np.zeros((30, 30, 30), bool)
    b = np.zeros_like(a)
    a[5:15, 5:15, 5:15] = True
    b[7:17, 5:15, 5:15] = True  # shifted by 2 voxels along x
    assert dice(a, b) == pytest.approx(2 * 800 / 2000)
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(a, b, (0.5, 1.0, 1.0)) == pytest.approx(1.0)
    assert hd95(a, np.zeros_like(a), (1.0, 1.0, 1.0)) is None
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_features_tell_surface_from_deep_lesions() -> None:
    brain = np.zeros((40, 40, 40), bool)
    brain[4:36, 4:36, 4:36] = True
    deep = np.zeros((40, 40, 40), np.uint8)
    deep[17:23, 17:23, 17:23] = 3
    surface = np.zeros_like(deep)
    surface[4:10, 17:23, 17:23] = 3
    f_deep = dict(zip(CLASSIFICATION_FEATURES, classification_features(deep, brain, None), strict=True))
    f_surf = dict(zip(CLASSIFICATION_FEATURES, classification_features(surface, brain, None), strict=True))
    assert f_surf["core_surface_fraction"] > 0.3 > f_deep["core_surface_fraction"]
    assert f_surf["core_depth_mm"] < f_deep["core_depth_mm"]
    assert f_deep["n_lesions"] == 1.0


def test_detection_features_grow_with_the_tumour() -> None:
    brain = np.ones((20, 20, 20), bool)
    p = np.zeros((20, 20, 20), np.float32)
    empty = detection_features(p, brain)
    p[5:10, 5:10, 5:10] = 0.95
    some = detection_features(p, brain)
    assert some[0] > empty[0] and some[1] == pytest.approx(0.95)


def test_inputs_need_t1c_flair_or_t2(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="T1c, FLAIR or T2"):
        from_nifti({"T1": tmp_path / "t1.nii.gz"})
    with pytest.raises(InputError, match="unknown sequence"):
        from_nifti({"PD": tmp_path / "pd.nii.gz"})


def test_inputs_refuse_unnamed_nifti_and_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="cannot tell the sequence"):
        from_paths([tmp_path / "scan.nii.gz"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM images"):
        from_paths([tmp_path / "empty"])
