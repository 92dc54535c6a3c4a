"""Sequence of NIfTI inputs: an explicit option, else BraTS / BIDS / free-text file names."""

from __future__ import annotations

import pytest

from neuronav.errors import InputError
from neuronav.series import Sequence, sequence_from_filename

S = Sequence


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BraTS20_Training_001_t1.nii.gz", S.T1),
        ("BraTS20_Training_001_t1ce.nii.gz", S.T1C),
        ("BraTS20_Training_001_t2.nii.gz", S.T2),
        ("BraTS20_Training_001_flair.nii.gz", S.FLAIR),
        ("/data/BraTS2021_00000/BraTS2021_00000_seg.nii.gz", S.OTHER),
        ("case_007_t1gd.nii", S.T1C),
        ("BraTS-GLI-00000-000-t1n.nii.gz", S.T1),
        ("BraTS-GLI-00000-000-t1c.nii.gz", S.T1C),
        ("BraTS-GLI-00000-000-t2w.nii.gz", S.T2),
        ("BraTS-GLI-00000-000-t2f.nii.gz", S.FLAIR),  # BraTS 2023: T2-FLAIR
        ("sub-01_T1w.nii.gz", S.T1),
        ("sub-01_ses-01_run-1_T2w.nii.gz", S.T2),
        ("sub-01_FLAIR.nii.gz", S.FLAIR),
        ("sub-01_ce-gadolinium_T1w.nii.gz", S.T1C),
        ("sub-01_ses-post_T1w.nii.gz", S.T1),  # a session called 'post' is not contrast
        ("sub-01_dwi.nii.gz", S.DWI),
        ("patient7_T1_post_gd.nii.gz", S.T1C),
        ("patient7_t2_flair_ax.nii.gz", S.FLAIR),
        ("Ax_T2_FSE.nii.gz", S.T2),
        ("sequence_3.nii.gz", S.OTHER),  # 'ce' inside a word is no contrast, nor a sequence
    ],
)
def test_sequence_from_file_name(name: str, expected: Sequence) -> None:
    v = sequence_from_filename(name)
    assert v.sequence is expected, v.reasons
    assert v.reasons and "file name" in v.reasons[0]


def test_bids_contrast_entity_is_named() -> None:
    v = sequence_from_filename("sub-01_ce-gadolinium_T1w.nii.gz")
    assert any("ce-gadolinium" in r for r in v.reasons)


def test_unknown_name_is_other_and_says_how_to_fix() -> None:
    v = sequence_from_filename("brain.nii.gz")
    assert v.sequence is S.OTHER and v.confidence <= 0.2
    assert "'flair'" in v.reasons[0] and "brain.nii.gz" in v.reasons[0]


@pytest.mark.parametrize(("explicit", "expected"), [("t1", S.T1), ("T1C", S.T1C), ("t2", S.T2), ("Flair", S.FLAIR)])
def test_explicit_option_wins_over_name(explicit: str, expected: Sequence) -> None:
    v = sequence_from_filename("BraTS20_Training_001_t2.nii.gz", explicit=explicit)
    assert v.sequence is expected and v.confidence == 1.0
    assert explicit in v.reasons[0]


@pytest.mark.parametrize("explicit", ["t1ce", "dwi", "", "T3"])
def test_invalid_explicit_option_raises_naming_allowed_values(explicit: str) -> None:
    with pytest.raises(InputError) as err:
        sequence_from_filename("scan.nii.gz", explicit=explicit)
    message = str(err.value)
    assert "scan.nii.gz" in message
    for allowed in ("'t1'", "'t1c'", "'t2'", "'flair'"):
        assert allowed in message
