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
# NOT SHIPPED: run once (2026-12-05, 100 steps, 76 cases, shared 2-core VM, ~9 min per member), its
# Dice on the 5 broadened validation seeds (WT/TC/ET) was seg-a 0.870/0.842/0.761 (1.0.0 on the same
# cases: 0.880/0.858/0.767) and seg-b 0.892/0.869/0.777 (1.0.0: 0.888/0.855/0.766): no clear gain
# from so short a run. The intended recipe is 1800 steps from scratch on >= 240 broadened cases.
SEGMENTATION_MEMBERS = {
    "seg-a": TrainConfig(name="seg-a", seed=11, steps=100, base=16, threads=1, lr=5e-4, init_from="seg-a/1.0.0"),
    "seg-b": TrainConfig(name="seg-b", seed=22, steps=100, base=16, threads=1, lr=5e-4, init_from="seg-b/1.0.0"),
}
TRAIN_SEEDS = list(range(TRAIN_SEED_BASE + 3000, TRAIN_SEED_BASE + 3076))
VALIDATION_SEEDS = list(range(TRAIN_SEED_BASE + 3076, TRAIN_SEED_BASE + 3081))
HEAD_SEEDS = list(range(TRAIN_SEED_BASE + 400, TRAIN_SEED_BASE + 560))
ENSEMBLE = "brats-seg-ensemble"
