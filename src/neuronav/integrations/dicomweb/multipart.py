"""multipart/related bodies (RFC 2387) as DICOMweb uses them: WADO-RS answers and STOW-RS requests.

Parts are written to and read from files, never held whole in memory: a study is hundreds of MB.
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Iterable, Iterator
from email.message import Message
from pathlib import Path

from neuronav.errors import InputError

CHUNK = 1 << 20


class MultipartError(InputError):
    """A multipart/related body that cannot be read, with the reason."""


def related_content_type(boundary: str, part_type: str = "application/dicom") -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def new_boundary() -> str:
    return "neuronav-" + secrets.token_hex(16)


def write_related(files: Iterable[Path], boundary: str, part_type: str = "application/dicom") -> Iterator[bytes]:
    """The body of a multipart/related answer, one part per file, streamed in chunks."""
    for path in files:
        yield f"--{boundary}\r\nContent-Type: {part_type}\r\nContent-Length: {path.stat().st_size}\r\n\r\n".encode()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and parameters of a Content-Type header."""
    msg = Message()
    msg["content-type"] = header
    params = {k.lower(): v for k, v in msg.get_params(failobj=[])[1:]}
    return msg.get_content_type().lower(), params


def split_related(body: Path, content_type: str, folder: Path, *, max_parts: int = 100_000) -> list[tuple[str, Path]]:
    """Split the multipart/related ``body`` (a file) into one file per part in ``folder``; each part's
    media type (``application/dicom`` when it names none) and path. :class:`MultipartError` names what
    is wrong: not multipart/related, no boundary, no closing delimiter, a part without a header end."""
    media, params = parse_content_type(content_type)
    if media != "multipart/related":
        raise MultipartError(f"expected a multipart/related body (STOW-RS), not {media or 'no content type'}")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise MultipartError("the multipart/related content type names no (valid) boundary")
    default_type = params.get("type", "application/dicom").lower()
    size = body.stat().st_size
    if size == 0:
        raise MultipartError("the request body is empty")
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[str, Path]] = []
    with open(body, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = data.find(delimiter)
        if pos < 0:
            raise MultipartError("the body holds no part (its boundary never appears)")
        while True:
            pos += len(delimiter)
            if data[pos : pos + 2] == b"--":
                break  # the closing delimiter
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                raise MultipartError("a part delimiter is not followed by a line end")
            header_end = data.find(b"\r\n\r\n", line_end)
            head_start = line_end + 2
            if header_end < 0:
                raise MultipartError(f"part {len(parts) + 1} has no end of its headers")
            if header_end < head_start:  # no headers at all: the blank line follows the delimiter line
                header_end, content_start = line_end, line_end + 4
                headers = b""
            else:
                headers = data[head_start:header_end]
                content_start = header_end + 4
            nxt = data.find(b"\r\n" + delimiter, content_start)
            if nxt < 0:
                raise MultipartError(f"part {len(parts) + 1} is not closed by the boundary (a truncated body?)")
            part_type = default_type
            for line in headers.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-type":
                    part_type = parse_content_type(value.strip())[0]
            if len(parts) >= max_parts:
                raise MultipartError(f"more than {max_parts} parts in one request")
            out = folder / f"part-{len(parts):06d}.dcm"
            with open(out, "wb") as target:
                for start in range(content_start, nxt, CHUNK):
                    target.write(data[start : min(start + CHUNK, nxt)])
            parts.append((part_type, out))
            pos = nxt + 2
    if not parts:
        raise MultipartError("the body holds no part")
    return parts
