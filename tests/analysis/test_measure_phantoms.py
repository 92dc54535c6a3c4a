"""Midline shift, ventricles and haemorrhage on phantom studies against the generator's truth.

Each study is generated (NIfTI, clinical geometry), preprocessed (registration to MNI152), and the
truth labels of the reference series are carried onto the working grid, so these tests do not
depend on a trained segmentation network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuronav.analysis.measure import haemorrhage, midline_shift, tumour_volumes, ventricles
from neuronav.analysis.preprocess import Preprocessed, preprocess
from neuronav.phantom import generate_study
from neuronav.volume.nifti import load_nifti

pytestmark = pytest.mark.slow

# seed, lesion, haemorrhage. Truth (generator 1.0.0): seed 1 right glioma, shift −1.66 mm, no
# haemorrhage; seed 2 left glioma, shift +1.55 mm, haemorrhage 6.7 mL; seed 3 no lesion.
CASES = {"right": (1, "glioma", False), "left_haem": (2, "glioma", True), "normal": (3, "none", None)}


@dataclass
class Case:
    truth: dict[str, Any]
    pre: Preprocessed
    grid_labels: np.ndarray


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    out: dict[str, Case] = {}
    for key, (seed, lesion, haem) in CASES.items():
        root: Path = tmp_path_factory.mktemp(key)
        st = generate_study(root, seed=seed, lesion=lesion, fmt="nifti", haemorrhage=haem, profile="clinical")
        pre = preprocess({s.name: load_nifti(s.path) for s in st.series})
        ref_labels = np.asarray(load_nifti(st.series_named(pre.reference).label_path).data, dtype=np.uint8)
        grid = np.asarray(pre.from_reference(ref_labels, order=0), dtype=np.uint8)
        out[key] = Case(truth=st.truth, pre=pre, grid_labels=grid)
    return out


def test_midline_shift_within_a_millimetre_of_truth(cases: dict[str, Case]) -> None:
    for key, case in cases.items():
        ms = midline_shift(case.pre)
        truth = float(case.truth["midline_shift_mm"])
        assert ms.shift_mm == pytest.approx(truth, abs=1.0), key
        assert ms.magnitude_mm == pytest.approx(abs(ms.shift_mm))
        assert ms.produced_by.name == "neuronav.midline_shift"
        assert "septum" in ms.level
    # the sign follows the mass: a right lesion pushes the septum left (negative), a left one right
    assert midline_shift(cases["right"].pre).shift_mm < -0.8
    assert midline_shift(cases["left_haem"].pre).shift_mm > 0.8


def test_ventricles_compressed_on_the_side_of_the_mass(cases: dict[str, Case]) -> None:
    normal = ventricles(cases["normal"].pre, cases["normal"].grid_labels)
    assert normal.status == "normal"
    assert abs(normal.asymmetry) < 0.05
    assert normal.total_ml == pytest.approx(normal.left_ml + normal.right_ml, abs=0.02)
    right = ventricles(cases["right"].pre, cases["right"].grid_labels)  # right lesion
    assert right.right_ml < right.left_ml
    assert right.asymmetry > 0.1
    left = ventricles(cases["left_haem"].pre, cases["left_haem"].grid_labels)
    assert left.asymmetry < normal.asymmetry


def test_haemorrhage_flag_and_volume(cases: dict[str, Case]) -> None:
    with_blood = cases["left_haem"]
    h = haemorrhage(with_blood.pre, with_blood.grid_labels)
    assert h.suspected
    truth_ml = float(with_blood.truth["haemorrhage"]["volume_ml"])
    assert h.volume_ml == pytest.approx(truth_ml, rel=0.35)
    for key in ("right", "normal"):
        assert not haemorrhage(cases[key].pre, cases[key].grid_labels).suspected, key


def test_grid_volume_close_to_truth(cases: dict[str, Case]) -> None:
    # truth labels carried to the reference grid: whole-tumour volume within 10 % of the 1 mm truth
    case = cases["right"]
    ref_labels = np.asarray(case.pre.to_reference(case.grid_labels, order=0), dtype=np.uint8)
    v = tumour_volumes(ref_labels, case.pre.reference_volume.affine)
    assert v.whole_tumour_ml == pytest.approx(case.truth["volumes_ml"]["whole_tumour"], rel=0.1)
