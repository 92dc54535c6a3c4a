"""The fast header reader agrees with pydicom, or declines (UnsupportedHeaderError) so that pydicom is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from neuronav.ingest.fastheader import WANTED, NeedMoreBytesError, UnsupportedHeaderError, parse
from neuronav.volume import Volume
from neuronav.volume.dicom_write import new_uid, write_dicom_series


def pydicom_values(path: Path) -> dict[str, object]:
    ds = dcmread(path, stop_before_pixels=True)
    out: dict[str, object] = {}
    for keyword, kind in WANTED.values():
        holder = ds.file_meta if keyword == "TransferSyntaxUID" else ds
        if keyword not in holder:
            continue
        value = holder[keyword].value
        many = isinstance(value, MultiValue | list)
        if kind == "ds":
            out[keyword] = [float(v) for v in (value if many else [value])]
        elif kind == "int":
            out[keyword] = None if value in (None, "") else int(value[0] if many else value)
        elif kind == "cs":
            out[keyword] = [str(v) for v in (value if many else [value])]
        else:
            out[keyword] = value if isinstance(value, int) else str(value)
    return out


def fast_values(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    values, _, _ = parse(data, len(data))
    out: dict[str, object] = {}
    for keyword, kind in WANTED.values():
        if keyword not in values or tag_for_keyword(keyword) is None:
            continue  # private attributes (read for Philips scaling and Siemens mosaics) have no keyword
        v = values[keyword]
        if kind == "ds":
            out[keyword] = [float(x) for x in v]
        elif kind == "int":
            out[keyword] = None if v is None else int(v)
        else:
            out[keyword] = v
    return out


def write_one(tmp_path: Path, **kwargs: object) -> Path:
    vol = Volume(np.arange(64 * 48 * 2, dtype=np.uint16).reshape(64, 48, 2), np.diag([0.8, 0.9, 3.0, 1.0]))
    files = write_dicom_series(
        vol,
        tmp_path,
        study={"StudyInstanceUID": new_uid(), "PatientID": "X", "PatientName": "Fast^Header"},
        series={"SeriesInstanceUID": new_uid(), "SeriesNumber": 1, "EchoNumbers": 2, "AcquisitionNumber": 3},
        **kwargs,  # type: ignore[arg-type]
    )
    return files[0]


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "SC_rgb_small_odd.dcm"]
)
def test_agrees_with_pydicom_on_pydicom_test_files(name: str) -> None:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    assert fast_values(Path(path)) == pydicom_values(Path(path))


@pytest.mark.parametrize("ts", [None, RLELossless, JPEG2000Lossless])
def test_agrees_with_pydicom_on_written_files(tmp_path: Path, ts: object) -> None:
    path = write_one(tmp_path, **({"transfer_syntax": ts} if ts else {}))
    assert fast_values(path) == pydicom_values(path)


def test_pixel_offset_points_at_the_pixels(tmp_path: Path) -> None:
    path = write_one(tmp_path)
    data = path.read_bytes()
    _, offset, length = parse(data, len(data))
    assert offset is not None and length == 64 * 48 * 2
    pixels = np.frombuffer(data[offset : offset + length], dtype="<u2").reshape(48, 64)
    np.testing.assert_array_equal(pixels, dcmread(path).pixel_array)


def test_skips_nested_sequences_of_undefined_length(tmp_path: Path) -> None:
    path = write_one(tmp_path)
    ds = dcmread(path)
    inner = Dataset()
    inner.CodeValue = "X"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.PurposeOfReferenceCodeSequence = [inner]
    ds.ReferencedImageSequence = [item, item]
    ds.save_as(path)  # pydicom writes sequences and items with undefined length
    assert fast_values(path) == pydicom_values(path)


def test_declines_what_it_does_not_handle(tmp_path: Path) -> None:
    path = write_one(tmp_path, transfer_syntax=DeflatedExplicitVRLittleEndian)
    data = path.read_bytes()
    with pytest.raises(UnsupportedHeaderError):
        parse(data, len(data))
    big = get_testdata_file("MR_small_bigendian.dcm", download=False)
    assert big is not None
    raw = Path(big).read_bytes()
    with pytest.raises(UnsupportedHeaderError):
        parse(raw, len(raw))
    with pytest.raises(UnsupportedHeaderError):
        parse(b"\0" * 200, 200)


def test_asks_for_more_bytes_when_the_buffer_ends_early(tmp_path: Path) -> None:
    path = write_one(tmp_path, transfer_syntax=ImplicitVRLittleEndian)
    data = path.read_bytes()
    with pytest.raises(NeedMoreBytesError):
        parse(data[:300], len(data))
    assert parse(data, len(data))[1] is not None


@pytest.mark.parametrize("ts", [None, RLELossless, ImplicitVRLittleEndian])
def test_scan_gives_the_same_inventory_with_and_without_the_fast_path(
    tmp_path: Path, ts: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuronav.ingest import fastheader, scan

    write_one(tmp_path, **({"transfer_syntax": ts} if ts else {}))
    fast = scan([tmp_path])
    calls: list[int] = []

    def declined(buf: bytes, size: int) -> object:
        calls.append(size)
        raise fastheader.UnsupportedHeaderError("forced")

    monkeypatch.setattr(fastheader, "parse", declined)
    slow = scan([tmp_path])
    assert calls, "the fast path was not tried"
    assert not fast.problems and not slow.problems
    assert [s.instances for s in fast.all_series] == [s.instances for s in slow.all_series]
    assert [s.metadata for s in fast.all_series] == [s.metadata for s in slow.all_series]
