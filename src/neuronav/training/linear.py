"""Multinomial logistic regression: fitted with L-BFGS, exported as a tiny ONNX graph.

Used for the detection (tumour / no tumour) and classification (glioma / meningioma / metastasis)
models on the features of :mod:`neuronav.analysis.features`. The ONNX graph standardises the
features with the training mean and standard deviation, then MatMul + Add + Softmax:
input ``features`` (1, F) float32 → output ``probabilities`` (1, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize


@dataclass(frozen=True)
class LinearModel:
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]  # (F, K)
    bias: npt.NDArray[np.float64]  # (K,)

    def predict_proba(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        z = ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def fit(x: npt.NDArray[np.floating], y: npt.NDArray[np.integer], n_classes: int, l2: float = 1e-2) -> LinearModel:
    """Maximum-likelihood softmax regression with an L2 penalty (deterministic)."""
    x = np.asarray(x, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-6] = 1.0
    xs = (x - mean) / std
    n, f = xs.shape
    onehot = np.eye(n_classes)[np.asarray(y)]

    def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w = theta[: f * n_classes].reshape(f, n_classes)
        b = theta[f * n_classes :]
        z = xs @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        value = -float((onehot * logp).sum()) / n + 0.5 * l2 * float((w**2).sum())
        grad_z = (p - onehot) / n
        gw = xs.T @ grad_z + l2 * w
        gb = grad_z.sum(axis=0)
        return value, np.concatenate([gw.ravel(), gb])

    res = minimize(loss, np.zeros(f * n_classes + n_classes), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    w = res.x[: f * n_classes].reshape(f, n_classes)
    return LinearModel(mean, std, w, res.x[f * n_classes :])


def export_onnx(model: LinearModel, path: Path) -> Path:
    """Write the model as an ONNX graph (needs the ``onnx`` package: the train extra)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f, k = model.weights.shape
    inits = [
        numpy_helper.from_array(model.mean.astype(np.float32)[None], "mean"),
        numpy_helper.from_array(model.std.astype(np.float32)[None], "std"),
        numpy_helper.from_array(model.weights.astype(np.float32), "weights"),
        numpy_helper.from_array(model.bias.astype(np.float32)[None], "bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["logits0"]),
        helper.make_node("Add", ["logits0", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "neuronav_linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, f])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, k])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="neuronav")
    m.ir_version = 8
    onnx.checker.check_model(m)
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(tmp))
    tmp.replace(path)
    return path
