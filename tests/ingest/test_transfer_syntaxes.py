"""Every supported encoding reads back to the same voxels and geometry.

Files come from pydicom's encoders (RLE, JPEG-LS, JPEG 2000, deflate), from dcmtk's command-line
tools (JPEG lossless/baseline/extended, JPEG-LS, RLE, big endian, deflate) and from pydicom's own
real-world test files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from neuronav.ingest import Series, scan
from neuronav.volume.core import Volume
from neuronav.volume.dicom import volume_from_series
from tests.ingest.conftest import edit, make_volume, only_series, run_tool, to_8bit, write_series

LOSSLESS = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
]


def _scan_one(folder: Path, syntax: str) -> Series:
    inv = scan([folder])
    assert inv.problems == [], [str(p) for p in inv.problems]
    series = only_series(inv)
    assert {i.transfer_syntax_uid for i in series.instances} == {syntax}
    assert series.metadata.transfer_syntax_uid == syntax
    return series


def _same_geometry(built: Volume, original: Volume) -> None:
    assert built.shape == original.shape
    np.testing.assert_allclose(built.affine, original.affine, atol=1e-5)


@pytest.mark.parametrize("multiframe", [False, True], ids=["single-frame", "enhanced"])
@pytest.mark.parametrize("syntax", LOSSLESS, ids=lambda uid: UID(uid).keyword)
def test_lossless_syntaxes_round_trip(tmp_path: Path, syntax: UID, multiframe: bool) -> None:
    _, vol = write_series(tmp_path / "s", transfer_syntax=syntax, multiframe=multiframe)
    series = _scan_one(tmp_path, syntax)
    assert series.n_frames == 8
    built = volume_from_series(series)
    np.testing.assert_array_equal(built.data, vol.data)
    _same_geometry(built, vol)


def _recompress(files: list[Path], syntax: UID, **kwargs: Any) -> None:
    for path in files:
        edit(path, lambda ds: ds.compress(syntax, **kwargs))


@pytest.mark.parametrize(
    ("syntax", "kwargs", "max_error", "mean_error"),
    [(JPEGLSNearLossless, {"jls_error": 3}, 3, 3.0), (JPEG2000, {"j2k_cr": [4]}, 400, 20.0)],
    ids=["jpeg-ls-near-lossless", "jpeg2000-lossy"],
)
def test_lossy_pydicom_encoders_read_back_close(
    tmp_path: Path, syntax: UID, kwargs: dict[str, Any], max_error: int, mean_error: float
) -> None:
    files, vol = write_series(tmp_path / "s", make_volume(smooth=True))
    _recompress(files, syntax, **kwargs)
    built = volume_from_series(_scan_one(tmp_path, syntax))
    diff = np.abs(built.data.astype(np.int32) - np.asarray(vol.data, dtype=np.int32))
    assert 0 < diff.max() <= max_error
    assert diff.mean() <= mean_error
    _same_geometry(built, vol)


def _big_endian(path: Path) -> None:
    """Rewrite ``path`` in Explicit VR Big Endian (retired), byte-swapping the 16-bit pixels."""
    ds = dcmread(path)
    ds.PixelData = ds.pixel_array.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)


def test_big_endian_round_trip(tmp_path: Path) -> None:
    files, vol = write_series(tmp_path / "s")
    for path in files:
        _big_endian(path)
    series = _scan_one(tmp_path, ExplicitVRBigEndian)
    assert all(i.pixel_offset is None for i in series.instances)  # no little-endian fast path
    built = volume_from_series(series)
    np.testing.assert_array_equal(built.data, vol.data)
    assert built.data.dtype.isnative  # later stages (and nibabel) get native byte order
    _same_geometry(built, vol)


# --- dcmtk-made files ------------------------------------------------------------------------------

DCMTK_LOSSLESS = [
    ("dcmcjpeg", ["+e1"], JPEGLosslessSV1),
    ("dcmcjpeg", ["+el", "+sv", "6"], UID("1.2.840.10008.1.2.4.57")),  # JPEG lossless process 14
    ("dcmcjpls", ["+el"], JPEGLSLossless),
    ("dcmcrle", [], RLELossless),
    ("dcmconv", ["+tb"], ExplicitVRBigEndian),
    ("dcmconv", ["+td"], DeflatedExplicitVRLittleEndian),
    ("dcmconv", ["+ti"], ImplicitVRLittleEndian),
]


@pytest.mark.dcmtk
@pytest.mark.parametrize("multiframe", [False, True], ids=["single-frame", "enhanced"])
@pytest.mark.parametrize(("tool", "options", "syntax"), DCMTK_LOSSLESS, ids=lambda v: str(v))
def test_dcmtk_lossless_files(tmp_path: Path, tool: str, options: list[str], syntax: UID, multiframe: bool) -> None:
    files, vol = write_series(tmp_path / "src", multiframe=multiframe)
    out = tmp_path / "out"
    out.mkdir()
    for path in files:
        run_tool(tool, *options, path, out / path.name)
    series = _scan_one(out, syntax)
    built = volume_from_series(series)
    np.testing.assert_array_equal(built.data, vol.data)
    _same_geometry(built, vol)


@pytest.mark.dcmtk
def test_dcmtk_jpeg_baseline_8bit_is_close(tmp_path: Path) -> None:
    files, vol = write_series(tmp_path / "src", make_volume(smooth=True, high=256))
    out = tmp_path / "out"
    out.mkdir()
    for path in files:
        to_8bit(path)
        run_tool("dcmcjpeg", "+eb", "+sr", "+q", "95", path, out / path.name)  # +sr: keep 0–255 as is
    series = _scan_one(out, JPEGBaseline8Bit)
    assert {i.bits_allocated for i in series.instances} == {8}
    assert dcmread(out / files[0].name).LossyImageCompression == "01"
    built = volume_from_series(series)
    diff = np.abs(built.data.astype(np.int32) - np.asarray(vol.data, dtype=np.int32))
    assert diff.mean() < 2.0 and diff.max() <= 16
    _same_geometry(built, vol)


@pytest.mark.dcmtk
def test_dcmtk_jpeg_extended_12bit_with_per_slice_rescale_is_close(tmp_path: Path) -> None:
    files, vol = write_series(tmp_path / "src", make_volume(smooth=True, high=4000))
    out = tmp_path / "out"
    out.mkdir()
    for path in files:  # +rm: dcmtk stores each slice minus its own minimum, in RescaleIntercept
        run_tool("dcmcjpeg", "+ee", "+rm", "+q", "95", path, out / path.name)
    series = _scan_one(out, JPEGExtended12Bit)
    assert len({i.rescale_intercept for i in series.instances}) > 1
    built = volume_from_series(series)
    diff = np.abs(built.data.astype(np.float64) - np.asarray(vol.data, dtype=np.float64))
    assert diff.mean() < 2.0 and diff.max() <= 16
    _same_geometry(built, vol)


@pytest.mark.dcmtk
def test_dcmtk_decompresses_what_we_accept(tmp_path: Path) -> None:
    """Cross-check: dcmdrle turns our RLE files back into the native file we started from."""
    files, vol = write_series(tmp_path / "src", transfer_syntax=RLELossless)
    out = tmp_path / "out"
    out.mkdir()
    for path in files:
        run_tool("dcmdrle", path, out / path.name)
    np.testing.assert_array_equal(volume_from_series(_scan_one(out, ExplicitVRLittleEndian)).data, vol.data)


# --- pydicom's own (real-world) test files ---------------------------------------------------------


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} missing from the installed pydicom"
    return Path(str(path))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_padded.dcm",
    ],
)
def test_pydicom_mr_small_variants_equal_the_original(name: str) -> None:
    reference = volume_from_series(only_series(scan([_testdata("MR_small.dcm")])))
    series = only_series(scan([_testdata(name)]))
    built = volume_from_series(series)
    assert built.shape == (64, 64, 1)
    np.testing.assert_array_equal(built.data, reference.data)
    np.testing.assert_allclose(built.affine, reference.affine)
    assert series.metadata.modality == "MR"


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("JPEG2000.dcm", JPEG2000),
        ("JPGExtended.dcm", JPEGExtended12Bit),
        ("JPEG-lossy.dcm", JPEGExtended12Bit),
        ("image_dfl.dcm", DeflatedExplicitVRLittleEndian),
        ("CT_small.dcm", ExplicitVRLittleEndian),
    ],
)
def test_pydicom_real_world_files_are_accepted(name: str, syntax: UID) -> None:
    series = only_series(scan([_testdata(name)]))
    assert series.metadata.transfer_syntax_uid == syntax


def test_pydicom_broken_files_are_explained() -> None:
    truncated, plan = _testdata("MR_truncated.dcm"), _testdata("rtplan.dcm")
    inv = scan([truncated, plan])
    assert {p.source: p.problem for p in inv.problems} == {
        str(truncated): "file truncated: pixel data declares 8192 bytes, only 8130 present",
        str(plan): "no pixel data (RT Plan Storage); not an image",
    }
