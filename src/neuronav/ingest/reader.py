"""Read and validate one DICOM file's header, without decoding its pixels.

Every check that protects memory happens here, before any pixel is allocated: absurd dimensions,
pixel data shorter than Rows × Columns × frames needs, truncated files, executable preambles.
Problems raise :class:`~neuronav.errors.DicomReadError` or :class:`~neuronav.errors.UnsafeInputError`
with a message a user understands; the caller turns them into skipped-file reasons.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID

from neuronav.errors import DicomReadError, UnsafeInputError
from neuronav.ingest import fastheader
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Instance, PatientIdentity, SeriesMetadata, Source
from neuronav.ingest.pydicom_messages import collected

PIXEL_DATA = Tag(0x7FE0, 0x0010)
UNDEFINED_LENGTH = 0xFFFFFFFF
# first bytes of executables that must never travel inside a DICOM preamble (PE/DICOM polyglots)
EXECUTABLE_MAGIC = {
    b"MZ": "a Windows executable (PE 'MZ' header)",
    b"\x7fELF": "a Linux executable (ELF header)",
    b"#!": "a script ('#!' line)",
    b"\xca\xfe\xba\xbe": "a macOS universal executable",
    b"\xcf\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"\xce\xfa\xed\xfe": "a macOS executable (Mach-O)",
    b"PK\x03\x04": "a zip archive",
}
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


class Header:
    """What the scan keeps of one file: the instance, and (read on demand) the full dataset.

    The fast path reads only the attributes an inventory needs; the scan asks for the full dataset
    once per new study or series, for the metadata.
    """

    def __init__(self, instance: Instance, dataset: Dataset | None, data: bytes | None = None) -> None:
        self.instance = instance
        self._dataset = dataset
        self._data = data

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            src: Any = io.BytesIO(self._data) if self._data is not None else self.instance.source.path
            self._dataset = dcmread(src, stop_before_pixels=True)
        return self._dataset


def check_preamble(head: bytes, where: str) -> bool:
    """Return True when ``head`` starts a Part-10 file; raise for executable preambles."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        preamble = head[:128]
        for magic, what in EXECUTABLE_MAGIC.items():
            if preamble.startswith(magic):
                raise UnsafeInputError(f"DICOM preamble holds {what}; file rejected", where)
        return True
    return False


def looks_like_raw_dataset(head: bytes) -> bool:
    """A DICOM dataset written without preamble: starts with a group 0x0002 or 0x0008 tag."""
    return len(head) >= 8 and head[0:2] in (b"\x02\x00", b"\x08\x00") and head[3] == 0


def read_header(source: Source, data: bytes | None, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Parse and validate the header of ``source`` (``data`` is its bytes when not a plain file).

    Little-endian Part-10 files take the fast path (:mod:`neuronav.ingest.fastheader`); everything
    else, and every file the fast path declines, is parsed by pydicom with the same checks.
    """
    where = str(source)
    try:
        if data is None:
            with open(source.path, "rb") as fh:
                size = fh.seek(0, io.SEEK_END)
                if size > limits.max_file_bytes:
                    raise UnsafeInputError(f"file of {size} bytes is over the cap of {limits.max_file_bytes}", where)
                fh.seek(0)
                head = fh.read(FAST_BYTES)
                fast = _fast(fh, head, size, source, where, limits)
                if fast is not None:
                    return fast
                fh.seek(0)
                ds, dataset_size = _parse(fh, head[:HEAD_BYTES], size, where, limits)
        else:
            size = len(data)
            fast = _fast(None, data, size, source, where, limits)
            if fast is not None:
                return Header(fast.instance, None, data)
            ds, dataset_size = _parse(io.BytesIO(data), data[:HEAD_BYTES], size, where, limits)
    except OSError as exc:
        raise DicomReadError(f"cannot read file ({exc.strerror or exc})", where) from exc
    return Header(_instance(_DatasetView(ds), source, dataset_size, where, limits), ds)


FAST_BYTES = 64 * 1024  # first read; most headers end well before
FAST_MAX_BYTES = 8 * 1024**2  # headers longer than this go to pydicom


def _fast(fh: Any, buf: bytes, size: int, source: Source, where: str, limits: Limits) -> Header | None:
    """The fast path; None when this file must go through pydicom."""
    if not check_preamble(buf, where):
        return None
    while True:
        try:
            values, tell, length = fastheader.parse(buf, size)
            break
        except fastheader.NeedMoreBytesError:
            if fh is None or len(buf) >= min(size, FAST_MAX_BYTES):
                return None
            fh.seek(0)
            buf = fh.read(min(len(buf) * 8, FAST_MAX_BYTES))
        except fastheader.UnsupportedHeaderError:
            return None
    frames = values.get("NumberOfFrames")
    if tell is None or (frames not in (None, "", "1")) or not values.get("ImageOrientationPatient"):
        return None  # no pixel data, multi-frame or no orientation: pydicom gives the full story
    if length is None:
        _check_fragments(fh, buf, tell, size, where)
    view = _ValuesView(values, tell, length)
    return Header(_instance(view, source, size, where, limits), None)


def _check_fragments(fh: Any, buf: bytes, pos: int, size: int, where: str) -> None:
    """Walk the item headers of encapsulated pixel data (no values read); raise when truncated."""
    for _ in range(1_000_000):
        if pos + 8 > size:
            break
        if fh is None:
            head = buf[pos : pos + 8]
        else:
            fh.seek(pos)
            head = fh.read(8)
        group, element, length = struct.unpack("<HHI", head)
        if (group, element) == (0xFFFE, 0xE0DD):
            return
        if (group, element) != (0xFFFE, 0xE000) or length == UNDEFINED_LENGTH:
            raise DicomReadError("corrupt encapsulated pixel data (expected an item tag)", where)
        pos += 8 + length
    raise DicomReadError("file truncated: End of file reached before delimiter (FFFE,E0DD) found", where)


class _ValuesView:
    """The fast path's values with the interface ``_instance`` reads."""

    def __init__(self, values: dict[str, Any], tell: int, length: int | None) -> None:
        self.values = values
        self.pixel_tell = tell
        self.pixel_length = length
        self.has_pixels = True
        self.transfer_syntax = str(values.get("TransferSyntaxUID", ""))

    def get(self, keyword: str) -> Any:
        return self.values.get(keyword)

    def functional(self, sequence: str, keyword: str) -> Any:
        return None


# private attributes the fast path also reads (tag by the keyword ``fastheader.WANTED`` gives them)
_PRIVATE = {
    "PhilipsPrivateCreator": 0x20050010,
    "PhilipsScaleSlope": 0x2005100E,
    "SiemensPrivateCreator": 0x00190010,
    "NumberOfImagesInMosaic": 0x0019100A,
}
PHILIPS_CREATOR = "Philips MR Imaging DD 001"
SIEMENS_CREATOR = "SIEMENS MR HEADER"


def _mosaic_images(view: _ValuesView | _DatasetView) -> int | None:
    """The number of slices tiled in a Siemens mosaic image (ImageType MOSAIC, (0019,100A)); None otherwise."""
    image_type = view.get("ImageType")
    values = [image_type] if isinstance(image_type, str) else list(image_type or [])
    if "MOSAIC" not in {str(v).strip().upper() for v in values}:
        return None
    if str(view.get("SiemensPrivateCreator") or "").strip() != SIEMENS_CREATOR:
        return None
    n = _first(view.get("NumberOfImagesInMosaic"))
    try:
        count = int(n)
    except (TypeError, ValueError):
        return None
    return count if count > 0 else None


def _philips_scale_slope(view: _ValuesView | _DatasetView) -> float | None:
    """Philips' private MR Scale Slope (2005,100E) when the file is a Philips MR image that has one.

    The stored values of such images map to "displayed values" through Rescale Slope/Intercept and to
    Philips' "floating point" (precise) values through FP = (PV × RS + RI) / (RS × SS): what dcm2niix
    writes by default (``-p y``).
    """
    if "philips" not in str(view.get("Manufacturer") or "").lower():
        return None
    if str(view.get("PhilipsPrivateCreator") or "").strip() != PHILIPS_CREATOR:
        return None
    value = _first(view.get("PhilipsScaleSlope"))
    try:
        slope = float(value)
    except (TypeError, ValueError):
        return None
    return slope if math.isfinite(slope) and slope > 0 and slope != 1.0 else None


class _DatasetView:
    """A pydicom dataset with the interface ``_instance`` reads."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.has_pixels = PIXEL_DATA in ds
        elem = ds.get_item(PIXEL_DATA, keep_deferred=True) if self.has_pixels else None
        length = getattr(elem, "length", None)
        self.pixel_length = None if length == UNDEFINED_LENGTH else length
        self.pixel_tell = getattr(elem, "value_tell", None)
        meta = getattr(ds, "file_meta", None)
        self.transfer_syntax = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")) if meta is not None else ""

    def get(self, keyword: str) -> Any:
        private = _PRIVATE.get(keyword)
        if private is None:
            return self.ds.get(keyword)
        elem = self.ds.get(private)
        if elem is None:
            return None
        value = elem.value
        if keyword == "PhilipsScaleSlope" and isinstance(value, bytes):  # UN (implicit VR): raw little-endian FL
            return struct.unpack_from("<f", value)[0] if len(value) == 4 else None
        if keyword == "NumberOfImagesInMosaic" and isinstance(value, bytes):  # UN: raw little-endian US
            return struct.unpack_from("<H", value)[0] if len(value) >= 2 else None
        if isinstance(value, bytes):
            return value.decode("ascii", "replace").strip("\x00 ")
        return value

    def functional(self, sequence: str, keyword: str) -> Any:
        if "SharedFunctionalGroupsSequence" not in self.ds:
            return None
        return _functional(self.ds, sequence, keyword)


HEAD_BYTES = 4096  # enough for the preamble and the file meta information of any sane file
DEFLATED = "1.2.840.10008.1.2.1.99"
_EXPLICIT_VR_LENGTH_32 = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _parse(fh: Any, head: bytes, size: int, where: str, limits: Limits) -> tuple[Dataset, int]:
    """Parse the data set (pixel data deferred); return it and the size its offsets refer to."""
    part10 = check_preamble(head, where)
    if not part10 and not looks_like_raw_dataset(head):
        if head.startswith(b"PK\x03\x04"):
            raise DicomReadError("zip archive inside a zip archive; nested archives are not read", where)
        if where.lower().endswith((".nii", ".nii.gz")):
            raise DicomReadError(
                "NIfTI file, not DICOM: analyse NIfTI inputs on their own (a folder of BraTS / BIDS-named "
                "files, or --t1/--t1c/--t2/--flair)",
                where,
            )
        raise DicomReadError("not a DICOM file (no 'DICM' marker)", where)
    dataset_size = size
    if part10 and DEFLATED.encode() in head:
        meta = _meta_end(head)
        if meta is not None and meta[1] == DEFLATED:
            dataset_size = _inflated_size(fh, meta[0], where, limits)
            fh.seek(0)
    try:
        with collected() as messages:  # what pydicom reports about this file, in this thread
            ds = dcmread(fh, defer_size=512, force=not part10)
    except InvalidDicomError as exc:
        raise DicomReadError(f"not a valid DICOM file ({exc})", where) from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise DicomReadError(f"corrupt or truncated DICOM header ({type(exc).__name__}: {exc})", where) from exc
    for text in messages:
        if "end of file" in text.lower():
            raise DicomReadError(f"file truncated: {text.split(' in file ')[0]}", where)
    if len(ds) == 0:
        raise DicomReadError("file truncated or empty: no data set after the file header", where)
    _check_complete(ds, dataset_size, where)
    return ds, dataset_size


def _meta_end(head: bytes) -> tuple[int, str] | None:
    """(offset just after the file meta information, its TransferSyntaxUID) of a Part-10 file."""
    pos, syntax = 132, ""
    while pos + 8 <= len(head):
        group, element = (
            int.from_bytes(head[pos : pos + 2], "little"),
            int.from_bytes(head[pos + 2 : pos + 4], "little"),
        )
        if group != 0x0002:
            return pos, syntax
        vr = head[pos + 4 : pos + 6]
        if vr in _EXPLICIT_VR_LENGTH_32:
            if pos + 12 > len(head):
                return None
            start, length = pos + 12, int.from_bytes(head[pos + 8 : pos + 12], "little")
        else:
            start, length = pos + 8, int.from_bytes(head[pos + 6 : pos + 8], "little")
        if element == 0x0010:
            syntax = head[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return None


def _inflated_size(fh: Any, start: int, where: str, limits: Limits) -> int:
    """Inflate a deflated data set in bounded chunks, refusing deflate bombs; return its size."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    chunk = 1024**2
    fh.seek(start)
    try:
        while not inflater.eof and (compressed := fh.read(chunk)):
            while compressed:
                total += len(inflater.decompress(compressed, chunk))
                if total > limits.max_inflated_bytes:
                    raise UnsafeInputError(
                        f"deflated data set inflates to more than {limits.max_inflated_bytes} bytes "
                        "(deflate bomb?); refused",
                        where,
                    )
                compressed = inflater.unconsumed_tail
    except zlib.error as exc:
        raise DicomReadError(f"corrupt deflated data set ({exc})", where) from exc
    if not inflater.eof:
        raise DicomReadError("file truncated: the deflated data set ends early", where)
    return total


def _check_complete(ds: Dataset, size: int, where: str) -> None:
    """Raise when the last element read declares more bytes than the file holds (a truncated file)."""
    last: tuple[int, int, Any] | None = None  # (end, value_tell, tag)
    tags = list(ds.keys())  # iterating the Dataset itself would convert (and load) every element
    for tag in tags:
        elem = ds.get_item(tag, keep_deferred=True)  # never loads deferred values (pixel data)
        tell = getattr(elem, "value_tell", None)
        length = getattr(elem, "length", None)
        if tell is None or length is None or length == UNDEFINED_LENGTH:
            continue
        if last is None or tell + length > last[0]:
            last = (tell + length, tell, elem.tag)
    if last is None or last[0] <= size:
        return
    end, tell, tag = last
    if tag == PIXEL_DATA:
        raise DicomReadError(
            f"file truncated: pixel data declares {end - tell} bytes, only {max(size - tell, 0)} present", where
        )
    raise DicomReadError(f"file truncated: element {tag} ends at byte {end}, the data set holds only {size}", where)


def _int(ds: Any, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


def _instance(view: _ValuesView | _DatasetView, source: Source, size: int, where: str, limits: Limits) -> Instance:
    uids = {}
    for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        value = str(view.get(kw) or "").strip()
        if not value:
            raise DicomReadError(f"missing {kw}", where)
        uids[kw] = value
    if not view.has_pixels:
        sop = str(view.get("SOPClassUID") or "")
        name = UID(sop).name if sop else "unknown SOP class"
        raise DicomReadError(f"no pixel data ({name}); not an image", where)

    rows = _int(view, "Rows")
    columns = _int(view, "Columns")
    frames = _int(view, "NumberOfFrames", 1) or 1
    bits = _int(view, "BitsAllocated")
    spp = _int(view, "SamplesPerPixel", 1) or 1
    if rows is None or columns is None or bits is None:
        raise DicomReadError("image without Rows, Columns or BitsAllocated", where)
    if not (0 < rows <= limits.max_rows and 0 < columns <= limits.max_columns):
        raise UnsafeInputError(f"absurd image dimensions {rows}×{columns}; refused before allocating", where)
    if not 0 < frames <= limits.max_frames:
        raise UnsafeInputError(f"absurd NumberOfFrames {frames}; refused before allocating", where)
    if bits not in (1, 8, 16, 32, 64) or spp not in (1, 3):
        raise DicomReadError(f"unsupported pixel format (BitsAllocated {bits}, SamplesPerPixel {spp})", where)
    photometric = str(view.get("PhotometricInterpretation") or "").strip().upper()
    # YBR_FULL_422 uncompressed: two luminance and one Cb, Cr pair per two pixels (PS3.3 C.7.6.3.1.2)
    per_pixel = 2 if spp == 3 and photometric == "YBR_FULL_422" and bits == 8 else spp
    expected = math.ceil(rows * columns * frames * per_pixel * bits / 8)
    if expected > limits.max_pixel_bytes:
        raise UnsafeInputError(f"decoded pixels would need {expected} bytes, over the cap", where)

    ts = view.transfer_syntax
    length = view.pixel_length
    value_tell = view.pixel_tell
    pixel_offset: int | None = None
    if length is None:
        if ts in NATIVE_LE or ts == "1.2.840.10008.1.2.2":
            raise DicomReadError("encapsulated pixel data in a native (uncompressed) transfer syntax", where)
    else:
        if value_tell is not None and value_tell + length > size:
            raise DicomReadError(
                f"file truncated: pixel data declares {length} bytes, only {max(size - value_tell, 0)} present",
                where,
            )
        # trailing padding shorter than one frame occurs in real files; a whole frame or more means
        # Rows/Columns/NumberOfFrames do not describe the data
        if length < expected or length - expected >= max(expected // frames, 2):
            raise DicomReadError(
                f"pixel data holds {length} bytes but Rows×Columns×frames ({rows}×{columns}×{frames}, "
                f"{bits} bits) needs {expected}",
                where,
            )
        signed = (_int(view, "PixelRepresentation", 0) or 0) == 1
        stored = _int(view, "BitsStored", bits) or bits
        # signed values stored in fewer bits than allocated need sign extension: pydicom's decoder does it
        # the offset is into the file, or into the bytes of a zip member
        if (
            ts in NATIVE_LE
            and bits in (8, 16, 32)
            and spp == 1
            and value_tell is not None
            and not (signed and stored < bits)
        ):
            pixel_offset = int(value_tell)

    ipp = float_tuple(view.get("ImagePositionPatient"), 3)
    iop = float_tuple(view.get("ImageOrientationPatient"), 6)
    if iop is None:
        iop = float_tuple(view.functional("PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    slope = float_or(_first(view.get("RescaleSlope")), 1.0)
    intercept = float_or(_first(view.get("RescaleIntercept")), 0.0)
    return Instance(
        source=source,
        sop_instance_uid=uids["SOPInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        instance_number=_int(view, "InstanceNumber"),
        image_position=ipp,  # type: ignore[arg-type]
        image_orientation=iop,  # type: ignore[arg-type]
        number_of_frames=frames,
        rows=rows,
        columns=columns,
        acquisition_number=_int(view, "AcquisitionNumber"),
        echo_number=_int(view, "EchoNumbers"),
        temporal_position=_int(view, "TemporalPositionIdentifier"),
        transfer_syntax_uid=ts,
        bits_allocated=bits,
        pixel_representation=_int(view, "PixelRepresentation", 0) or 0,
        samples_per_pixel=spp,
        pixel_offset=pixel_offset,
        rescale_slope=slope if slope != 0 else 1.0,
        rescale_intercept=intercept,
        philips_scale_slope=_philips_scale_slope(view),
        mosaic_images=_mosaic_images(view),
        pixel_spacing=float_tuple(view.get("PixelSpacing"), 2),  # type: ignore[arg-type]
    )


def float_tuple(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def float_or(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _float_opt(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _first(value: Any) -> Any:
    """The first of a multi-valued element's values; a single value (pydicom's VM 1) as is."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _functional(ds: Dataset, sequence: str, keyword: str) -> Any:
    """Look up ``keyword`` in a functional group of an enhanced (multi-frame) object: shared first."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            item = ds[groups][0]
            seq = item.get(sequence)
            if seq and keyword in seq[0]:
                return seq[0].get(keyword)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
    return None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def series_metadata(ds: Dataset) -> SeriesMetadata:
    """Technical metadata of a series from one of its instances (classic or enhanced MR)."""

    def num(keyword: str, sequence: str | None = None) -> float | None:
        value = ds.get(keyword)
        if value is None and sequence:
            value = _functional(ds, sequence, keyword)
        return _float_opt(_first(value))

    spacing = float_tuple(ds.get("PixelSpacing") or _functional(ds, "PixelMeasuresSequence", "PixelSpacing"), 2)
    echo = num("EchoTime")
    if echo is None:
        echo = _float_opt(_functional(ds, "MREchoSequence", "EffectiveEchoTime"))
    ti = num("InversionTime")
    if ti is None:
        ti = _float_opt(_first(_functional(ds, "MRModifierSequence", "InversionTimes")))
    return SeriesMetadata(
        modality=_text(ds, "Modality"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        manufacturer=_text(ds, "Manufacturer"),
        manufacturer_model_name=_text(ds, "ManufacturerModelName"),
        magnetic_field_strength=num("MagneticFieldStrength"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        series_date=_text(ds, "SeriesDate"),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        series_number=_int(ds, "SeriesNumber"),
        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
        scanning_sequence=_text(ds, "ScanningSequence"),
        sequence_variant=_text(ds, "SequenceVariant"),
        scan_options=_text(ds, "ScanOptions"),
        sequence_name=_text(ds, "SequenceName") or _text(ds, "PulseSequenceName"),
        mr_acquisition_type=_text(ds, "MRAcquisitionType"),
        slice_thickness=num("SliceThickness", "PixelMeasuresSequence"),
        spacing_between_slices=num("SpacingBetweenSlices", "PixelMeasuresSequence"),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        repetition_time=num("RepetitionTime", "MRTimingAndRelatedParametersSequence"),
        echo_time=echo,
        inversion_time=ti,
        flip_angle=num("FlipAngle", "MRTimingAndRelatedParametersSequence"),
        diffusion_b_value=num("DiffusionBValue", "MRDiffusionSequence"),
        contrast_bolus_agent=_text(ds, "ContrastBolusAgent") or _contrast_agent_code(ds),
        contrast_bolus_route=_text(ds, "ContrastBolusRoute"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else "",
    )


def _contrast_agent_code(ds: Dataset) -> str:
    """The agent of an enhanced object's Contrast/Bolus Agent Sequence (its code meaning), if any."""
    try:
        item = ds["ContrastBolusAgentSequence"][0]
        return str(item.get("CodeMeaning", "") or item.get("CodeValue", "") or "").strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def patient_identity(ds: Dataset) -> PatientIdentity:
    return PatientIdentity(
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        patient_age=_text(ds, "PatientAge"),
        other_patient_ids=_text(ds, "OtherPatientIDs"),
        institution_name=_text(ds, "InstitutionName"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        accession_number=_text(ds, "AccessionNumber"),
    )
