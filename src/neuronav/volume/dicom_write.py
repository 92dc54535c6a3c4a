"""Volume → DICOM MR series (classic single-frame or enhanced multi-frame).

Used to write phantom studies and geometry test cases. Geometry is written exactly from the
Volume's affine: ImageOrientationPatient from the i and j columns, ImagePositionPatient per slice,
PixelSpacing from the column norms; the patient coordinate system of DICOM is LPS.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from neuronav.volume.core import Volume, ras_to_lps


def new_uid() -> str:
    """A globally unique UID from a random UUID (the 2.25 root, PS3.5 B.2): no registered root needed."""
    return str(generate_uid(prefix=None))


SliceOrder = Literal["ascending", "descending"]


def part10_stream(file_meta: FileMetaDataset, *, implicit: bool) -> DicomBytesIO:
    """A buffer holding the DICOM Part 10 preamble, ``DICM`` and ``file_meta``, set up for a little-endian
    dataset (explicit or implicit VR) written after it."""
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, file_meta, enforce_standard=True)
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    return fp


def _ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) with as many significant digits as fit."""
    for digits in range(15, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return "0" if text == "-0" else text
    return f"{value:.6g}"


def _to_stored(data: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.int16] | npt.NDArray[np.uint16], float, float]:
    """Choose stored integers and RescaleSlope/Intercept so that slope*stored+intercept ≈ data."""
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 65535:
        return arr.astype(np.uint16), 1.0, 0.0
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= -32768 and arr.max() <= 32767:
        return arr.astype(np.int16), 1.0, 0.0
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros(arr.shape, np.uint16), 1.0, lo
    slope = (hi - lo) / 4095.0
    stored = np.clip(np.rint((arr - lo) / slope), 0, 4095).astype(np.uint16)
    return stored, slope, lo


def _base_dataset(sop_class: UID, transfer_syntax: UID, study: Mapping[str, Any], series: Mapping[str, Any]) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.Modality = "MR"
    ds.SpecificCharacterSet = "ISO_IR 192"
    now = _dt.datetime(2024, 1, 1, 12, 0, 0)
    ds.StudyDate = study.get("StudyDate", now.strftime("%Y%m%d"))
    ds.StudyTime = study.get("StudyTime", "120000")
    ds.SeriesDate = series.get("SeriesDate", ds.StudyDate)
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = study.get("AccessionNumber", "")
    ds.ReferringPhysicianName = ""
    for key, value in study.items():
        if key not in ("StudyDate", "StudyTime"):
            setattr(ds, key, value)
    for key, value in series.items():
        if key != "SeriesDate":
            setattr(ds, key, value)
    ds.PatientPosition = series.get("PatientPosition", "HFS")
    ds.FrameOfReferenceUID = study.get("FrameOfReferenceUID") or series.get("FrameOfReferenceUID")
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_dicom_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    study: Mapping[str, Any],
    series: Mapping[str, Any],
    slice_order: SliceOrder = "ascending",
    multiframe: bool = False,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    file_prefix: str = "IM",
    uid_factory: Callable[[], str] | None = None,
) -> list[Path]:
    """Write ``volume`` as one MR series into ``out_dir``; return the files written.

    study:  study-level attributes; must hold StudyInstanceUID, PatientID, PatientName (and may hold
            FrameOfReferenceUID, StudyDate, StudyDescription, PatientBirthDate, PatientSex, …).
    series: series-level attributes; must hold SeriesInstanceUID and SeriesNumber, and may hold
            SeriesDescription, ProtocolName, RepetitionTime, EchoTime, InversionTime, FlipAngle,
            ContrastBolusAgent, MagneticFieldStrength, Manufacturer, ….
    uid_factory: makes each SOPInstanceUID (default: a random 2.25 UID); pass a deterministic one to
            write reproducible files.
    slice_order: 'descending' writes the slices (and InstanceNumbers) in reverse k order, so a
            reader must sort by position, not by file or instance number.
    """
    if transfer_syntax == ExplicitVRBigEndian:
        raise ValueError("writing the retired big-endian transfer syntax is not supported")
    for required in ("StudyInstanceUID", "PatientID", "PatientName"):
        if required not in study:
            raise ValueError(f"study attributes lack {required}")
    for required in ("SeriesInstanceUID", "SeriesNumber"):
        if required not in series:
            raise ValueError(f"series attributes lack {required}")
    make_uid = uid_factory or new_uid
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aff = ras_to_lps(volume.affine)
    col_i, col_j, col_k = aff[:3, 0], aff[:3, 1], aff[:3, 2]
    si, sj = float(np.linalg.norm(col_i)), float(np.linalg.norm(col_j))
    row_dir, col_dir = col_i / si, col_j / sj
    iop = [_ds(v) for v in (*row_dir, *col_dir)]
    pixel_spacing = [_ds(sj), _ds(si)]  # DICOM: [between rows, between columns]
    sk = float(np.linalg.norm(col_k))
    stored, slope, intercept = _to_stored(volume.data)
    nk = volume.shape[2]
    order = list(range(nk)) if slice_order == "ascending" else list(range(nk - 1, -1, -1))
    study = dict(study)
    study.setdefault("FrameOfReferenceUID", new_uid())

    def position(k: int) -> list[str]:
        return [_ds(v) for v in (aff[:3, 3] + k * col_k)]

    if multiframe:
        ds = _base_dataset(EnhancedMRImageStorage, transfer_syntax, study, series)
        ds.SOPInstanceUID = make_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.NumberOfFrames = nk
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.ContentQualification = "RESEARCH"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        shared = Dataset()
        po = Dataset()
        po.ImageOrientationPatient = iop
        shared.PlaneOrientationSequence = [po]
        pm = Dataset()
        pm.PixelSpacing = pixel_spacing
        pm.SliceThickness = _ds(sk)
        pm.SpacingBetweenSlices = _ds(sk)
        shared.PixelMeasuresSequence = [pm]
        pvt = Dataset()
        pvt.RescaleSlope = _ds(slope)
        pvt.RescaleIntercept = _ds(intercept)
        pvt.RescaleType = "US"
        shared.PixelValueTransformationSequence = [pvt]
        ds.SharedFunctionalGroupsSequence = [shared]
        frames = []
        for n, k in enumerate(order):
            fg = Dataset()
            pp = Dataset()
            pp.ImagePositionPatient = position(k)
            fg.PlanePositionSequence = [pp]
            fc = Dataset()
            fc.InStackPositionNumber = n + 1
            fc.StackID = "1"
            fc.DimensionIndexValues = [1, n + 1]
            fg.FrameContentSequence = [fc]
            frames.append(fg)
        ds.PerFrameFunctionalGroupsSequence = frames
        pixels = np.stack([stored[:, :, k].T for k in order])
        _set_pixels(ds, pixels, transfer_syntax)
        path = out / f"{file_prefix}0001.dcm"
        ds.save_as(path, enforce_file_format=True)
        return [path]

    written: list[Path] = []
    for n, k in enumerate(order):
        ds = _base_dataset(MRImageStorage, transfer_syntax, study, series)
        ds.SOPInstanceUID = make_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = position(k)
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = pixel_spacing
        ds.SliceThickness = _ds(sk)
        ds.SpacingBetweenSlices = _ds(sk)
        ds.SliceLocation = _ds(float(np.dot(aff[:3, 3] + k * col_k, np.cross(row_dir, col_dir))))
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "US"
        ds.AcquisitionNumber = 1
        _set_pixels(ds, np.ascontiguousarray(stored[:, :, k].T), transfer_syntax)
        path = out / f"{file_prefix}{n + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _set_pixels(ds: Dataset, pixels: npt.NDArray[np.generic], transfer_syntax: UID) -> None:
    """Store pixels uncompressed, or compressed with pydicom's encoders (RLE, JPEG-LS, JPEG 2000)."""
    if transfer_syntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(transfer_syntax, pixels, encoding_plugin="")
    else:
        ds.PixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
