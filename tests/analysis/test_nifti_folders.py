"""NIfTI inputs as users have them: BraTS case folders (2018–2021 and 2023 names), BIDS anat folders,
folders and zips of files named after their sequence; which file is which, what is missing or ambiguous."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from neuronav.analysis.inputs import from_paths
from neuronav.errors import InputError
from neuronav.volume import Volume, save_nifti


def _write(path: Path, value: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.full((8, 9, 10), value, dtype=np.float32)
    data[2:6, 2:6, 2:6] += 5.0
    return save_nifti(Volume(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)


def _case(folder: Path, names: dict[str, str]) -> dict[str, float]:
    values = {}
    for i, (seq, name) in enumerate(names.items(), start=1):
        _write(folder / name, float(10 * i))
        values[seq] = float(10 * i)
    return values


def _check(inputs_values: dict[str, float], folder: Path) -> None:
    got = from_paths([folder])
    assert got.kind == "nifti"
    assert sorted(got.volumes) == sorted(inputs_values)
    for seq, value in inputs_values.items():  # each sequence read from ITS file
        assert float(got.volumes[seq].data.min()) == pytest.approx(value)


def test_brats_2023_case_folder_with_its_label_file(tmp_path: Path) -> None:
    case = tmp_path / "BraTS-GLI-00002-000"
    values = _case(
        case,
        {
            "T1": "BraTS-GLI-00002-000-t1n.nii.gz",
            "T1c": "BraTS-GLI-00002-000-t1c.nii.gz",
            "T2": "BraTS-GLI-00002-000-t2w.nii.gz",
            "FLAIR": "BraTS-GLI-00002-000-t2f.nii.gz",
        },
    )
    _write(case / "BraTS-GLI-00002-000-seg.nii.gz", 1.0)
    _check(values, case)
    got = from_paths([case])
    assert got.files["FLAIR"] == "BraTS-GLI-00002-000-t2f.nii.gz"
    assert any("seg" in n and "ignored" in n for n in got.notes)


def test_brats_2020_case_folder(tmp_path: Path) -> None:
    case = tmp_path / "BraTS20_Training_001"
    values = _case(
        case,
        {
            "T1": "BraTS20_Training_001_t1.nii.gz",
            "T1c": "BraTS20_Training_001_t1ce.nii.gz",
            "T2": "BraTS20_Training_001_t2.nii.gz",
            "FLAIR": "BraTS20_Training_001_flair.nii",
        },
    )
    _write(case / "BraTS20_Training_001_seg.nii.gz", 1.0)
    _check(values, case)


def test_bids_anat_folder_with_sidecars(tmp_path: Path) -> None:
    anat = tmp_path / "sub-07" / "ses-pre" / "anat"
    values = _case(
        anat,
        {
            "T1": "sub-07_ses-pre_T1w.nii.gz",
            "T1c": "sub-07_ses-pre_ce-gadolinium_T1w.nii.gz",
            "T2": "sub-07_ses-pre_T2w.nii.gz",
            "FLAIR": "sub-07_ses-pre_FLAIR.nii.gz",
        },
    )
    (anat / "sub-07_ses-pre_T1w.json").write_text("{}")
    _write(tmp_path / "sub-07" / "ses-pre" / "func" / "sub-07_ses-pre_task-rest_bold.nii.gz", 1.0)
    _write(tmp_path / "sub-07" / "ses-pre" / "dwi" / "sub-07_ses-pre_dwi.nii.gz", 1.0)
    _check(values, tmp_path / "sub-07")  # the subject folder, anat found inside
    notes = from_paths([tmp_path / "sub-07"]).notes
    assert any("bold" in n and "ignored" in n for n in notes) and any("_dwi" in n for n in notes)


def test_named_files_folder_and_zip(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    values = _case(folder, {"T1c": "t1_post_gad.nii.gz", "FLAIR": "flair.nii.gz"})
    _check(values, folder)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"case/{f.name}")
    got = from_paths([archive])
    assert sorted(got.volumes) == ["FLAIR", "T1c"]
    assert float(got.volumes["T1c"].data.min()) == pytest.approx(values["T1c"])


def test_unknown_names_missing_and_ambiguous_are_named(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _case(a, {"T1c": "case-t1c.nii.gz", "X": "scan3.nii.gz"})
    with pytest.raises(InputError, match=r"scan3\.nii\.gz"):
        from_paths([a])
    b = tmp_path / "b"
    _case(b, {"T1": "case_t1.nii.gz"})
    with pytest.raises(InputError, match=r"at least one of T1c, FLAIR or T2; found T1 ← case_t1\.nii\.gz"):
        from_paths([b])
    c = tmp_path / "c"
    _case(c, {"A": "sub-01_run-1_FLAIR.nii.gz", "B": "sub-01_run-2_FLAIR.nii.gz"})
    with pytest.raises(InputError, match=r"two FLAIR files given \(sub-01_run-1_FLAIR\.nii\.gz and sub-01_run-2"):
        from_paths([c])
    d = tmp_path / "d"
    for case in ("BraTS-GLI-00001-000", "BraTS-GLI-00002-000"):
        _case(d, {"A": f"{case}-t2f.nii.gz", "B": f"{case}-t1c.nii.gz"})
    with pytest.raises(InputError, match=r"2 cases or subjects \(BraTS-GLI-00001-000, BraTS-GLI-00002-000\)"):
        from_paths([d])


def test_nifti_beside_dicom_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _case(folder, {"FLAIR": "flair.nii.gz"})
    (folder / "IM0001.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(InputError, match="either DICOM or NIfTI"):
        from_paths([folder])
