"""write_outputs: which writer makes which file; the Secondary Capture series made in a child process."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from neuronav.errors import ReportError
from neuronav.report import dicom_sc
from neuronav.report.model import Report
from neuronav.report.outputs import FORMATS, parse_formats, write_outputs
from tests.report.conftest import Analysed


def test_parse_formats() -> None:
    assert parse_formats("pdf, json") == ["json", "pdf"]  # canonical order: the PDF before what embeds it
    assert parse_formats("all") == list(FORMATS)
    with pytest.raises(ReportError, match="unknown format docx"):
        parse_formats("json,docx")
    with pytest.raises(ReportError, match="no format given"):
        parse_formats(" , ")


def test_dicom_formats_need_the_source_series(report: Report, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="need the source DICOM series"):
        write_outputs(report, ["sr"], tmp_path)


@pytest.mark.slow
def test_secondary_captures_in_a_child_equal_the_serial_ones(
    analysed: Analysed, report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"analysis_dir": analysed.analysis_dir, "source": analysed.source}
    parallel = write_outputs(report, ["json", "sc"], tmp_path / "p", **kw)  # type: ignore[arg-type]
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "1")
    serial = write_outputs(report, ["json", "sc"], tmp_path / "s", **kw)  # type: ignore[arg-type]
    assert len(parallel.files["sc"]) == len(serial.files["sc"]) == len(analysed.source.datasets)
    for a, b in zip(parallel.files["sc"][::37], serial.files["sc"][::37], strict=True):
        da, db = pydicom.dcmread(a), pydicom.dcmread(b)
        assert da.PixelData == db.PixelData and da.InstanceNumber == db.InstanceNumber
    assert parallel.seconds["sc"] > 0


def test_a_new_series_replaces_the_old_one_whole(analysed: Analysed, report: Report, tmp_path: Path) -> None:
    stale = tmp_path / "sc" / "IM9999.dcm"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    written = write_outputs(report, ["sc"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source)
    assert not stale.exists()
    assert [p.name for p in written.files["sc"]][:2] == ["IM0001.dcm", "IM0002.dcm"]
    assert not list(tmp_path.glob(".sc*"))


@pytest.mark.parametrize("serial", ["0", "1"])
def test_a_failing_writer_is_a_clear_error_and_leaves_the_old_series(
    analysed: Analysed, report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serial: str
) -> None:
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", serial)
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "IM0001.dcm").write_bytes(b"earlier series")

    def broken(*args: object) -> list[pydicom.Dataset]:
        raise ReportError("Secondary Capture: simulated failure")

    monkeypatch.setattr(dicom_sc, "make_secondary_captures", broken)
    with pytest.raises(ReportError, match="simulated failure"):
        write_outputs(report, ["json", "sc"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source)
    assert (tmp_path / "sc" / "IM0001.dcm").read_bytes() == b"earlier series"
    assert not list(tmp_path.glob(".sc*"))
