"""`neuronav evaluate` over both kinds and two seed sets: per-kind summaries side by side and the spread
between the sets (the cases themselves are stubbed here; test_brats_inputs runs a real BraTS case)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neuronav.analysis import evaluate as ev
from neuronav.errors import InputError


def _fake_case(seed: int, work: Path, *, model: str | None = None, kind: str = "dicom") -> ev.CaseResult:
    lesion = ev.LESION_CYCLE[seed % len(ev.LESION_CYCLE)]
    wt = 0.9 if kind == "dicom" else 0.8
    wt += 0.01 * (seed >= 100)  # the second seed set a little better
    r = ev.CaseResult(
        seed=seed,
        lesion=lesion,
        profile="varied",
        truth_whole_ml=20.0 if lesion != "none" else 0.0,
        detected=lesion != "none",
        probability=0.9 if lesion != "none" else 0.1,
        predicted_class=lesion if lesion != "none" else None,
        kind=kind,
    )
    if lesion != "none":
        r.dice = {"whole_tumour": wt, "tumour_core": 0.8, "enhancing": 0.7}
    r.midline_error_mm = 0.5
    return r


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    calls: list[tuple[int, str]] = []

    def run_case(seed: int, work: Path, **kw: Any) -> ev.CaseResult:
        calls.append((seed, kw.get("kind", "dicom")))
        return _fake_case(seed, work, **kw)

    monkeypatch.setattr(ev, "run_case", run_case)
    monkeypatch.setattr(ev, "run_normal_brains", lambda work, model=None: [])
    return calls


def test_both_kinds_side_by_side_with_the_spread_between_seed_sets(
    stubbed: list[tuple[int, str]], tmp_path: Path
) -> None:
    summary = ev.evaluate_kinds(3, [0, 101], tmp_path, kinds=("dicom", "brats"))
    assert sorted(stubbed) == sorted((s, k) for s in (0, 1, 2, 101, 102, 103) for k in ("dicom", "brats"))
    by = summary["by_kind"]
    assert by["dicom"]["tumour_cases"] == 5 and by["brats"]["tumour_cases"] == 5  # seed 103 is a normal study
    # means per kind over both sets: dicom (0.9·3 + 0.91·2)/5, brats (0.8·3 + 0.81·2)/5
    assert by["dicom"]["dice_whole_tumour_mean"] == pytest.approx(0.904)
    assert by["brats"]["dice_whole_tumour_mean"] == pytest.approx(0.804)
    row = next(r for r in summary["side_by_side"] if r["metric"] == "dice_whole_tumour_mean")
    assert row["dicom"] == pytest.approx(0.904) and row["brats"] == pytest.approx(0.804)
    assert summary["spread"]["dicom"]["dice_whole_tumour_mean"] == pytest.approx(0.01)
    assert summary["spread"]["brats"]["dice_tumour_core_mean"] == pytest.approx(0.0)
    assert summary["labelled_ml_in_negative_studies_max"] == 0.0
    assert (tmp_path / "evaluation.json").is_file()


def test_bad_kinds_and_overlapping_seed_sets_are_refused(stubbed: list[tuple[int, str]], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown evaluation format nifti"):
        ev.evaluate_kinds(2, [0], tmp_path, kinds=("nifti",))
    with pytest.raises(InputError, match="overlap"):
        ev.evaluate_kinds(4, [0, 2], tmp_path)
    assert stubbed == []
