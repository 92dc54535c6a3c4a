"""The recipes of the shipped models: which cases, seeds and settings reproduce each one.

    neuronav train segmentation --member seg-a     # one ensemble member (≈ 45 min on 2 CPU cores)
    neuronav train segmentation --member seg-b
    neuronav train heads                           # detection + classification (needs the ensemble)

Training cases are phantom heads with seeds from TRAIN_SEED_BASE up; evaluation (``neuronav
evaluate``) only uses seeds below it, so no evaluation study was ever seen in training.
"""

from __future__ import annotations

from neuronav.training.data import TRAIN_SEED_BASE
from neuronav.training.segmentation import TrainConfig

SEGMENTATION_VERSION = "1.0.0"
HEADS_VERSION = "1.0.0"
SEGMENTATION_MEMBERS = {
    "seg-a": TrainConfig(name="seg-a", seed=11, steps=1800, base=16, threads=1),
    "seg-b": TrainConfig(name="seg-b", seed=22, steps=1800, base=16, threads=1),
}
TRAIN_SEEDS = list(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 240))
VALIDATION_SEEDS = list(range(TRAIN_SEED_BASE + 240, TRAIN_SEED_BASE + 260))
HEAD_SEEDS = list(range(TRAIN_SEED_BASE + 400, TRAIN_SEED_BASE + 560))
ENSEMBLE = "brats-seg-ensemble"
