"""Skull-stripped input: the rule that detects it (preprocess.skull_stripped) and the registration that
needs no skull (the template's brain as the target)."""

from __future__ import annotations

import numpy as np
import pytest

from neuronav.analysis import registration as reg
from neuronav.analysis.grid import load_template
from neuronav.analysis.preprocess import skull_stripped
from neuronav.volume import Volume


def _ellipsoid(shape: tuple[int, int, int], spacing: tuple[float, float, float], radii_mm: tuple[float, ...]) -> Volume:
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    inside = (x / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 + (z / radii_mm[2]) ** 2 <= 1.0
    rng = np.random.default_rng(3)
    data = np.where(inside, 300.0 + 40.0 * rng.standard_normal(shape), 0.0).astype(np.float32)
    return Volume(np.clip(data, 1.0, None) * inside, np.diag([*spacing, 1.0]))


BRAIN = (70.0, 85.0, 55.0)  # semi-axes, mm: 4/3·π·abc ≈ 1.37 L


def test_a_stripped_brain_is_detected_at_1_mm_and_on_5_mm_slices() -> None:
    ok, why = skull_stripped(_ellipsoid((200, 220, 160), (1.0, 1.0, 1.0), BRAIN))
    assert ok, why
    ok, why = skull_stripped(_ellipsoid((200, 220, 32), (1.0, 1.0, 5.0), BRAIN))  # 2D, 5 mm, anisotropic
    assert ok, why
    import re

    ml = float(re.search(r"support (\d+) mL", why).group(1))  # type: ignore[union-attr]
    assert 1300 < ml < 1450  # 4/3·π·70·85·55 mm³


def test_a_noisy_background_or_a_whole_head_is_not_stripped() -> None:
    brain = _ellipsoid((200, 220, 160), (1.0, 1.0, 1.0), BRAIN)
    rng = np.random.default_rng(4)
    noisy = np.asarray(brain.data) + np.abs(rng.normal(0.0, 8.0, brain.shape)).astype(np.float32)
    ok, why = skull_stripped(Volume(noisy, brain.affine))
    assert not ok and "background" in why
    head = _ellipsoid((220, 260, 220), (1.0, 1.0, 1.0), (90.0, 110.0, 95.0))  # ≈ 3.9 L, zero background
    ok, why = skull_stripped(head)
    assert not ok and "a brain is" in why
    crop = _ellipsoid((120, 120, 80), (1.0, 1.0, 1.0), (70.0, 85.0, 55.0))  # the brain fills the field of view
    ok, why = skull_stripped(crop)
    assert not ok and "background" in why


@pytest.mark.slow
def test_a_stripped_brain_registers_to_the_template_brain() -> None:
    t = load_template()
    brain = np.asarray(t.t1 * t.brain_mask, dtype=np.float32)
    # the subject: the template brain moved by a known affine (10 mm right, 6 mm up, 5 % larger, 8° pitch)
    a = np.deg2rad(8.0)
    move = np.eye(4)
    move[:3, :3] = 1.05 * np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    move[:3, 3] = [10.0, 0.0, 6.0]
    subject_affine = move @ t.affine  # the same voxels, placed elsewhere in the scanner
    image = reg.make_reg_image(brain, subject_affine)
    result = reg.register_to_mni(image, brain_only=True)
    points = np.array([[0.0, -18.0, 20.0], [40.0, -20.0, 30.0], [-40.0, 30.0, 0.0], [0.0, -60.0, -20.0]])
    for p in points:  # MNI point → where the subject holds it
        found = result.mni_to_world[:3, :3] @ p + result.mni_to_world[:3, 3]
        expected = move[:3, :3] @ p + move[:3, 3]
        assert np.linalg.norm(found - expected) < 2.0
