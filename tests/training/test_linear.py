"""The logistic-regression heads: fitted model and its ONNX export agree, and it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from neuronav.training.linear import LinearModel, export_onnx, fit


def separable(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 5.0], [3.0, 0.0, 5.0], [0.0, 3.0, 5.0]])
    y = rng.integers(0, 3, n)
    x = centres[y] + rng.normal(0, 0.6, (n, 3))
    return x, y


def test_fit_learns_separable_classes() -> None:
    x, y = separable()
    model = fit(x, y, 3)
    xt, yt = separable(seed=1)
    assert (model.predict_proba(xt).argmax(axis=1) == yt).mean() > 0.95


def test_probabilities_are_calibrated_shape_and_sum_to_one() -> None:
    x, y = separable()
    p = fit(x, y, 3).predict_proba(x)
    assert p.shape == (300, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


def test_onnx_export_matches_numpy(tmp_path: Path) -> None:
    x, y = separable()
    model = fit(x, y, 3)
    path = export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for row in x[:10]:
        got = session.run(None, {"features": row[None].astype(np.float32)})[0]
        np.testing.assert_allclose(got, model.predict_proba(row[None]), atol=1e-5)


def test_constant_feature_does_not_break_standardisation() -> None:
    x, y = separable()
    x[:, 2] = 5.0
    model: LinearModel = fit(x, y, 3)
    assert np.all(np.isfinite(model.weights)) and model.std[2] == 1.0
