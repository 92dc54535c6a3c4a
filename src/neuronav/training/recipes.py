"""The recipes of the shipped models: which cases, seeds and settings reproduce each one.

    neuronav train segmentation --member seg-a     # one ensemble member (fine-tune of 1.0.0)
    neuronav train segmentation --member seg-b
    neuronav train heads                           # detection + classification (needs the ensemble)

Training cases are phantom heads with seeds from TRAIN_SEED_BASE up; evaluation (``neuronav
evaluate``) only uses seeds below it, so no evaluation study was ever seen in training.
"""

from __future__ import annotations

from neuronav.training.data import TRAIN_SEED_BASE
from neuronav.training.segmentation import TrainConfig

SEGMENTATION_VERSION = "1.1.0"
HEADS_VERSION = "1.0.0"
# 1.1.0: the 1.0.0 members fine-tuned on broadened cases (training.data AUGMENTATION_VERSION 2:
# skull-stripped, 1 mm, motion, random intensities, large mass effect, ...). 1.0.0 was trained from
# scratch for 1800 steps on seeds TRAIN_SEED_BASE..+239 (recipe version 1, see its card).
SEGMENTATION_MEMBERS = {
    "seg-a": TrainConfig(name="seg-a", seed=11, steps=100, base=16, threads=1, lr=5e-4, init_from="seg-a/1.0.0"),
    "seg-b": TrainConfig(name="seg-b", seed=22, steps=100, base=16, threads=1, lr=5e-4, init_from="seg-b/1.0.0"),
}
TRAIN_SEEDS = list(range(TRAIN_SEED_BASE + 3000, TRAIN_SEED_BASE + 3076))
VALIDATION_SEEDS = list(range(TRAIN_SEED_BASE + 3076, TRAIN_SEED_BASE + 3081))
HEAD_SEEDS = list(range(TRAIN_SEED_BASE + 400, TRAIN_SEED_BASE + 560))
ENSEMBLE = "brats-seg-ensemble"
