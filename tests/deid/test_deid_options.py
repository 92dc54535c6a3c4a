"""The two PS3.15 options can each be switched off: their attributes then get the Basic Profile action,
and the de-identification record names only the options applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from typer.testing import CliRunner

from neuronav.deid import Action, Deidentifier
from neuronav.deid.profile import TABLE, basic_action, method_values
from neuronav.volume.dicom_write import new_uid

KEY = bytes(range(32))
ALL_CODES = {"113100", "113107", "113108"}


def mr_image(**attrs: Any) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = new_uid()
    ds.SeriesInstanceUID = new_uid()
    ds.Modality = "MR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-424242"
    ds.PatientBirthDate = "19700101"
    ds.PatientAge = "055Y"
    ds.PatientSex = "F"
    ds.PatientWeight = "61.5"
    ds.StudyDate = "20260115"
    ds.StudyTime = "101500"
    ds.SeriesDate = "20260115"
    ds.SeriesTime = "101700"
    ds.AcquisitionDate = "20260115"
    ds.ContentTime = "101800"
    ds.PerformedProcedureStepStartDate = "20260115"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def empty(ds: Dataset, keyword: str) -> bool:
    """Present with a zero-length value (Action.EMPTY)."""
    return keyword in ds and ds[keyword].value in (None, "", b"")


def codes(ds: Dataset) -> set[str]:
    return {str(item.CodeValue) for item in ds.DeidentificationMethodCodeSequence}


def test_basic_action_picks_a_dummy_then_empty_then_remove() -> None:
    assert basic_action("Z/D") is Action.DUMMY and basic_action("X/D") is Action.DUMMY
    assert basic_action("X/Z") is Action.EMPTY and basic_action("Z") is Action.EMPTY
    assert basic_action("X") is Action.REMOVE
    option_rows = [rule for rule in TABLE.values() if rule.option]
    assert {rule.option for rule in option_rows} == {"C", "K"}
    for rule in option_rows:
        basic_action(rule.basic)  # every option row has a Basic Profile action


def test_by_default_both_options_apply() -> None:
    out = Deidentifier(KEY, date_shift_days=-10).dataset(mr_image())
    assert out.StudyDate == "20260105" and out.StudyTime == "101500"
    assert out.PatientAge == "055Y" and out.PatientSex == "F"
    assert codes(out) == ALL_CODES and out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_without_retain_dates_dates_are_emptied_dummied_or_removed() -> None:
    out = Deidentifier(KEY, retain_dates=False).dataset(mr_image())
    assert empty(out, "StudyDate") and empty(out, "StudyTime")  # Z
    assert empty(out, "AcquisitionDate")  # X/Z
    assert out.SeriesDate == "19000101" and out.SeriesTime == "000000" and out.ContentTime == "000000"  # D
    assert "PerformedProcedureStepStartDate" not in out  # X
    assert empty(out, "PatientBirthDate")  # Basic Profile either way
    assert out.PatientAge == "055Y"  # the other option still applies
    assert codes(out) == {"113100", "113108"} and out.LongitudinalTemporalInformationModified == "REMOVED"
    assert list(out.DeidentificationMethod) == list(method_values(retain_dates=False))
    assert not any("Modified Dates" in v for v in out.DeidentificationMethod)


def test_without_patient_characteristics_they_are_removed() -> None:
    out = Deidentifier(KEY, date_shift_days=-1, retain_patient_characteristics=False).dataset(mr_image())
    assert "PatientAge" not in out and "PatientWeight" not in out and empty(out, "PatientSex")
    assert out.StudyDate == "20260114"
    assert codes(out) == {"113100", "113107"}


def test_files_with_both_options_off_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    pydicom.dcmwrite(src / "a.dcm", mr_image(), enforce_file_format=True)
    deid = Deidentifier(KEY, retain_dates=False, retain_patient_characteristics=False)
    report = deid.files([src], tmp_path / "out")
    assert report.written == 1 and deid.options == {"retain_dates": False, "retain_patient_characteristics": False}
    assert "Modified Dates" not in report.method and "Patient Characteristics" not in report.method
    out = pydicom.dcmread(report.outputs[0])
    assert codes(out) == {"113100"} and out.LongitudinalTemporalInformationModified == "REMOVED"
    assert empty(out, "StudyDate") and "PatientAge" not in out
    raw = report.outputs[0].read_bytes()
    assert b"Doe" not in raw and b"PID-424242" not in raw and b"20260115" not in raw and b"055Y" not in raw


def test_the_cli_offers_both_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronav.cli import app
    from neuronav.config import get_settings

    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.setenv("NEURONAV_PSEUDONYM_KEY", "ab" * 32)
    src = tmp_path / "in"
    src.mkdir()
    pydicom.dcmwrite(src / "a.dcm", mr_image(), enforce_file_format=True)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["deid", str(src), "--out", str(tmp_path / "out"), "--no-retain-dates", "--retain-patient-characteristics"],
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 1
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert empty(out, "StudyDate") and out.PatientAge == "055Y" and codes(out) == {"113100", "113108"}
