"""The checks on a label map a reader sends (neuronav.workflow.segmentations.read_labels): each refusal names
the problem; a good map is read back exactly, gzipped or not."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from neuronav.errors import InputError
from neuronav.workflow.segmentations import read_labels

AFFINE = np.array([[0.0, 0.0, 1.2, -90.0], [-1.0, 0.0, 0.0, 120.0], [0.0, -1.0, 0.0, 80.0], [0.0, 0.0, 0.0, 1.0]])
SHAPE = (12, 10, 8)


def _bytes(data: np.ndarray, affine: np.ndarray = AFFINE) -> bytes:
    return bytes(nib.Nifti1Image(data, affine).to_bytes())


def test_a_good_map_is_read_exactly_gzipped_or_not() -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 3:6, 1:4] = 3
    labels[6, 6, 6] = 1
    assert np.array_equal(read_labels(_bytes(labels), SHAPE, AFFINE), labels)
    assert np.array_equal(read_labels(gzip.compress(_bytes(labels.astype(np.float32))), SHAPE, AFFINE), labels)
    assert np.array_equal(read_labels(_bytes(labels[..., None]), SHAPE, AFFINE), labels)  # 4D with one volume


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not an image at all", "not a NIfTI-1 image"),
        (gzip.compress(b"\x00" * 10, mtime=0), "not a NIfTI-1 image"),
        (b"\x1f\x8b\x08\x00broken", "not a readable gzip file"),
        (gzip.compress(b"\x00" * (int(np.prod(SHAPE)) * 8 + 1_000_100), mtime=0), "larger than a 12×10×8 image"),
        (_bytes(np.zeros((12, 10, 9), np.uint8)), "12×10×9 voxels; the segmentation it corrects is 12×10×8"),
        (_bytes(np.zeros(SHAPE, np.uint8), np.eye(4)), "not on the reference grid"),
        (_bytes(np.full(SHAPE, 1.5, np.float32)), "not whole numbers"),
        (_bytes(np.full(SHAPE, 4, np.uint8)), "holds 4: labels are 0 background"),
        (_bytes(np.full(SHAPE, -1, np.int16)), "holds -1"),
    ],
    ids=lambda value: value if isinstance(value, str) else "map",  # same names in every xdist worker
)
def test_a_bad_map_is_refused_naming_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_labels(payload, SHAPE, AFFINE)
