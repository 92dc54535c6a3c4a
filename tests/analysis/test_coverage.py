"""Partial brain coverage is refused with a clear message (a cut field of view is not a normal brain)."""

from __future__ import annotations

import os

import nibabel as nib
import pytest

from neuronav.analysis.preprocess import preprocess
from neuronav.errors import InputError
from neuronav.volume import load_nifti


def test_cropped_brain_is_refused_naming_the_coverage() -> None:
    crop = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")  # 66×82×50 mm
    with pytest.raises(InputError, match=r"cover only [0-9]+ % of the brain"):
        preprocess({"T1c": load_nifti(crop)})
