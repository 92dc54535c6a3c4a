"""Conformance of every DICOM object NeuroNav writes, judged by independent validators.

One real analysis of a phantom study (the session's ``analysed`` fixture) is written as SEG, SR,
Encapsulated PDF and the Secondary Capture series by the same function the CLI and the service use
(:func:`neuronav.report.outputs.write_outputs`). dciodvfy (dicom3tools) checks each file against its
IOD and PixelMed's DicomSRValidator checks the SR's TID 1500 template tree, with a SEG (every group
a TID 1411 Volumetric ROI referencing its segment or region) and without one (TID 1501 groups).
Any error fails; the warnings are printed (``pytest -s`` or the captured output of a failure).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, SecondaryCaptureImageStorage

from neuronav.report.build import build_report
from neuronav.report.dicom_sr import make_sr
from neuronav.report.outputs import Written
from tests.dicom_validate import assert_valid, dciodvfy, dciodvfy_all, pixelmed_sr
from tests.report.conftest import Analysed

pytestmark = [pytest.mark.slow, pytest.mark.dicom_validators]


@pytest.fixture(scope="module")
def written(written_dicom: Written) -> Written:
    return written_dicom


def test_seg_has_no_dciodvfy_error(written: Written) -> None:
    (path,) = written.files["seg"]
    assert pydicom.dcmread(path).Modality == "SEG"
    assert_valid([dciodvfy(path)])


def test_sr_has_no_dciodvfy_error_and_is_comprehensive_sr(written: Written) -> None:
    (path,) = written.files["sr"]
    assert pydicom.dcmread(path).SOPClassUID == ComprehensiveSRStorage  # no 3D coordinates: not 3D SR
    assert_valid([dciodvfy(path)])


def test_encapsulated_pdf_has_no_dciodvfy_error(written: Written) -> None:
    (path,) = written.files["epdf"]
    assert pydicom.dcmread(path).SOPClassUID == EncapsulatedPDFStorage
    assert_valid([dciodvfy(path)])


def test_secondary_captures_have_no_dciodvfy_error(written: Written) -> None:
    paths = written.files["sc"]
    assert paths and all(pydicom.dcmread(p).SOPClassUID == SecondaryCaptureImageStorage for p in paths[:3])
    assert_valid(dciodvfy_all(paths))


def test_sr_with_seg_passes_pixelmed_tid1500(written: Written) -> None:
    (path,) = written.files["sr"]
    verdict = pixelmed_sr(path)
    assert "Found ComprehensiveSR IOD" in verdict.output
    assert "Found Root Template TID_1500" in verdict.output
    assert_valid([verdict])


def test_sr_without_seg_passes_pixelmed_tid1500(analysed: Analysed, tmp_path: Path) -> None:
    report = build_report(analysed.findings, analysis_dir=analysed.analysis_dir)
    buf = BytesIO()
    make_sr(report, analysed.source).save_as(buf, enforce_file_format=True)
    path = tmp_path / "sr-no-seg.dcm"
    path.write_bytes(buf.getvalue())
    verdict = pixelmed_sr(path)
    assert "Found Root Template TID_1500" in verdict.output
    assert_valid([verdict, dciodvfy(path)])
