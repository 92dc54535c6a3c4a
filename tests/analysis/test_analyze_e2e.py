"""`neuronav analyze` end to end on phantom studies with the shipped models (golden test with bounds).

The bounds are set below what `neuronav evaluate` measured for the shipped models (see their
cards), so a regression in any stage — ingest, preprocessing, networks, resampling back to the
reference grid — fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuronav.analysis.evaluate import dice
from neuronav.findings import SCHEMA_VERSION, Findings
from neuronav.phantom import generate_study


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_glioma_study_from_dicom(tmp_path: Path) -> None:
    study = generate_study(tmp_path / "study", seed=101, lesion="glioma", fmt="dicom", profile="clinical")
    proc = run("analyze", tmp_path / "study" / "dicom", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    findings = Findings.model_validate_json((tmp_path / "out" / "findings.json").read_text())
    assert findings.schema_version == SCHEMA_VERSION
    assert findings.study.sequences_used == ["T1", "T1c", "T2", "FLAIR"]
    assert findings.detection.tumour_detected and findings.detection.probability > 0.5
    assert all(p.kind == "model" and p.sha256 for p in findings.segmentation.produced_by)
    assert len(findings.segmentation.produced_by) >= 2  # an ensemble

    ref = next(s for s in study.series if s.name == findings.study.reference_sequence)
    truth = nib.load(str(ref.label_path))
    seg = nib.load(str(tmp_path / "out" / "segmentation.nii.gz"))
    prob = nib.load(str(tmp_path / "out" / "probability.nii.gz"))
    assert seg.shape == truth.shape == prob.shape
    np.testing.assert_allclose(seg.affine, truth.affine, atol=1e-4)
    t, p = np.asarray(truth.dataobj), np.asarray(seg.dataobj)
    assert dice(p > 0, t > 0) > 0.8
    true_ml = study.truth["volumes_ml"]["whole_tumour"]
    assert abs(findings.segmentation.volumes.whole_tumour_ml - true_ml) / true_ml < 0.25
    heat = np.asarray(prob.dataobj)
    assert heat[t > 0].mean() > 0.5 > heat[t == 0].mean()
    centroid = np.asarray(findings.segmentation.lesions[0].centroid_ras_mm)
    assert np.linalg.norm(centroid - np.asarray(study.truth["whole_tumour_centroid"]["ras_mm"])) < 10.0
    assert abs(findings.midline_shift.shift_mm - study.truth["midline_shift_mm"]) < 1.5
    summary = json.loads(proc.stdout.split("\nfindings:")[0])
    assert summary["tumour_detected"] is True


@pytest.mark.slow
def test_nifti_subset_and_prior(tmp_path: Path) -> None:
    generate_study(tmp_path / "study", seed=102, lesion="metastasis", fmt="nifti", profile="iso1mm")
    nifti = tmp_path / "study" / "nifti"
    first = run("analyze", "--flair", nifti / "FLAIR.nii.gz", "--t1c", nifti / "T1c.nii.gz", "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    f1 = Findings.model_validate_json((tmp_path / "a" / "findings.json").read_text())
    assert f1.study.sequences_missing == ["T1", "T2"] and f1.study.input_kind == "nifti"
    second = run(
        "analyze",
        "--flair",
        nifti / "FLAIR.nii.gz",
        "--t1c",
        nifti / "T1c.nii.gz",
        "--out",
        tmp_path / "b",
        "--prior",
        tmp_path / "a",
    )
    assert second.returncode == 0, second.stderr
    f2 = Findings.model_validate_json((tmp_path / "b" / "findings.json").read_text())
    assert f2.change is not None and f2.change.rano_category == "stable"
    assert f2.segmentation.volumes == f1.segmentation.volumes  # same input, same models → same numbers


def test_analyze_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    proc = run("analyze", "--t1", tmp_path / "t1.nii.gz", "--out", tmp_path / "o")
    assert proc.returncode != 0 and "T1c, FLAIR or T2" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("analyze", "--out", tmp_path / "o")
    assert proc.returncode != 0 and "nothing to analyse" in proc.stderr
    (tmp_path / "x.txt").write_text("no")
    proc = run("analyze", tmp_path / "x.txt", "--out", tmp_path / "o")
    assert proc.returncode != 0 and "no DICOM images" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "findings.json").exists()
