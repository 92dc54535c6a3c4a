"""BraTS-format input end to end: a phantom written as a BraTS 2023 case (skull-stripped, 1 mm,
240×240×155), analysed from its folder; and the one decision (a study the detection head calls
negative has no labelled voxel in any output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuronav.analysis.evaluate import dice
from neuronav.analysis.preprocess import skull_stripped, support
from neuronav.phantom.brats import BRATS_AFFINE, BRATS_SHAPE, BratsCase, generate_brats_case
from neuronav.volume import load_nifti

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BratsCase:
    return generate_brats_case(tmp_path_factory.mktemp("brats") / "case", seed=7, lesion="glioma")


def test_the_case_is_laid_out_as_brats_2023(case: BratsCase) -> None:
    names = sorted(p.name for p in case.folder.iterdir())
    assert names == sorted([f"{case.case_id}-{s}.nii.gz" for s in ("t1n", "t1c", "t2w", "t2f", "seg")] + ["truth.json"])
    labels = load_nifti(case.labels)
    assert labels.shape == BRATS_SHAPE
    np.testing.assert_allclose(labels.affine, BRATS_AFFINE)
    lab = np.asarray(labels.data)
    assert set(np.unique(lab)) <= {0, 1, 2, 3} and (lab == 3).any() and (lab == 2).any()
    # the labels on this grid hold the generator's volumes (a rigid resampling of its 1 mm map)
    generator_ml = case.truth["volumes_ml"]["whole_tumour"]
    assert abs(np.count_nonzero(lab) / 1000.0 - generator_ml) / generator_ml < 0.03
    for image in case.images.values():
        vol = load_nifti(image)
        assert vol.shape == BRATS_SHAPE
        stripped, why = skull_stripped(vol)
        assert stripped, why
        inside, _ = support(vol)
        assert inside[lab > 0].all()  # the whole lesion lies in the stripped brain


def test_the_folder_is_analysed_as_skull_stripped(case: BratsCase, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "neuronav.cli", "analyze", str(case.folder), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"T1c: {case.case_id}-t1c.nii.gz" in proc.stderr  # which file is which
    findings = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert findings["study"]["skull_stripped"] is True
    assert findings["detection"]["tumour_detected"] is True
    truth = np.asarray(load_nifti(case.labels).data)
    seg = load_nifti(tmp_path / "out" / "segmentation.nii.gz")
    np.testing.assert_allclose(seg.affine, BRATS_AFFINE)
    pred = np.asarray(seg.data)
    assert dice(pred > 0, truth > 0) > 0.85
    assert dice(np.isin(pred, (1, 3)), np.isin(truth, (1, 3))) > 0.75
    lesion = findings["segmentation"]["lesions"][0]
    assert 0.5 < lesion["probability"] <= lesion["probability_max"] <= 1.0
    assert abs(findings["midline_shift"]["shift_mm"] - case.truth["midline_shift_mm"]) < 1.5


class _Negative:
    """A detection head that calls every study negative (to check that its decision reaches every output)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.card = real.card

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"probabilities": np.array([[0.9, 0.1]], dtype=np.float32)}

    def produced_by(self) -> Any:
        return self.real.produced_by()


def test_a_negative_call_leaves_no_labelled_voxel_anywhere(
    case: BratsCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuronav.analysis import models
    from neuronav.analysis.inputs import from_paths
    from neuronav.analysis.pipeline import analyze
    from neuronav.report.build import build_report

    real_resolve = models.resolve

    def resolve(name: str | None, task: str) -> Any:
        found = real_resolve(name, task)
        return tuple(_Negative(m) for m in found) if task == "detection" else found

    monkeypatch.setattr(models, "resolve", resolve)
    out = tmp_path / "out"
    findings = analyze(from_paths([case.folder]), out)
    assert findings.detection.tumour_detected is False
    assert not np.asarray(load_nifti(out / "segmentation.nii.gz").data).any()
    assert not np.asarray(load_nifti(out / "probability.nii.gz").data).any()
    assert findings.segmentation.volumes.whole_tumour_ml == 0.0 and findings.segmentation.lesions == []
    report = build_report(findings, analysis_dir=out)
    assert report.findings.segmentation.volumes.whole_tumour_ml == 0.0
