"""write_outputs: which writer makes which file; the Secondary Capture series made by the report helper."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from neuronav.errors import ReportError
from neuronav.report import _helper, dicom_sc, outputs
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


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The report helper process started (as the web server's export starts it), stopped afterwards."""
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "0")
    if not _helper.available():
        pytest.skip("one core: no helper process")
    outputs.start_helper(["sc"])
    yield
    _helper.stop()


@pytest.mark.slow
def test_secondary_captures_made_by_the_helper_equal_the_serial_ones(
    analysed: Analysed, report: Report, tmp_path: Path, helper: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"analysis_dir": analysed.analysis_dir, "source": analysed.source}
    submitted: list[object] = []
    real_submit = _helper.submit

    def spy(fn: Any, *args: Any) -> Any:
        submitted.append(fn)
        return real_submit(fn, *args)

    monkeypatch.setattr(_helper, "submit", spy)
    parallel = write_outputs(report, ["json", "sc"], tmp_path / "p", **kw)  # type: ignore[arg-type]
    assert submitted == [outputs._sc_task]
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "1")
    serial = write_outputs(report, ["json", "sc"], tmp_path / "s", **kw)  # type: ignore[arg-type]
    assert len(parallel.files["sc"]) == len(serial.files["sc"]) == len(analysed.source.datasets)
    for a, b in zip(parallel.files["sc"][::37], serial.files["sc"][::37], strict=True):
        da, db = pydicom.dcmread(a), pydicom.dcmread(b)
        assert da.PixelData == db.PixelData and da.InstanceNumber == db.InstanceNumber
    assert parallel.seconds["sc"] > 0


def test_without_a_started_helper_no_process_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "0")
    _helper.stop()
    assert _helper.submit(abs, -2) is None  # a one-shot command makes its series itself


def test_a_new_series_replaces_the_old_one_whole(analysed: Analysed, report: Report, tmp_path: Path) -> None:
    stale = tmp_path / "sc" / "IM9999.dcm"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    written = write_outputs(report, ["sc"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source)
    assert not stale.exists()
    assert [p.name for p in written.files["sc"]][:2] == ["IM0001.dcm", "IM0002.dcm"]
    assert not list(tmp_path.glob(".sc*"))


def _broken_analysis(analysed: Analysed, tmp_path: Path) -> Path:
    folder = tmp_path / "analysis"
    shutil.copytree(analysed.analysis_dir, folder)
    (folder / "reference.nii.gz").write_bytes(b"not gzip")
    return folder


@pytest.mark.parametrize("serial", ["0", "1"])
def test_a_failing_writer_is_a_clear_error_and_leaves_the_old_series(
    analysed: Analysed, report: Report, tmp_path: Path, request: pytest.FixtureRequest, serial: str
) -> None:
    if serial == "0":
        request.getfixturevalue("helper")
    out = tmp_path / "out"
    (out / "sc").mkdir(parents=True)
    (out / "sc" / "IM0001.dcm").write_bytes(b"earlier series")
    broken = _broken_analysis(analysed, tmp_path)
    with pytest.raises(ReportError, match=r"reference\.nii\.gz: not a readable NIfTI image"):
        write_outputs(report, ["json", "sc"], out, analysis_dir=broken, source=analysed.source)
    assert (out / "sc" / "IM0001.dcm").read_bytes() == b"earlier series"
    assert not list(out.glob(".sc*"))


def test_an_unexpected_error_in_the_writer_is_reported_with_its_type(
    analysed: Analysed, report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> list[pydicom.Dataset]:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(dicom_sc, "make_secondary_captures", broken)
    status, message = outputs._sc_task(report, analysed.source, analysed.analysis_dir, tmp_path)
    assert (status, message) == ("error", "Secondary Capture writer failed (RuntimeError: simulated bug)")


def test_when_another_format_fails_the_series_being_made_is_dropped(
    analysed: Analysed, report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper: None
) -> None:
    from neuronav.report import json_report

    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "IM0001.dcm").write_bytes(b"earlier series")

    def broken(*args: object) -> bytes:
        raise ReportError("JSON: simulated failure")

    monkeypatch.setattr(json_report, "report_json", broken)
    with pytest.raises(ReportError, match="simulated failure"):
        write_outputs(report, ["json", "sc"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source)
    assert (tmp_path / "sc" / "IM0001.dcm").read_bytes() == b"earlier series"
    assert not list(tmp_path.glob(".sc*"))


class _ReadOnlySettings:
    """pydicom's config.settings, with every write refused (global library state must not be toggled)."""

    def __init__(self, real: object) -> None:
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name: str) -> object:
        return getattr(object.__getattribute__(self, "_real"), name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AssertionError(f"pydicom.config.settings.{name} changed while writing")


def test_writing_dicom_changes_no_global_pydicom_setting(
    analysed: Analysed, report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom import config

    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "1")  # the series made in this process
    monkeypatch.setattr(config, "settings", _ReadOnlySettings(config.settings))
    written = write_outputs(
        report, ["seg", "sr", "sc"], tmp_path, analysis_dir=analysed.analysis_dir, source=analysed.source
    )
    assert pydicom.dcmread(written.files["sr"][0]).Modality == "SR"
    assert len(written.files["sc"]) == len(analysed.source.datasets)


# -- the report helper process ---------------------------------------------------------------------

_SET_IN_THE_PARENT = False


def _set_in_the_parent() -> bool:
    return _SET_IN_THE_PARENT


def test_the_helper_is_spawned_not_forked(monkeypatch: pytest.MonkeyPatch, helper: None) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_SET_IN_THE_PARENT", True)
    future = _helper.submit(_set_in_the_parent)
    assert future is not None
    assert _helper.wait(future, "the probe") is False  # a fresh interpreter, not a copy of this one


def test_a_helper_that_takes_too_long_is_stopped_and_replaced(helper: None) -> None:
    future = _helper.submit(time.sleep, 60)
    assert future is not None
    with pytest.raises(ReportError, match=r"the sleeper did not finish within 0\.5 s and was stopped"):
        _helper.wait(future, "the sleeper", timeout=0.5)
    assert _helper.submit(abs, -2) is None  # stopped: the caller does the work, until the next start
    _helper.warm_up()
    again = _helper.submit(abs, -2)
    assert again is not None and _helper.wait(again, "abs") == 2


def test_a_helper_that_dies_is_a_clear_error_and_is_replaced(helper: None) -> None:
    future = _helper.submit(os._exit, 3)
    assert future is not None
    with pytest.raises(ReportError, match="the crasher stopped without a result"):
        _helper.wait(future, "the crasher")
    _helper.warm_up()
    again = _helper.submit(abs, -2)
    assert again is not None and _helper.wait(again, "abs") == 2


def test_no_helper_when_serial_is_asked_for(monkeypatch: pytest.MonkeyPatch, helper: None) -> None:
    monkeypatch.setenv("NEURONAV_REPORT_SERIAL", "1")
    assert not _helper.available()
    assert _helper.submit(abs, -2) is None
