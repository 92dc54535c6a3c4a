"""The training pipeline end to end on a tiny budget: cases, training, resume, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from neuronav.analysis.grid import WORKING_GRID
from neuronav.training.data import build_cache, load_case, make_case
from neuronav.training.segmentation import TrainConfig, dice_scores, train

SEEDS = [1_000_000 + 7, 1_000_000 + 8]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_cache(tmp_path_factory.mktemp("cache"), SEEDS, workers=1)


@pytest.mark.slow
def test_cases_are_deterministic_and_match_inference_normalisation(cases: list[Path]) -> None:
    case = load_case(cases[0])
    again = make_case(SEEDS[0])
    np.testing.assert_array_equal(case.images, again.images)
    np.testing.assert_array_equal(case.labels, again.labels)
    assert case.images.shape == (4, *WORKING_GRID.shape)
    inside = case.images[:, case.brain_mask].astype(np.float32)
    np.testing.assert_allclose(inside.mean(axis=1), 0.0, atol=0.1)  # z-scored in the brain, like inference
    assert not case.images[:, ~case.brain_mask].any()
    assert set(np.unique(case.labels)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_train_resume_and_export(cases: list[Path], tmp_path: Path) -> None:
    cfg = TrainConfig(name="tiny", seed=3, steps=4, base=4, crop=16, checkpoint_every=2, validate_every=100, threads=1)
    first = train(TrainConfig(**{**cfg.__dict__, "steps": 2}), cases[:1], cases[1:], tmp_path, log=lambda m: None)
    assert (tmp_path / "tiny.checkpoint.pt").exists() and first["config"]["steps"] == 2
    lines: list[str] = []
    record = train(cfg, cases[:1], cases[1:], tmp_path, log=lines.append)
    assert any("resumed at step 2" in line for line in lines)
    session = ort.InferenceSession(record["onnx"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 4, 64, 64, 64]  # the inference window
    image = load_case(cases[1]).images.astype(np.float32)[None]
    probabilities = session.run(None, {"image": np.ascontiguousarray(image[:, :, :64, :64, :64])})[0]
    assert probabilities.shape == (1, 4, 64, 64, 64)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_dice_scores_regions() -> None:
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[2:6, 2:6, 2:6] = 2
    truth[3:5, 3:5, 3:5] = 3
    pred = truth.copy()
    pred[3:5, 3:5, 3:5] = 1  # core right, enhancing wrong
    d = dice_scores(pred, truth)
    assert d["whole_tumour"] == 1.0 and d["tumour_core"] == 1.0 and d["enhancing"] == 0.0
