"""Broken or hostile files get a specific problem naming the file — never a crash or unbounded memory."""

from __future__ import annotations

import importlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from neuronav.errors import DicomReadError, GeometryError, UnsafeInputError
from neuronav.ingest import Limits, Problem, Source, scan
from neuronav.ingest.reader import read_header
from neuronav.volume.dicom import check_series_geometry, volume_from_series
from tests.ingest.conftest import edit, only_series, problems_of, series_attrs, study_attrs, write_series

MiB = 1024**2


def _one_problem(inv_problems: list[Problem], path: Path) -> str:
    matching = [p for p in inv_problems if p.source == str(path)]
    assert len(matching) == 1, [str(p) for p in inv_problems]
    return str(matching[0].problem)


# --- truncated files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (-100, "file truncated: pixel data declares 2048 bytes, only 1948 present"),
        (-2047, "file truncated: pixel data declares 2048 bytes, only 1 present"),
        (400, "file truncated: element (0008,0016) ends at byte"),  # inside SOPClassUID
        (200, "file truncated or empty: no data set after the file header"),  # inside the file meta
        (100, "not a DICOM file (no 'DICM' marker)"),  # inside the preamble
    ],
)
def test_truncated_native_file(tmp_path: Path, cut: int, expected: str) -> None:
    files, _ = write_series(tmp_path / "s")
    raw = files[4].read_bytes()
    files[4].write_bytes(raw[:cut])
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[4]).startswith(expected)
    assert len(only_series(inv).instances) == 7


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_truncated_compressed_file(tmp_path: Path, syntax: str) -> None:
    files, _ = write_series(tmp_path / "s", transfer_syntax=syntax)  # type: ignore[arg-type]
    files[0].write_bytes(files[0].read_bytes()[:-300])
    inv = scan([tmp_path])
    problem = _one_problem(inv.problems, files[0])
    assert problem == "file truncated: End of file reached before delimiter (FFFE,E0DD) found"


def test_truncated_deflated_file(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s", transfer_syntax=DeflatedExplicitVRLittleEndian)
    files[0].write_bytes(files[0].read_bytes()[:-50])
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[0]) == "file truncated: the deflated data set ends early"


def test_deflate_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s", transfer_syntax=DeflatedExplicitVRLittleEndian)
    edit(files[0], lambda ds: ds.add_new(0x00091010, "OB", bytes(40 * MiB)))  # private zeros: ~1000:1
    assert files[0].stat().st_size < MiB
    tracemalloc.start()
    try:
        inv = scan([tmp_path], limits=Limits(max_inflated_bytes=8 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    problem = _one_problem(inv.problems, files[0])
    assert problem == f"deflated data set inflates to more than {8 * MiB} bytes (deflate bomb?); refused"
    assert peak < 6 * MiB
    assert len(only_series(inv).instances) == 7


# --- pixel data that does not match the header -----------------------------------------------------


def test_pixel_data_shorter_than_rows_columns_frames(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")
    edit(files[2], lambda ds: setattr(ds, "Rows", 64))
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[2]) == (
        "pixel data holds 2048 bytes but Rows×Columns×frames (64×32×1, 16 bits) needs 4096"
    )


def test_multiframe_pixel_data_shorter_than_number_of_frames(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s", multiframe=True)
    edit(files[0], lambda ds: setattr(ds, "NumberOfFrames", 9))
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[0]) == (
        "pixel data holds 16384 bytes but Rows×Columns×frames (32×32×9, 16 bits) needs 18432"
    )


def test_compressed_pixel_data_not_matching_rows_columns(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s", transfer_syntax=RLELossless)
    edit(files[3], lambda ds: setattr(ds, "Columns", 40))
    series = only_series(scan([files[3]]))  # header checks cannot see inside the compressed stream
    with pytest.raises(DicomReadError) as info:
        volume_from_series(series)
    assert info.value.path == str(files[3])
    assert info.value.problem.startswith("pixel data cannot be decoded (transfer syntax 1.2.840.10008.1.2.5: ")


def _absurd(path: Path, rows: int, columns: int, frames: int) -> None:
    def change(ds: Dataset) -> None:
        ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
        ds.PixelData = bytes(64)

    edit(path, change)


@pytest.mark.parametrize(
    ("rows", "columns", "frames", "expected"),
    [
        (60000, 60000, 10000, "absurd image dimensions 60000×60000; refused before allocating"),
        (512, 512, 1_000_000, "absurd NumberOfFrames 1000000; refused before allocating"),
        (8000, 8000, 10000, "decoded pixels would need 1280000000000 bytes, over the cap"),
    ],
)
def test_absurd_dimensions_are_refused_before_allocating(
    tmp_path: Path, rows: int, columns: int, frames: int, expected: str
) -> None:
    files, _ = write_series(tmp_path / "s")
    _absurd(files[0], rows, columns, frames)
    tracemalloc.start()
    try:
        inv = scan([files[0]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _one_problem(inv.problems, files[0]) == expected
    assert inv.all_series == []
    assert peak < 2 * MiB
    with pytest.raises(UnsafeInputError) as info:
        read_header(Source(str(files[0])), None)
    assert info.value.path == str(files[0])


def test_pixel_cap_is_configurable(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")
    inv = scan([files[0]], limits=Limits(max_pixel_bytes=1000))
    assert _one_problem(inv.problems, files[0]) == "decoded pixels would need 2048 bytes, over the cap"


# --- executable preambles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("magic", "what"),
    [
        (b"MZ\x90\x00", "a Windows executable (PE 'MZ' header)"),
        (b"\x7fELF\x02\x01", "a Linux executable (ELF header)"),
        (b"#!/bin/sh\n", "a script ('#!' line)"),
        (b"\xcf\xfa\xed\xfe", "a macOS executable (Mach-O)"),
    ],
)
def test_executable_preamble_is_rejected(tmp_path: Path, magic: bytes, what: str) -> None:
    files, _ = write_series(tmp_path / "s")
    raw = bytearray(files[1].read_bytes())
    raw[: len(magic)] = magic
    files[1].write_bytes(bytes(raw))
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[1]) == f"DICOM preamble holds {what}; file rejected"
    assert len(only_series(inv).instances) == 7


def test_harmless_preamble_is_accepted(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")
    raw = bytearray(files[1].read_bytes())
    raw[:4] = b"II*\x00"  # a TIFF header: allowed by PS3.10
    files[1].write_bytes(bytes(raw))
    assert scan([tmp_path]).problems == []


# --- geometry: the series that cannot become one volume, next to ones that can ---------------------


def _two_series(tmp_path: Path) -> tuple[list[Path], list[Path], str, str]:
    study = study_attrs()
    bad_attrs, good_attrs = series_attrs(1), series_attrs(2)
    bad, _ = write_series(tmp_path / "bad", study=study, series=bad_attrs)
    good, _ = write_series(tmp_path / "good", study=study, series=good_attrs)
    return bad, good, bad_attrs["SeriesInstanceUID"], good_attrs["SeriesInstanceUID"]


def _geometry_problem(tmp_path: Path, bad_uid: str, good_uid: str) -> str:
    inv = scan([tmp_path])
    assert inv.problems == []
    [study] = inv.studies.values()
    problem = check_series_geometry(study.series[bad_uid])
    assert problem is not None
    with pytest.raises(GeometryError) as info:
        volume_from_series(study.series[bad_uid])
    assert info.value.problem == problem
    assert info.value.path == f"series {bad_uid}"
    assert check_series_geometry(study.series[good_uid]) is None
    assert volume_from_series(study.series[good_uid]).shape == (32, 32, 8)
    return problem


def test_missing_slice(tmp_path: Path) -> None:
    bad, _, bad_uid, good_uid = _two_series(tmp_path)
    bad[3].unlink()  # z = 5 + 3 × 2.5 = 12.5 mm
    problem = _geometry_problem(tmp_path, bad_uid, good_uid)
    assert problem == (
        "missing slices: 1 slice(s) missing between positions 10.00 and 15.00 mm (gap 5.00 mm, spacing 2.50 mm)"
    )


def test_non_uniform_slice_spacing(tmp_path: Path) -> None:
    bad, _, bad_uid, good_uid = _two_series(tmp_path)

    def shift(ds: Dataset) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 0.8]

    edit(bad[4], shift)
    problem = _geometry_problem(tmp_path, bad_uid, good_uid)
    assert problem.startswith("non-uniform slice spacing: gaps from 1.700 to 3.300 mm")


def test_mixed_orientations_within_one_series(tmp_path: Path) -> None:
    bad, _, bad_uid, good_uid = _two_series(tmp_path)
    edit(bad[2], lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    problem = _geometry_problem(tmp_path, bad_uid, good_uid)
    assert problem == "mixed orientations within one series (e.g. a 3-plane localizer); cannot form one volume"


# --- one bad file among good ones ------------------------------------------------------------------


def test_folder_with_bad_files_still_yields_the_good_series(tmp_path: Path) -> None:
    study = study_attrs()
    s1, s2 = series_attrs(1), series_attrs(2)
    files1, vol1 = write_series(tmp_path / "a", study=study, series=s1)
    write_series(tmp_path / "b", study=study, series=s2, transfer_syntax=JPEGLSLossless)
    truncated = tmp_path / "a" / "zz_truncated.dcm"
    truncated.write_bytes(files1[0].read_bytes()[:-10])
    garbage = tmp_path / "b" / "garbage.dcm"
    garbage.write_bytes(bytes(128) + b"DICM" + np.random.default_rng(1).bytes(3000))
    inv = scan([tmp_path])
    assert {p.source for p in inv.problems} == {str(truncated), str(garbage)}
    assert "truncated" in _one_problem(inv.problems, truncated)
    assert _one_problem(inv.problems, garbage)  # a reason, whatever pydicom made of the noise
    [study_found] = inv.studies.values()
    v1 = volume_from_series(study_found.series[s1["SeriesInstanceUID"]])
    np.testing.assert_array_equal(v1.data, vol1.data)
    assert volume_from_series(study_found.series[s2["SeriesInstanceUID"]]).shape == (32, 32, 8)


def test_unexpected_reader_failure_becomes_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = write_series(tmp_path / "s")
    scan_module = importlib.import_module("neuronav.ingest.scan")  # the package re-exports the function
    real = scan_module.read_header

    def flaky(source: Source, data: bytes | None, limits: Limits) -> object:
        if source.path == str(files[5]):
            raise ParserError("unpack requires a buffer of 8 bytes")
        return real(source, data, limits)

    class ParserError(Exception):  # stands in for the many exception types pydicom raises on bad input
        pass

    monkeypatch.setattr(scan_module, "read_header", flaky)
    inv = scan([tmp_path])
    assert _one_problem(inv.problems, files[5]) == "unreadable DICOM content (ParserError); file skipped"
    assert len(only_series(inv).instances) == 7
    assert problems_of(inv, "IM0006")


def test_deflated_uid_in_a_plain_file_is_not_mistaken_for_deflate(tmp_path: Path) -> None:
    files, _ = write_series(tmp_path / "s")
    edit(files[0], lambda ds: setattr(ds, "ImageComments", "was 1.2.840.10008.1.2.1.99 once"))
    assert scan([tmp_path]).problems == []
