"""Builders for ingest tests: small MR series written in tmp_path, zip archives, hostile edits.

Everything is generated here (nothing downloaded); images are 32×32×8 so the suite stays fast.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from neuronav.ingest import Inventory, Problem, Series
from neuronav.volume.core import Volume
from neuronav.volume.dicom_write import new_uid, write_dicom_series

SHAPE = (32, 32, 8)
SECRET_NAME = "SECRET^NAME"


def make_volume(
    shape: tuple[int, int, int] = SHAPE, *, seed: int = 0, smooth: bool = False, high: int = 4000
) -> Volume:
    """A volume with integer voxels in [0, high) and an oblique-free, non-isotropic affine (RAS)."""
    rng = np.random.default_rng(seed)
    if smooth:  # slowly varying values: what lossy codecs are made for
        i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
        data = (high - 1) * (0.5 + 0.25 * np.sin(i / 5.0) + 0.2 * np.cos(j / 7.0) + 0.05 * np.sin(k))
        data = np.clip(np.rint(data), 0, high - 1).astype(np.int16)
    else:
        data = rng.integers(0, high, shape).astype(np.int16)
    affine = np.diag([0.9, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-12.5, 20.0, 5.0]
    return Volume(data, affine)


def study_attrs(**extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "StudyInstanceUID": new_uid(),
        "PatientID": "PID-0042",
        "PatientName": SECRET_NAME,
        "PatientBirthDate": "19700101",
        "PatientSex": "F",
        "StudyDescription": "MRI BRAIN",
        "StudyDate": "20240102",
    }
    attrs.update(extra)
    return attrs


def series_attrs(number: int = 1, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "SeriesInstanceUID": new_uid(),
        "SeriesNumber": number,
        "SeriesDescription": f"T1 series {number}",
    }
    attrs.update(extra)
    return attrs


def write_series(
    out_dir: Path,
    volume: Volume | None = None,
    *,
    study: Mapping[str, Any] | None = None,
    series: Mapping[str, Any] | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    multiframe: bool = False,
    slice_order: str = "ascending",
) -> tuple[list[Path], Volume]:
    """Write ``volume`` (default: :func:`make_volume`) as an MR series; return the files and the volume."""
    vol = volume if volume is not None else make_volume()
    files = write_dicom_series(
        vol,
        out_dir,
        study=study if study is not None else study_attrs(),
        series=series if series is not None else series_attrs(),
        transfer_syntax=transfer_syntax,
        multiframe=multiframe,
        slice_order=slice_order,  # type: ignore[arg-type]
    )
    return files, vol


def edit(path: Path, change: Callable[[Dataset], None]) -> None:
    """Read ``path``, apply ``change`` to the data set, write it back in the same transfer syntax."""
    ds = dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def to_8bit(path: Path) -> None:
    """Rewrite a 16-bit single-frame file as 8-bit (values must be < 256): input for JPEG baseline."""

    def change(ds: Dataset) -> None:
        arr = ds.pixel_array
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = arr.astype(np.uint8).tobytes()

    edit(path, change)


def make_zip(
    path: Path, members: Iterable[tuple[str, bytes | Path]], *, compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, content in members:
            data = content.read_bytes() if isinstance(content, Path) else content
            zf.writestr(name, data)
    return path


def problems_of(inv: Inventory, fragment: str) -> list[Problem]:
    """The problems whose source contains ``fragment`` (a file name or 'archive!entry')."""
    return [p for p in inv.problems if fragment in p.source]


def only_series(inv: Inventory) -> Series:
    assert len(inv.all_series) == 1, [str(p) for p in inv.problems]
    return inv.all_series[0]


def require_binary(name: str) -> str:
    """Path of a dcmtk binary; FAIL (never skip) when it is missing: CI installs dcmtk."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (dcmtk); CI installs it, locally run scripts/setup.sh")
    return path


def run_tool(*args: str | Path) -> None:
    """Run a dcmtk command line; fail the test with its output when it does not succeed."""
    argv = [require_binary(str(args[0])), *(str(a) for a in args[1:])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
