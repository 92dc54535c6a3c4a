"""Ensemble segmentation on ONNX Runtime: averaging, labels, heatmap, uncertainty, missing sequences.

The members are 1×1×1 convolutions + softmax built as ONNX graphs, so every expected number is
computed here by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuronav.analysis import models as models_pkg
from neuronav.analysis.inference import segment
from neuronav.analysis.models import LoadedModel, ModelError, file_sha256, load_model, parse_card, write_card
from tests.analysis.test_models import build_seg_onnx, card_dict

SHAPE = (6, 7, 5)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEURONAV_MODELS_DIR", str(tmp_path / "shipped"))
    monkeypatch.setenv("NEURONAV_USER_MODELS_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("NEURONAV_THREADS", "1")
    models_pkg.clear_cache()
    return tmp_path / "shipped"


def member(
    base: Path,
    name: str,
    bias: Sequence[float] = (0, 0, 0, 0),
    weight: np.ndarray | None = None,
    softmax: bool = True,
    shape: Sequence[int | str] = (1, 4, "x", "y", "z"),
    **card: Any,
) -> LoadedModel:
    folder = base / name / "1.0"
    f = build_seg_onnx(folder / "model.onnx", weight=weight, bias=bias, shape=shape, softmax=softmax)
    write_card(folder, parse_card(card_dict(name, "1.0", shape=list(shape), sha256=file_sha256(f), **card)))
    return load_model(name)


def softmax(b: Sequence[float]) -> np.ndarray:
    e = np.exp(np.asarray(b, np.float64))
    return np.asarray(e / e.sum())


def channels(**given: float) -> dict[str, np.ndarray]:
    return {k: np.full(SHAPE, v, np.float32) for k, v in given.items()}


def test_single_model(models_dir: Path) -> None:
    m = member(models_dir, "solo", bias=(0, 2, 1, 0))
    out = segment(channels(T1=0.0, FLAIR=0.0), [m])
    p = softmax((0, 2, 1, 0))
    assert out.probabilities.shape == (4, *SHAPE) and out.probabilities.dtype == np.float32
    np.testing.assert_allclose(out.probabilities[:, 0, 0, 0], p, rtol=1e-5)
    assert out.labels.dtype == np.uint8 and np.all(out.labels == 1)
    np.testing.assert_allclose(out.tumour_probability, 1 - p[0], rtol=1e-5)
    assert out.uncertainty == 0.0
    assert out.member_agreement is None
    assert [pb.name for pb in out.produced_by] == ["solo"]
    assert out.produced_by[0].sha256 == m.card.sha256
    assert out.sequences_used == ["T1", "FLAIR"]
    assert out.label_names[3] == "enhancing"
    assert out.seconds >= 0


def test_ensemble_is_the_mean_and_disagreement_is_uncertainty(models_dir: Path) -> None:
    a = member(models_dir, "a", bias=(0, 2, 0, 0), ensemble="e")  # tumour everywhere
    b = member(models_dir, "b", bias=(3, 0, 0, 0), ensemble="e")  # no tumour anywhere
    out = segment(channels(T1=0.0), [a, b])
    pa, pb = softmax((0, 2, 0, 0)), softmax((3, 0, 0, 0))
    np.testing.assert_allclose(out.probabilities[:, 2, 3, 4], (pa + pb) / 2, rtol=1e-5)
    np.testing.assert_allclose(out.tumour_probability, 1 - (pa[0] + pb[0]) / 2, rtol=1e-5)
    # with two members: 2·std = |t_a − t_b|, averaged over the voxels either calls tumour (all)
    assert out.uncertainty == pytest.approx(abs(pa[0] - pb[0]), rel=1e-5)
    assert out.member_agreement == 0.0
    assert np.all(out.labels == np.argmax((pa + pb) / 2))


def test_identical_members_agree(models_dir: Path) -> None:
    a = member(models_dir, "a", bias=(0, 0, 3, 0))
    b = member(models_dir, "b", bias=(0, 0, 3, 0))
    out = segment(channels(T2=1.0), [a, b])
    assert out.uncertainty == pytest.approx(0.0, abs=1e-6)
    assert out.member_agreement == 1.0
    assert np.all(out.labels == 2)


def test_no_tumour_anywhere_means_no_uncertainty(models_dir: Path) -> None:
    a = member(models_dir, "a", bias=(3, 0, 0, 0))
    b = member(models_dir, "b", bias=(1, 0, 0, 0))
    out = segment(channels(T1=1.0), [a, b])
    assert out.uncertainty == 0.0 and out.member_agreement == 1.0
    assert not out.labels.any()


def test_channels_are_stacked_in_the_card_order_and_missing_ones_are_zero(models_dir: Path) -> None:
    # logits = 10 × input channels: the label is the position of the bright sequence in the card's order
    inputs = [{"name": "image", "shape": [1, 4, "x", "y", "z"], "channels": ["FLAIR", "T2", "T1c", "T1"]}]
    m = member(models_dir, "ordered", weight=10 * np.eye(4), inputs=inputs)
    given = {"T2": np.zeros(SHAPE, np.float32), "T1": np.zeros(SHAPE, np.float32)}
    given["T2"][1:3, 2:4, 1:3] = 1.0
    given["T1"][4, 5, 3] = 1.0
    out = segment(given, [m])
    assert np.all(out.labels[1:3, 2:4, 1:3] == 1)  # T2 is channel 1
    assert out.labels[4, 5, 3] == 3  # T1 is channel 3
    assert int((out.labels != 0).sum()) == 2 * 2 * 2 + 1
    assert out.sequences_used == ["T1", "T2"]


def test_working_grid_model(models_dir: Path) -> None:
    from neuronav.analysis.grid import WORKING_GRID

    m = member(models_dir, "grid", weight=np.eye(4), shape=(1, 4, *WORKING_GRID.shape))
    flair = np.zeros(WORKING_GRID.shape, np.float32)
    flair[40:50, 50:60, 40:50] = 3.0
    out = segment({"FLAIR": flair}, [m])
    assert out.labels.shape == WORKING_GRID.shape
    assert int((out.labels == 3).sum()) == 1000
    with pytest.raises(ModelError, match="larger than the grid"):
        segment({"FLAIR": np.zeros((96, 112, 95), np.float32)}, [m])


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"PD": np.zeros(SHAPE, np.float32)}, "unknown sequences"),
        ({}, "no input sequence"),
        ({"T1": np.zeros(SHAPE, np.float32), "T2": np.zeros((6, 7, 4), np.float32)}, "same shape"),
        ({"T1": np.zeros((6, 7), np.float32)}, "3-D"),
        ({"T1": np.full(SHAPE, np.nan, np.float32)}, "NaN"),
    ],
)
def test_bad_channels_are_refused(models_dir: Path, given: dict[str, np.ndarray], problem: str) -> None:
    m = member(models_dir, "solo")
    with pytest.raises(ModelError, match=problem):
        segment(given, [m])


def test_members_must_output_probabilities_and_share_labels(models_dir: Path) -> None:
    logits = member(models_dir, "logits", bias=(5, 0, 0, 0), softmax=False)
    with pytest.raises(ModelError, match="softmax"):
        segment(channels(T1=0.0), [logits])
    a = member(models_dir, "a")
    other = member(models_dir, "b", labels={"0": "background", "1": "tumour", "2": "x", "3": "y"})
    with pytest.raises(ModelError, match="labels"):
        segment(channels(T1=0.0), [a, other])
    with pytest.raises(ModelError, match="no segmentation model"):
        segment(channels(T1=0.0), [])


def test_a_member_that_uses_none_of_the_given_sequences_is_refused(models_dir: Path) -> None:
    inputs = [{"name": "image", "shape": [1, 1, "x", "y", "z"], "channels": ["FLAIR"]}]
    folder = models_dir / "flair-only" / "1.0"
    # a one-channel network: Conv 1 → 4
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "W", "B"], ["l"], kernel_shape=[1, 1, 1]),
            helper.make_node("Softmax", ["l"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "x", "y", "z"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4, "x", "y", "z"])],
        initializer=[
            numpy_helper.from_array(np.ones((4, 1, 1, 1, 1), np.float32), "W"),
            numpy_helper.from_array(np.zeros(4, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    card = card_dict("flair-only", inputs=inputs, sha256=file_sha256(folder / "model.onnx"))
    write_card(folder, parse_card(card))
    m = load_model("flair-only")
    assert segment(channels(FLAIR=1.0), [m]).probabilities.shape == (4, *SHAPE)
    with pytest.raises(ModelError, match="none of the sequences"):
        segment(channels(T1=1.0), [m])


def test_confine_to_head_clears_tumour_outside_the_widened_brain_mask() -> None:
    from neuronav.analysis.inference import confine_to_head

    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    prob = np.zeros((4, 20, 20, 20), np.float32)
    prob[2] = 1.0  # "oedema" everywhere
    confined, labels, tumour = confine_to_head(prob, mask)
    assert labels[10, 10, 10] == 2 and labels[3, 10, 10] == 2  # inside, and within 6 mm of the mask
    assert labels[0, 0, 0] == 0 and tumour[0, 0, 0] == 0.0
    np.testing.assert_allclose(confined.sum(axis=0), 1.0)
    assert prob[2, 0, 0, 0] == 1.0  # the input is left alone


def test_windowed_model_tiles_the_grid_and_matches_a_whole_grid_model(models_dir: Path) -> None:
    from neuronav.analysis.grid import WORKING_GRID

    whole = member(models_dir, "whole", weight=np.eye(4), shape=(1, 4, *WORKING_GRID.shape))
    windowed = member(models_dir, "windowed", weight=np.eye(4), shape=(1, 4, 64, 64, 64))
    rng = np.random.default_rng(0)
    flair = rng.normal(size=WORKING_GRID.shape).astype(np.float32)
    a = segment({"FLAIR": flair}, [whole])
    b = segment({"FLAIR": flair}, [windowed])  # a voxelwise model: windows must not change anything
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_sliding_window_covers_every_voxel_once_averaged() -> None:
    from neuronav.analysis.inference import sliding_window

    calls: list[tuple[int, ...]] = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return np.ones((1, 2, *x.shape[2:]), np.float32)

    out = sliding_window(predict, np.zeros((1, 1, 96, 112, 96), np.float32), (64, 64, 64), 2)
    assert len(calls) == 2 * 3 * 2 and all(c == (1, 1, 64, 64, 64) for c in calls)
    np.testing.assert_allclose(out, 1.0)
