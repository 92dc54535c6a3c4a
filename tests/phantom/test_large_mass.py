"""Large mass effect (midline shift 5-15 mm) in the phantom: exact truth, old seeds unchanged, and
the midline measurement on such heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuronav.errors import InputError
from neuronav.phantom import generate_study, simulate_subject
from neuronav.phantom._anatomy import SEPTUM_MNI
from neuronav.phantom._deform import forward_position, septum_at_level_mm, septum_shift_mm

pytestmark = pytest.mark.slow


def test_old_seeds_keep_their_mass_effect() -> None:
    # generator 1.0.0 truth, recorded in tests/analysis/test_measure_phantoms.py: seed 1 right
    # glioma, shift −1.66 mm; seed 2 left glioma, +1.55 mm (no new draw may move these)
    s1 = simulate_subject(1, "glioma")
    assert septum_shift_mm(s1.sources, SEPTUM_MNI, s1.anatomy) == pytest.approx(-1.66, abs=0.01)
    assert all(s.rim_mm == 0.0 and s.power == 2.0 for s in s1.sources)
    s2 = simulate_subject(2, "glioma", haemorrhage=True)
    assert septum_shift_mm(s2.sources, SEPTUM_MNI, s2.anatomy) == pytest.approx(1.55, abs=0.01)


@pytest.mark.parametrize(
    ("seed", "lesion", "target"), [(1, "glioma", 10.0), (5, "meningioma", 6.0), (7, "metastasis", 14.0)]
)
def test_requested_shift_is_exact_and_away_from_the_mass(seed: int, lesion: str, target: float) -> None:
    sub = simulate_subject(seed, lesion, midline_shift_mm=target)
    at_level = septum_at_level_mm(sub.sources, SEPTUM_MNI, sub.anatomy)
    assert abs(at_level) == pytest.approx(target, abs=0.01)
    mass_x = float(np.mean([s.centre[0] for s in sub.sources]))
    assert np.sign(at_level) == -np.sign(mass_x)  # pushed away from the mass
    moved = forward_position(SEPTUM_MNI, sub.sources, anatomy=sub.anatomy) - SEPTUM_MNI
    assert abs(moved[0]) >= 2.0 * float(np.linalg.norm(moved[1:]))  # the push crosses the midline
    # the septal tissue itself moved about as far as the septum seen at its level
    assert moved[0] == pytest.approx(at_level, abs=0.35 * target)
    # the tissue really moved: white matter at the septum's level differs from the undeformed head
    plain = simulate_subject(seed, lesion)
    assert not np.allclose(sub.tissue[1], plain.tissue[1])


def test_generate_study_records_the_large_shift(tmp_path: Path) -> None:
    st = generate_study(tmp_path / "s", seed=1, lesion="glioma", fmt="nifti", midline_shift_mm=8.0)
    t = st.truth
    assert t["large_mass_effect_requested_mm"] == 8.0
    assert abs(t["midline_shift_at_level_mm"]) == pytest.approx(8.0, abs=0.01)
    assert t["midline_shift_mm"] < -5.0  # right glioma: septum pushed to the left
    plain = generate_study(tmp_path / "p", seed=1, lesion="glioma", fmt="nifti")
    assert "large_mass_effect_requested_mm" not in plain.truth
    assert plain.truth["midline_shift_mm"] == pytest.approx(-1.655, abs=0.001)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lesion": "none", "midline_shift_mm": 8.0}, "needs a lesion"),
        ({"lesion": "glioma", "midline_shift_mm": 40.0}, "between"),
        ({"lesion": "glioma", "midline_shift_mm": True}, "millimetres"),
        ({"lesion": "glioma", "midline_shift_mm": "8"}, "millimetres"),
    ],
)
def test_bad_shift_requests_are_refused(tmp_path: Path, kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InputError, match=words):
        generate_study(tmp_path, seed=1, fmt="nifti", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "truth.json").exists()


@pytest.mark.xfail(
    strict=True,
    reason="issue 18: analysis/midline.py under-reads large shifts on these phantoms by 3-4.5 mm "
    "(truth -10/-6/-8/-12 mm read -7.1/-2.9/-3.6/-8.3 on seeds 1/2/5/7; the symmetry plane is right within "
    "0.6 mm, the septum found across the rows of the septal region bows from 1 to 10 mm): not yet within 1.5 mm",
)
@pytest.mark.parametrize(("seed", "lesion", "target"), [(1, "glioma", 10.0), (5, "meningioma", 8.0)])
def test_midline_measured_within_1_5_mm_of_a_large_shift(seed: int, lesion: str, target: float) -> None:
    from neuronav.analysis.grid import WORKING_GRID
    from neuronav.analysis.midline import midline_shift_on_grid
    from neuronav.training.data import SEQUENCES, CaseStyle, make_case

    # the head rendered on the working grid with a residual misregistration of ±2°, ±2 mm, ±2 %
    case = make_case(seed, lesion, style=CaseStyle(False, False, False, False, target, 1.0, misregistration=0.5))
    channels = {s: case.images[i].astype(np.float32) for i, s in enumerate(SEQUENCES)}
    ms = midline_shift_on_grid(channels, case.brain_mask, np.asarray(WORKING_GRID.affine, dtype=np.float64))
    assert abs(case.midline_shift_mm) == pytest.approx(target, abs=0.01)
    assert ms.shift_mm == pytest.approx(case.midline_shift_mm, abs=1.5)
