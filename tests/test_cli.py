"""The ``neuronav`` command as a user runs it: inventory, conversion, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuronav.volume import Volume
from neuronav.volume.dicom_write import new_uid, write_dicom_series

PATIENT_NAME = "Secretname^Patricia"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    study = {
        "StudyInstanceUID": new_uid(),
        "PatientID": "PID-777",
        "PatientName": PATIENT_NAME,
        "PatientBirthDate": "19610203",
        "StudyDate": "20240105",
        "StudyDescription": "MRI BRAIN",
    }
    rng = np.random.default_rng(0)
    axial = np.diag([-0.9, -0.9, 5.0, 1.0])
    series = [
        ("t2_tse_tra", {"RepetitionTime": 5000, "EchoTime": 95}, 2),
        ("t2_tirm_tra_dark-fluid", {"RepetitionTime": 9000, "EchoTime": 85, "InversionTime": 2500}, 3),
    ]
    for desc, extra, number in series:
        vol = Volume(rng.integers(0, 800, (40, 44, 10)).astype(np.int16), axial)
        write_dicom_series(
            vol,
            root / desc,
            study=study,
            series={"SeriesInstanceUID": new_uid(), "SeriesNumber": number, "SeriesDescription": desc, **extra},
        )
    (root / "notes.txt").write_text("not dicom")
    return root


def test_ingest_prints_inventory_and_skips_non_dicom_with_reason(study_dir: Path) -> None:
    proc = run("ingest", study_dir)
    assert proc.returncode == 0, proc.stderr
    assert "t2_tse_tra" in proc.stdout and "FLAIR" in proc.stdout and "T2" in proc.stdout
    assert "notes.txt" in proc.stderr and "not a DICOM file" in proc.stderr
    assert PATIENT_NAME.split("^")[0] not in proc.stdout + proc.stderr


def test_ingest_json(study_dir: Path) -> None:
    proc = run("ingest", study_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["instances"] == 20 and doc["duplicates"] == 0
    series = doc["studies"][0]["series"]
    assert sorted(s["sequence"]["sequence"] for s in series) == ["FLAIR", "T2"]
    assert all(s["volume_problem"] is None for s in series)
    assert [p["source"].endswith("notes.txt") for p in doc["problems"]] == [True]
    assert PATIENT_NAME not in proc.stdout


def test_ingest_counts_duplicates_once(study_dir: Path) -> None:
    proc = run("ingest", study_dir, study_dir / "t2_tse_tra", "--json")
    doc = json.loads(proc.stdout)
    assert doc["instances"] == 20 and doc["duplicates"] == 10


def test_convert_writes_nifti_and_sidecar_without_phi(study_dir: Path, tmp_path: Path) -> None:
    proc = run("convert", study_dir, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    niftis = sorted(tmp_path.rglob("*.nii.gz"))
    assert [p.name for p in niftis] == ["002_t2_tse_tra_T2.nii.gz", "003_t2_tirm_tra_dark-fluid_FLAIR.nii.gz"]
    img = nib.load(str(niftis[0]))
    assert img.shape == (40, 44, 10)
    np.testing.assert_allclose(np.abs(np.diag(img.affine))[:3], [0.9, 0.9, 5.0], atol=1e-4)
    sidecar = json.loads(niftis[0].with_name("002_t2_tse_tra_T2.json").read_text())
    assert sidecar["metadata"]["repetition_time"] == 5000 and sidecar["geometry"]["shape"] == [40, 44, 10]
    assert "patient" not in sidecar
    assert PATIENT_NAME not in niftis[0].with_name("002_t2_tse_tra_T2.json").read_text()


def test_convert_include_phi(study_dir: Path, tmp_path: Path) -> None:
    proc = run("convert", study_dir / "t2_tse_tra", "--out", tmp_path, "--include-phi")
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert sidecar["patient"]["patient_name"] == PATIENT_NAME
    assert sidecar["patient"]["patient_birth_date"] == "19610203"


def test_nothing_usable_is_an_error_with_one_line_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    proc = run("ingest", tmp_path / "a.txt", tmp_path / "missing.dcm")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert any("a.txt" in ln and "not a DICOM file" in ln for ln in lines)
    assert any("missing.dcm" in ln and "no such file" in ln for ln in lines)
    assert "Traceback" not in proc.stderr
    proc = run("convert", tmp_path / "a.txt", "--out", tmp_path / "out")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_partly_broken_input_still_succeeds(study_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    good = next((study_dir / "t2_tse_tra").glob("*.dcm")).read_bytes()
    bad.write_bytes(good[:400])  # truncated copy
    proc = run("ingest", study_dir / "t2_tse_tra", bad, "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["instances"] == 10
    assert any(p["source"].endswith("bad.dcm") for p in doc["problems"])


def test_phantom_command_writes_study_and_truth(tmp_path: Path) -> None:
    proc = run("phantom", "--out", tmp_path / "p", "--seed", "5", "--lesion", "meningioma", "--format", "nifti")
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    assert truth["lesion_type"] == "meningioma" and truth["seed"] == 5
    assert sorted(p.name for p in (tmp_path / "p" / "nifti").glob("*.nii.gz")) == [
        "FLAIR.nii.gz",
        "T1.nii.gz",
        "T1c.nii.gz",
        "T2.nii.gz",
    ]
    bad = run("phantom", "--out", tmp_path / "q", "--lesion", "lymphoma")
    assert bad.returncode != 0 and "lymphoma" in bad.stderr and "Traceback" not in bad.stderr
