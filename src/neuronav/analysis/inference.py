"""Model inference on ONNX Runtime: the segmentation ensemble and its uncertainty.

:func:`segment` feeds the preprocessed channels (z-scored, on the working grid) to every member of
an ensemble, averages their softmax probabilities and reports how much the members disagree.

Definitions (``M`` members, ``p_m`` the probabilities of member ``m``, ``t_m = 1 − p_m(background)``
its tumour probability):

- ``probabilities`` = mean over members of ``p_m``; ``labels`` = its argmax (BraTS labels);
- ``tumour_probability`` = ``1 − probabilities[0]`` = mean of ``t_m`` (the heatmap);
- ``uncertainty`` = mean, over the voxels that ANY member labels as tumour (argmax ≠ 0), of
  ``2 · std_m(t_m)`` (population standard deviation across members). ``t_m`` lies in [0, 1] so its
  standard deviation is at most 0.5, and the factor 2 maps it to [0, 1]; with two members it is
  the mean absolute difference ``|t_1 − t_2|``. 0 for a single model or when no member finds tumour;
- ``member_agreement`` = mean pairwise Dice of the members' whole-tumour masks (argmax ≠ 0); 1 when
  both masks are empty; None for a single model.

Missing sequences are fed as zeros (the value of the brain mean after z-scoring); the shipped
networks are trained with sequences dropped at random.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from neuronav.analysis.models import SEQUENCES, LoadedModel, ModelError
from neuronav.findings import ProducedBy

F32Array = npt.NDArray[np.float32]

_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class SegmentationOutput:
    """The ensemble's segmentation on the input grid. See the module docstring for the definitions."""

    probabilities: F32Array  # (n_labels, X, Y, Z), mean over members
    labels: npt.NDArray[np.uint8]  # (X, Y, Z), argmax of ``probabilities``
    tumour_probability: F32Array  # (X, Y, Z), 1 − p(background)
    uncertainty: float  # 0..1
    member_agreement: float | None  # mean pairwise whole-tumour Dice; None for one model
    produced_by: list[ProducedBy]
    seconds: float
    label_names: dict[int, str]
    sequences_used: list[str]  # the channels that had data (the others were fed as zeros)


def _input_tensor(channels: Mapping[str, npt.NDArray[np.floating]], order: Sequence[str]) -> F32Array:
    shapes = {tuple(np.shape(a)) for a in channels.values()}
    if len(shapes) != 1:
        raise ModelError(f"all channels must have the same shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3:
        raise ModelError(f"channels must be 3-D volumes, got shape {shape}")
    x = np.zeros((1, len(order), *shape), dtype=np.float32)
    for i, name in enumerate(order):
        if name in channels:
            x[0, i] = channels[name]
    if not np.all(np.isfinite(x)):
        raise ModelError("the channels contain NaN or infinite values")
    return x


def _starts(size: int, patch: int) -> list[int]:
    step = max(patch // 2, 1)
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def sliding_window(
    predict: Callable[[F32Array], F32Array], x: F32Array, patch: Sequence[int], n_labels: int
) -> F32Array:
    """Average ``predict`` over windows of ``patch`` (half-overlapping) that tile ``x`` (1, C, X, Y, Z).

    The networks are trained on crops; instance normalisation makes their output depend on the
    size of the field they see, so inference looks through windows of the training size (as nnU-Net
    does) instead of the whole grid at once. Returns (n_labels, X, Y, Z) probabilities.
    """
    spatial = x.shape[2:]
    if tuple(patch) == tuple(spatial):
        return np.asarray(predict(x)[0], dtype=np.float32)
    if any(p > s for p, s in zip(patch, spatial, strict=True)):
        raise ModelError(f"the model's input window {tuple(patch)} is larger than the grid {tuple(spatial)}")
    total = np.zeros((n_labels, *spatial), dtype=np.float32)
    count = np.zeros(spatial, dtype=np.float32)
    for i in _starts(spatial[0], patch[0]):
        for j in _starts(spatial[1], patch[1]):
            for k in _starts(spatial[2], patch[2]):
                window = (slice(i, i + patch[0]), slice(j, j + patch[1]), slice(k, k + patch[2]))
                total[(slice(None), *window)] += predict(np.ascontiguousarray(x[(slice(None), slice(None), *window)]))[
                    0
                ]
                count[window] += 1.0
    return np.asarray(total / count, dtype=np.float32)


def _member_probabilities(model: LoadedModel, channels: Mapping[str, npt.NDArray[np.floating]]) -> F32Array:
    card = model.card
    x = _input_tensor(channels, card.channels)
    name = "probabilities" if any(o.name == "probabilities" for o in card.outputs) else card.outputs[0].name
    declared = card.inputs[0].shape[2:]
    patch = [int(d) if isinstance(d, int) else int(s) for d, s in zip(declared, x.shape[2:], strict=True)]

    def predict(window: F32Array) -> F32Array:
        p = np.asarray(model.run({card.inputs[0].name: window})[name], dtype=np.float32)
        expected = (1, len(card.labels), *window.shape[2:])
        if p.shape != expected:
            raise ModelError(f"{card.spec}: output {name!r} has shape {p.shape}, expected {expected}")
        return p

    p = sliding_window(predict, x, patch, len(card.labels))
    sums = p.sum(axis=0, dtype=np.float64)
    if float(p.min()) < -_SUM_TOLERANCE or float(np.max(np.abs(sums - 1.0))) > _SUM_TOLERANCE:
        raise ModelError(f"{card.spec}: output {name!r} is not a probability distribution over the labels (softmax)")
    return np.asarray(p, dtype=np.float32)


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def segment(channels: Mapping[str, npt.NDArray[np.floating]], models: Sequence[LoadedModel]) -> SegmentationOutput:
    """Run every member on the channels present among T1/T1c/T2/FLAIR and average them.

    ``channels``: float32 (X, Y, Z) arrays, normally (96, 112, 96) on the working grid, z-scored in
    the brain mask. Members must share the label set. Raises :class:`ModelError` on inputs or
    outputs that do not fit the models.
    """
    t0 = time.perf_counter()
    if not models:
        raise ModelError("no segmentation model to run")
    unknown = sorted(set(channels) - set(SEQUENCES))
    if unknown:
        raise ModelError(f"unknown sequences {unknown}; expected some of {', '.join(SEQUENCES)}")
    if not channels:
        raise ModelError(f"no input sequence; expected some of {', '.join(SEQUENCES)}")
    labels = models[0].card.labels
    for m in models:
        if m.card.task != "segmentation":
            raise ModelError(f"{m.card.spec} is a {m.card.task} model, not a segmentation model")
        if m.card.labels != labels:
            raise ModelError(f"{m.card.spec} has labels {m.card.labels}, unlike {models[0].card.spec} ({labels})")
    usable = [m for m in models if set(channels) & set(m.card.channels)]
    if len(usable) < len(models):
        skipped = [m.card.spec for m in models if m not in usable]
        raise ModelError(f"{', '.join(skipped)} use none of the sequences given ({', '.join(sorted(channels))})")

    probs = [_member_probabilities(m, channels) for m in models]
    mean: F32Array = np.mean(np.stack(probs), axis=0, dtype=np.float32) if len(probs) > 1 else probs[0]
    tumour = [1.0 - p[0] for p in probs]
    masks = [np.argmax(p, axis=0) != 0 for p in probs]
    del probs

    any_tumour = np.logical_or.reduce(masks)
    if len(models) > 1 and any_tumour.any():
        spread = 2.0 * np.std(np.stack([t[any_tumour] for t in tumour]), axis=0)
        uncertainty = float(np.clip(spread.mean(), 0.0, 1.0))
    else:
        uncertainty = 0.0
    agreement = float(np.mean([_dice(a, b) for a, b in itertools.combinations(masks, 2)])) if len(models) > 1 else None
    return SegmentationOutput(
        probabilities=mean.astype(np.float32, copy=False),
        labels=np.argmax(mean, axis=0).astype(np.uint8),
        tumour_probability=np.clip(1.0 - mean[0], 0.0, 1.0).astype(np.float32),
        uncertainty=uncertainty,
        member_agreement=agreement,
        produced_by=[m.produced_by() for m in models],
        seconds=time.perf_counter() - t0,
        label_names={int(k): v for k, v in labels.items()},
        sequences_used=[s for s in SEQUENCES if s in channels],
    )


def confine_to_head(
    probabilities: npt.NDArray[np.float32], brain_mask: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Tumour lies inside the skull: beyond the brain mask widened by 6 mm (3 voxels; room for
    extra-axial, dural-based lesions) everything is background. Returns (probabilities, labels,
    tumour probability) on the working grid; used identically at training and inference time."""
    from scipy import ndimage as ndi

    allowed = ndi.binary_dilation(brain_mask, iterations=3)
    prob = np.array(probabilities, dtype=np.float32, copy=True)
    prob[1:, ~allowed] = 0.0
    prob[0, ~allowed] = 1.0
    labels = np.asarray(np.argmax(prob, axis=0), dtype=np.uint8)
    return prob, labels, np.asarray(1.0 - prob[0], dtype=np.float32)
