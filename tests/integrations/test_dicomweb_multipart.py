"""multipart/related bodies: what WADO-RS writes is what STOW-RS reads; broken bodies are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronav.integrations.dicomweb import MultipartError, related_content_type, split_related, write_related


def parts(tmp_path: Path, *contents: bytes) -> list[Path]:
    out = []
    for n, data in enumerate(contents):
        path = tmp_path / f"in-{n}.dcm"
        path.write_bytes(data)
        out.append(path)
    return out


def body(tmp_path: Path, files: list[Path], boundary: str = "b0undary") -> Path:
    path = tmp_path / "body"
    path.write_bytes(b"".join(write_related(files, boundary)))
    return path


def test_what_is_written_is_read_back_part_by_part(tmp_path: Path) -> None:
    # contents holding CR LF, dashes and the boundary's text without its leading dashes
    contents = (b"DICM\r\n--\r\nb0undary\x00\xff" * 1000, b"", b"\r\n", b"x" * (3 << 20))
    out = tmp_path / "out"
    out.mkdir()
    found = split_related(body(tmp_path, parts(tmp_path, *contents)), related_content_type("b0undary"), out)
    assert [kind for kind, _ in found] == ["application/dicom"] * len(contents)
    assert [p.read_bytes() for _, p in found] == list(contents)


@pytest.mark.parametrize(
    ("content_type", "mutilate", "message"),
    [
        ("multipart/form-data; boundary=b0undary", None, "expected a multipart/related body"),
        ('multipart/related; type="application/dicom"', None, "names no"),
        (related_content_type("other"), None, "its boundary never appears"),
        (related_content_type("b0undary"), lambda b: b[: len(b) // 2], "not closed by the boundary"),
    ],
)
def test_a_broken_body_is_refused_with_the_reason(tmp_path: Path, content_type: str, mutilate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = body(tmp_path, parts(tmp_path, b"A" * 100, b"B" * 100))
    if mutilate is not None:
        path.write_bytes(mutilate(path.read_bytes()))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MultipartError, match=message):
        split_related(path, content_type, out)


def test_an_empty_body_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"")
    with pytest.raises(MultipartError, match="empty"):
        split_related(path, related_content_type("b0undary"), tmp_path)
