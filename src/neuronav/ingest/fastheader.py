"""A minimal, fast reader of the few header attributes the inventory needs (little-endian files).

pydicom parses and converts every element; an inventory of 10,000 files only needs about twenty
attributes and the position of the pixel data. This reader walks the elements of the first bytes
of a Part-10 file with ``struct``, keeps the wanted values, skips everything else (sequences
included) and stops at Pixel Data. Anything it does not handle (deflated or big-endian transfer
syntaxes, undefined-length UN, a malformed element) raises :class:`UnsupportedHeaderError`, and the caller
falls back to pydicom, which then also produces the precise error message for broken files.
"""

from __future__ import annotations

import struct
from typing import Any

from neuronav.errors import DicomReadError

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
NOT_HANDLED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}  # deflated, big endian
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

# tag → (keyword, kind): kind is "str" (CS/UI/LO…), "cs" (multi-valued strings, list), "int" (IS),
# "ds" (DS, list), "us" (US), "fl" (FL)
WANTED: dict[int, tuple[str, str]] = {
    0x00020010: ("TransferSyntaxUID", "str"),
    0x00080016: ("SOPClassUID", "str"),
    0x00080018: ("SOPInstanceUID", "str"),
    0x00080060: ("Modality", "str"),
    0x0020000D: ("StudyInstanceUID", "str"),
    0x0020000E: ("SeriesInstanceUID", "str"),
    0x00200012: ("AcquisitionNumber", "int"),
    0x00200013: ("InstanceNumber", "int"),
    0x00180086: ("EchoNumbers", "int"),
    0x00200100: ("TemporalPositionIdentifier", "int"),
    0x00200032: ("ImagePositionPatient", "ds"),
    0x00200037: ("ImageOrientationPatient", "ds"),
    0x00280002: ("SamplesPerPixel", "us"),
    0x00280004: ("PhotometricInterpretation", "str"),
    0x00280008: ("NumberOfFrames", "int"),
    0x00280010: ("Rows", "us"),
    0x00280011: ("Columns", "us"),
    0x00280100: ("BitsAllocated", "us"),
    0x00280101: ("BitsStored", "us"),
    0x00280103: ("PixelRepresentation", "us"),
    0x00280030: ("PixelSpacing", "ds"),
    0x00281052: ("RescaleIntercept", "ds"),
    0x00281053: ("RescaleSlope", "ds"),
    0x00080070: ("Manufacturer", "str"),
    0x20050010: ("PhilipsPrivateCreator", "str"),  # (2005,0010): "Philips MR Imaging DD 001"
    0x2005100E: ("PhilipsScaleSlope", "fl"),  # (2005,100E) MR Scale Slope, in that creator's block
    0x00080008: ("ImageType", "cs"),
    0x00190010: ("SiemensPrivateCreator", "str"),  # (0019,0010): "SIEMENS MR HEADER"
    0x0019100A: ("NumberOfImagesInMosaic", "us"),  # (0019,100A), in that creator's block
}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")


class UnsupportedHeaderError(DicomReadError):
    """This file needs the full parser (pydicom)."""

    def __init__(self, problem: str = "unsupported header") -> None:
        super().__init__(problem)


class NeedMoreBytesError(DicomReadError):
    """The buffer ended before Pixel Data: read more of the file and try again."""

    def __init__(self, problem: str = "the header continues past the bytes read") -> None:
        super().__init__(problem)


def _convert(raw: bytes, kind: str) -> Any:
    if kind == "us":
        if len(raw) < 2:
            raise UnsupportedHeaderError("short US value")
        return _U16.unpack_from(raw)[0]
    if kind == "fl":
        return struct.unpack_from("<f", raw)[0] if len(raw) == 4 else None
    text = raw.decode("ascii", "replace").strip("\x00 ")
    if kind == "str":
        return text
    if kind == "int":
        return text.split("\\")[0].strip() or None
    if kind == "cs":
        return [v.strip() for v in text.split("\\")] if text else []
    return [v.strip() for v in text.split("\\")] if text else None


def parse(buf: bytes, file_size: int) -> tuple[dict[str, Any], int | None, int | None]:
    """Parse a Part-10 file's header from ``buf`` (its first bytes, preamble included).

    Returns (values by keyword, pixel data value offset, pixel data length or None if undefined).
    Raises UnsupportedHeaderError, or NeedMoreBytesError when ``buf`` is shorter than the header.
    """
    if buf[128:132] != b"DICM":
        raise UnsupportedHeaderError("no Part-10 marker")
    values: dict[str, Any] = {}
    pos = 132
    n = len(buf)
    # file meta group: always explicit VR little endian
    while True:
        if pos + 8 > n:
            raise NeedMoreBytesError
        group = _U16.unpack_from(buf, pos)[0]
        if group != 0x0002:
            break
        pos = _element(buf, pos, True, values)
    ts = str(values.get("TransferSyntaxUID", ""))
    if ts in NOT_HANDLED or not ts:
        raise UnsupportedHeaderError(f"transfer syntax {ts or 'missing'}")
    explicit = ts != IMPLICIT_LE
    while pos + 8 <= n:
        tag = (_U16.unpack_from(buf, pos)[0] << 16) | _U16.unpack_from(buf, pos + 2)[0]
        if tag == PIXEL_DATA:
            if explicit:
                length = _U32.unpack_from(buf, pos + 8)[0]
                start = pos + 12
            else:
                length = _U32.unpack_from(buf, pos + 4)[0]
                start = pos + 8
            if start > n:
                raise NeedMoreBytesError
            return values, start, None if length == UNDEFINED else length
        if tag == 0xFFFCFFFC:
            break
        pos = _element(buf, pos, explicit, values)
    if n >= file_size:
        return values, None, None  # end of file without Pixel Data
    raise NeedMoreBytesError


def _element(buf: bytes, pos: int, explicit: bool, values: dict[str, Any] | None) -> int:
    """Parse (or skip) one element at ``pos``; return the offset after it."""
    n = len(buf)
    if pos + 8 > n:
        raise NeedMoreBytesError
    group, elem = _TAG.unpack_from(buf, pos)
    tag = (group << 16) | elem
    if explicit and group != 0xFFFE:
        vr = buf[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            if pos + 12 > n:
                raise NeedMoreBytesError
            length = _U32.unpack_from(buf, pos + 8)[0]
            start = pos + 12
        elif vr.isalpha() and vr.isupper():
            length = _U16.unpack_from(buf, pos + 6)[0]
            start = pos + 8
        else:
            raise UnsupportedHeaderError("invalid VR")
        is_seq = vr == b"SQ"
        if length == UNDEFINED and vr != b"SQ":
            raise UnsupportedHeaderError("undefined length outside a sequence")
    else:
        length = _U32.unpack_from(buf, pos + 4)[0]
        start = pos + 8
        is_seq = length == UNDEFINED
    if length == UNDEFINED:
        if is_seq or group == 0xFFFE:
            return _skip_undefined(buf, start, explicit)
        raise UnsupportedHeaderError("undefined length")
    end: int = start + length
    if values is not None:
        wanted = WANTED.get(tag)
        if wanted is not None:
            if end > n:
                raise NeedMoreBytesError
            values[wanted[0]] = _convert(buf[start:end], wanted[1])
    return end


def _skip_undefined(buf: bytes, pos: int, explicit: bool) -> int:
    """Skip the items of an undefined-length sequence starting at ``pos``; return the offset after it."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise NeedMoreBytesError
        group, elem = _TAG.unpack_from(buf, pos)
        tag = (group << 16) | elem
        length = _U32.unpack_from(buf, pos + 4)[0]
        pos += 8
        if tag == SEQ_END:
            return pos
        if tag != ITEM:
            raise UnsupportedHeaderError("malformed sequence")
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements end at an item delimiter
            if pos + 8 > n:
                raise NeedMoreBytesError
            group, elem = _TAG.unpack_from(buf, pos)
            if ((group << 16) | elem) == ITEM_END:
                pos += 8
                break
            pos = _element(buf, pos, explicit, None)
