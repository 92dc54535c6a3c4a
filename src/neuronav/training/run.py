"""Run a recipe end to end: render cases, train, export ONNX, write the model card."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import numpy as np

from neuronav.analysis.features import CLASSIFICATION_FEATURES, DETECTION_FEATURES
from neuronav.errors import InputError
from neuronav.findings import TumourClass
from neuronav.training import recipes
from neuronav.training.data import SEQUENCES, build_cache, load_case

Log = Callable[[str], None]
CLASSES: tuple[str, ...] = get_args(TumourClass)  # the classifier's labels, in output order, written on its card
CLINICAL = "not for clinical use"
DATA_RECIPE = (
    "Synthetic phantom heads (neuronav.phantom, MNI152 2009 tissue maps) with gliomas, meningiomas, "
    "metastases or no lesion; per case random tissue contrast, bias field (3-30 %), Rician noise (1-6 %), "
    "gamma, 50 % thick-slice (3-6.5 mm) acquisitions along a random axis, residual misregistration "
    "(±4°, ±4 mm, ±4 % scale), lesion type/size/shape/position and mass effect from the seed; "
    "normalised exactly as inference (brain mask, N4, z-score) on the 2 mm MNI working grid."
)


def _progress(log: Log, what: str) -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 20 or done == total:
            last[0] = time.monotonic()
            log(f"{what}: {done}/{total} cases rendered")

    return report


def _install(onnx_file: Path, models_dir: Path | None, card: dict[str, Any]) -> Path:
    """Put the model and its card into ``models_dir``; by default the shipped models (NEURONAV_MODELS_DIR:
    in a source checkout, src/neuronav/shipped_models, where the recipes' results are committed)."""
    from neuronav.analysis.models import ModelCard, file_sha256, write_card
    from neuronav.config import read_settings

    base = models_dir if models_dir is not None else read_settings().models_dir
    target: Path = base / str(card["name"]) / str(card["version"])
    target.mkdir(parents=True, exist_ok=True)
    partial = target / ".model.onnx.partial"
    shutil.copyfile(onnx_file, partial)
    partial.replace(target / "model.onnx")
    card["sha256"] = file_sha256(target / "model.onnx")
    write_card(target, ModelCard(**card))
    return target


def train_segmentation_member(
    member: str, cache: Path, models_dir: Path | None, *, workers: int = 2, steps: int | None = None, log: Log = print
) -> Path:
    from neuronav.training.segmentation import train

    if member not in recipes.SEGMENTATION_MEMBERS:
        raise InputError(f"unknown member {member!r}; use one of {', '.join(recipes.SEGMENTATION_MEMBERS)}")
    cfg = recipes.SEGMENTATION_MEMBERS[member]
    if steps is not None:
        cfg = type(cfg)(**{**cfg.__dict__, "steps": steps})
    files = build_cache(
        cache,
        recipes.TRAIN_SEEDS + recipes.VALIDATION_SEEDS,
        workers=workers,
        progress=_progress(log, "training cases"),
    )
    n_train = len(recipes.TRAIN_SEEDS)
    record = train(cfg, files[:n_train], files[n_train:], cache / "runs", log=log)
    shape = [1, len(SEQUENCES), cfg.window, cfg.window, cfg.window]
    card = {
        "name": member,
        "version": recipes.SEGMENTATION_VERSION,
        "task": "segmentation",
        "framework": "onnx",
        "file": "model.onnx",
        "sha256": "",
        "ensemble": recipes.ENSEMBLE,
        "inputs": [
            {
                "name": "image",
                "shape": shape,
                "dtype": "float32",
                "description": f"a {cfg.window}³ window of the working grid, channels T1, T1c, T2, FLAIR (missing "
                "sequences as zeros); inference averages half-overlapping windows over the grid",
            }
        ],
        "outputs": [
            {
                "name": "probabilities",
                "shape": [1, 4, cfg.window, cfg.window, cfg.window],
                "dtype": "float32",
                "description": "softmax over the BraTS labels",
            }
        ],
        "labels": {"0": "background", "1": "necrotic / non-enhancing core", "2": "oedema", "3": "enhancing tumour"},
        "input_space": "NeuroNav working grid: MNI152 2 mm, 96×112×96, z-scored within the brain mask",
        "training": {
            "data": DATA_RECIPE,
            "train_seeds": f"{recipes.TRAIN_SEEDS[0]}..{recipes.TRAIN_SEEDS[-1]}",
            "validation_seeds": f"{recipes.VALIDATION_SEEDS[0]}..{recipes.VALIDATION_SEEDS[-1]}",
            "config": record["config"],
            "network": "3D U-Net (neuronav.training.unet), instance norm, leaky ReLU, 4 levels",
            "train_seconds": round(record["train_seconds"]),
            "machine": "2-core x86_64 VM, CPU only (torch 2.13.0)",
            "reproduce": f"neuronav train segmentation --member {member}",
        },
        "metrics": {"validation_dice_working_grid": record["validation"]},
        "intended_use": "Research and demonstration: segmenting brain tumours (BraTS labels) in MRI preprocessed "
        "by NeuroNav; one member of an averaged ensemble.",
        "limitations": "Trained only on synthetic phantoms; not validated on patient data; 2 mm working resolution.",
        "clinical_use": CLINICAL,
        "licence": "Apache-2.0",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    target = _install(Path(record["onnx"]), models_dir, card)
    log(f"{member}: installed in {target}")
    return target


def _head_data(cache: Path, workers: int, log: Log) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from neuronav.analysis.features import classification_features, detection_features
    from neuronav.analysis.inference import confine_to_head, segment
    from neuronav.analysis.models import resolve

    files = build_cache(cache, recipes.HEAD_SEEDS, workers=workers, progress=_progress(log, "head cases"))
    models = resolve(None, "segmentation")
    det_x, det_y, cls_x, cls_y = [], [], [], []
    for n, path in enumerate(files):
        case = load_case(path)
        channels = {s: case.images[i].astype(np.float32) for i, s in enumerate(SEQUENCES)}
        seg = segment(channels, models)
        _, labels, tumour_probability = confine_to_head(seg.probabilities, case.brain_mask)
        det_x.append(detection_features(tumour_probability, case.brain_mask))
        det_y.append(int(case.lesion != "none"))
        if case.lesion != "none":
            cls_x.append(classification_features(labels, case.brain_mask, channels["T1c"]))
            cls_y.append(CLASSES.index(case.lesion))
        if (n + 1) % 20 == 0:
            log(f"heads: segmented {n + 1}/{len(files)} cases")
    return np.asarray(det_x), np.asarray(det_y), np.asarray(cls_x), np.asarray(cls_y)


def _cross_validated(x: np.ndarray, y: np.ndarray, k: int, folds: int = 5) -> dict[str, float]:
    """Accuracy, Brier score and expected calibration error of out-of-fold probabilities."""
    from neuronav.training.linear import fit

    idx = np.arange(len(y))
    proba = np.zeros((len(y), k))
    for f in range(folds):
        test = idx % folds == f
        proba[test] = fit(x[~test], y[~test], k).predict_proba(x[test])
    onehot = np.eye(k)[y]
    confidence, predicted = proba.max(axis=1), proba.argmax(axis=1)
    ece = 0.0
    for lo in np.linspace(0.0, 1.0, 10, endpoint=False):
        in_bin = (confidence > lo) & (confidence <= lo + 0.1)
        if in_bin.any():
            ece += in_bin.mean() * abs(
                float((predicted[in_bin] == y[in_bin]).mean()) - float(confidence[in_bin].mean())
            )
    return {
        "cross_validated_accuracy_5fold": round(float((predicted == y).mean()), 4),
        "cross_validated_brier": round(float(((proba - onehot) ** 2).sum(axis=1).mean()), 4),
        "cross_validated_ece_10bins": round(float(ece), 4),
    }


def train_heads(cache: Path, models_dir: Path | None, *, workers: int = 2, log: Log = print) -> list[Path]:
    from neuronav.training.linear import export_onnx, fit

    det_x, det_y, cls_x, cls_y = _head_data(cache, workers, log)
    installed = []
    for task, x, y, names, features in (
        ("detection", det_x, det_y, ["no tumour", "tumour"], DETECTION_FEATURES),
        ("classification", cls_x, cls_y, list(CLASSES), CLASSIFICATION_FEATURES),
    ):
        k = len(names)
        model = fit(x, y, k)
        cv = _cross_validated(x, y, k)
        onnx_file = export_onnx(model, cache / "runs" / f"{task}.onnx")
        log(f"{task}: {cv} on {len(y)} cases")
        card = {
            "name": f"tumour-{task}",
            "version": recipes.HEADS_VERSION,
            "task": task,
            "framework": "onnx",
            "file": "model.onnx",
            "sha256": "",
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, len(features)],
                    "dtype": "float32",
                    "description": "neuronav.analysis.features: " + ", ".join(features),
                }
            ],
            "outputs": [
                {
                    "name": "probabilities",
                    "shape": [1, k],
                    "dtype": "float32",
                    "description": "softmax over " + ", ".join(names),
                }
            ],
            "labels": {str(i): n for i, n in enumerate(names)},
            "input_space": "features of the segmentation ensemble's output on the NeuroNav working grid",
            "training": {
                "data": DATA_RECIPE,
                "seeds": f"{recipes.HEAD_SEEDS[0]}..{recipes.HEAD_SEEDS[-1]} (disjoint from the segmentation cases)",
                "method": "multinomial logistic regression, L2 1e-2, L-BFGS (neuronav.training.linear)",
                "n_cases": len(y),
                "reproduce": "neuronav train heads",
            },
            "metrics": cv,
            "intended_use": f"Research: tumour {task} from NeuroNav's segmentation features.",
            "limitations": "Trained on synthetic phantoms only; probabilities calibrated on phantoms, not patients.",
            "clinical_use": CLINICAL,
            "licence": "Apache-2.0",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        installed.append(_install(onnx_file, models_dir, card))
    return installed


def record_evaluation(summary: dict[str, Any], command: str) -> list[Path]:
    """Write the metrics of ``neuronav evaluate`` into the cards of the shipped default models."""
    from neuronav.analysis.models import read_card, resolve, write_card

    keys = [k for k in summary if k not in ("per_case", "normal_brains")]
    metrics = {k: summary[k] for k in keys}
    metrics["normal_brains"] = [
        {k: v for k, v in n.items() if k in ("name", "detected", "probability", "whole_tumour_ml", "refused")}
        for n in summary.get("normal_brains", [])
    ]
    metrics["command"] = command
    updated = []
    for task in ("segmentation", "detection", "classification"):
        for loaded in resolve(None, task):
            folder = loaded.path if loaded.path.is_dir() else loaded.path.parent
            if loaded.where != "shipped":
                continue
            card = read_card(folder / "card.json")
            new = card.model_copy(update={"metrics": {**card.metrics, "evaluation_unseen_phantoms": metrics}})
            write_card(folder, new)
            updated.append(folder)
    return updated
