"""Defects found in review, each with the test that would have caught it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuronav.convert import convert_inventory
from neuronav.errors import GeometryError, InputError
from neuronav.ingest import scan
from neuronav.volume.dicom import volume_from_series
from tests.ingest.conftest import edit, make_volume, series_attrs, study_attrs, write_series


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *map(str, args)], capture_output=True, text=True, check=False
    )


def test_broken_multiframe_geometry_is_a_clear_error_and_other_series_still_convert(tmp_path: Path) -> None:
    study = study_attrs()
    files, _ = write_series(tmp_path / "mf", study=study, series=series_attrs(1), multiframe=True)
    write_series(tmp_path / "good", study=study, series=series_attrs(2))

    def drop_orientation(ds: object) -> None:
        del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient  # type: ignore[attr-defined]

    edit(files[0], drop_orientation)
    inv = scan([tmp_path])
    broken = next(s for s in inv.all_series if s.metadata.series_number == 1)
    with pytest.raises(GeometryError, match="frame 1 lacks a valid ImageOrientationPatient"):
        volume_from_series(broken)
    written, problems = convert_inventory(inv, tmp_path / "out")
    assert len(written) == 1 and len(problems) == 1
    assert "frame 1 lacks" in problems[0].problem


def test_series_with_same_number_and_description_are_both_kept(tmp_path: Path) -> None:
    study = study_attrs()
    same = {"SeriesNumber": 7, "SeriesDescription": "t1_repeat"}
    write_series(tmp_path / "a", make_volume(seed=1), study=study, series=series_attrs(**same))
    write_series(tmp_path / "b", make_volume(seed=2), study=study, series=series_attrs(**same))
    written, _ = convert_inventory(scan([tmp_path]), tmp_path / "out")
    assert len(written) == 2 and len({c.nifti for c in written}) == 2
    assert all(c.nifti.exists() for c in written)


def test_convert_refuses_a_non_empty_output_folder_and_keeps_its_files(tmp_path: Path) -> None:
    write_series(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.nii.gz").write_bytes(b"keep me")
    with pytest.raises(InputError, match="not empty"):
        convert_inventory(scan([tmp_path / "in"]), out)
    assert (out / "earlier.nii.gz").read_bytes() == b"keep me"
    proc = cli("convert", tmp_path / "in", "--out", out)
    assert proc.returncode != 0 and "not empty" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("convert", tmp_path / "in", "--out", out / "earlier.nii.gz")
    assert proc.returncode != 0 and "not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_pixel_data_a_frame_longer_than_rows_say_is_refused(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")

    def halve_rows(ds: object) -> None:
        ds.Rows = ds.Rows // 2  # type: ignore[attr-defined]

    edit(files[0], halve_rows)
    inv = scan([tmp_path])
    bad = [p for p in inv.problems if p.source == str(files[0])]
    assert len(bad) == 1 and "pixel data holds" in bad[0].problem


def test_descriptions_are_shown_verbatim_not_as_markup(tmp_path: Path) -> None:
    write_series(tmp_path / "s", series=series_attrs(SeriesDescription="DTI [b1000] [/]"))
    proc = cli("ingest", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DTI [b1000] [/]" in proc.stdout


def test_named_pipe_in_a_folder_is_skipped_not_read(tmp_path: Path) -> None:
    write_series(tmp_path / "s")
    os.mkfifo(tmp_path / "s" / "pipe")
    inv = scan([tmp_path])  # would block forever if the pipe were opened
    assert inv.n_instances == make_volume().shape[2]
    assert any(p.source.endswith("pipe") and "not a regular file" in p.problem for p in inv.problems)


def test_two_nifti_files_for_one_sequence_are_refused(tmp_path: Path) -> None:
    from neuronav.analysis.inputs import from_paths

    with pytest.raises(InputError, match="two T1c files"):
        from_paths([tmp_path / "a_t1ce.nii.gz", tmp_path / "b_t1ce.nii.gz"])


def test_signed_12_bit_pixels_are_sign_extended_like_pydicom(tmp_path: Path) -> None:
    vol = make_volume(high=2000)
    data = vol.data.astype(np.int16) - 1000  # negative values
    files, _ = write_series(tmp_path / "s", type(vol)(data, vol.affine))

    def to_12_bit(ds: object) -> None:
        arr = ds.pixel_array.astype(np.int16)  # type: ignore[attr-defined]
        ds.BitsStored, ds.HighBit = 12, 11  # type: ignore[attr-defined]
        ds.PixelData = (arr.view(np.uint16) & 0x0FFF).tobytes()  # two's complement in 12 bits  # type: ignore[attr-defined]

    for f in files:
        edit(f, to_12_bit)
    built = volume_from_series(scan([tmp_path]).all_series[0])
    np.testing.assert_array_equal(built.data, data)


def test_slices_with_different_pixel_spacing_are_not_stacked(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")

    def zoom(ds: object) -> None:
        ds.PixelSpacing = [0.5, 0.5]  # type: ignore[attr-defined]

    edit(files[2], zoom)
    series = scan([tmp_path]).all_series[0]
    with pytest.raises(GeometryError, match="different PixelSpacing"):
        volume_from_series(series)
