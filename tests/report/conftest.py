"""One analysed phantom study shared by the report tests (generated and analysed once per worker).

Set ``NEURONAV_TEST_CACHE=/some/dir`` while developing to keep the study and its analysis between
runs; CI leaves it unset, so everything is made fresh from the phantom generator and the shipped models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from neuronav.analysis.inputs import from_paths
from neuronav.analysis.pipeline import analyze
from neuronav.findings import Findings
from neuronav.ingest import Series
from neuronav.phantom import generate_study
from neuronav.report.build import build_report
from neuronav.report.model import Report
from neuronav.report.outputs import Written, write_outputs
from neuronav.report.sources import SourceSeries, load_source_series

SEED = 101


@dataclass(frozen=True)
class Analysed:
    study_dir: Path  # phantom: dicom/, truth/, truth.json
    dicom_dir: Path
    analysis_dir: Path  # findings.json, segmentation.nii.gz, probability.nii.gz, reference.nii.gz
    findings: Findings
    series: Series  # the reference series of the analysis
    source: SourceSeries


@pytest.fixture(scope="session")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    cache = os.environ.get("NEURONAV_TEST_CACHE")
    root = Path(cache) / f"report-glioma-{SEED}" if cache else tmp_path_factory.mktemp("analysed")
    study_dir, analysis_dir = root / "study", root / "analysis"
    if not (study_dir / "truth.json").is_file():
        generate_study(study_dir, seed=SEED, lesion="glioma", fmt="dicom", profile="clinical")
    inputs = from_paths([study_dir / "dicom"])
    if not (analysis_dir / "findings.json").is_file():
        analyze(inputs, analysis_dir)
    findings = Findings.model_validate_json((analysis_dir / "findings.json").read_text())
    series = inputs.series[findings.study.reference_sequence]
    return Analysed(study_dir, study_dir / "dicom", analysis_dir, findings, series, load_source_series(series))


@pytest.fixture
def report(analysed: Analysed) -> Report:
    return build_report(analysed.findings, analysis_dir=analysed.analysis_dir)


@pytest.fixture(scope="session")
def written_dicom(analysed: Analysed, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """SEG, SR, Encapsulated PDF and the Secondary Capture series of the analysed study, written once per
    session by the function the CLI and the service use."""
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    out = tmp_path_factory.mktemp("dicom-outputs")
    return write_outputs(
        report, ["seg", "sr", "epdf", "sc"], out, analysis_dir=analysed.analysis_dir, source=analysed.source
    )
