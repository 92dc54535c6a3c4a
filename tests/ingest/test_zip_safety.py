"""Zip archives: traversal, absolute paths, symlinks, bombs (ratio, lying header, count, total size)."""

from __future__ import annotations

import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

from neuronav.ingest import Limits, scan
from tests.ingest.conftest import make_zip, only_series, problems_of, write_series

MiB = 1024**2


def _good_members(tmp_path: Path) -> list[tuple[str, Path]]:
    files, _ = write_series(tmp_path / "src")
    return [(f"study/{p.name}", p) for p in files]


def _add_entry(archive: Path, info: zipfile.ZipInfo, data: bytes) -> None:
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(info, data)


def test_traversal_absolute_and_symlink_entries_are_refused_and_the_rest_is_read(tmp_path: Path) -> None:
    good = _good_members(tmp_path)
    archive = make_zip(tmp_path / "evil.zip", good)
    payload = good[0][1].read_bytes()
    _add_entry(archive, zipfile.ZipInfo("../../etc/evil.dcm"), payload)
    _add_entry(archive, zipfile.ZipInfo("study/../../escape.dcm"), payload)
    _add_entry(archive, zipfile.ZipInfo("/etc/passwd.dcm"), payload)
    _add_entry(archive, zipfile.ZipInfo("C:/Windows/evil.dcm"), payload)
    link = zipfile.ZipInfo("study/link.dcm")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _add_entry(archive, link, b"/etc/shadow")

    inv = scan([archive])
    assert len(only_series(inv).instances) == len(good)
    reasons = {p.source: p.problem for p in inv.problems}
    assert reasons == {
        f"{archive}!../../etc/evil.dcm": "unsafe zip entry path contains '..' (path traversal); skipped",
        f"{archive}!study/../../escape.dcm": "unsafe zip entry path contains '..' (path traversal); skipped",
        f"{archive}!/etc/passwd.dcm": "unsafe zip entry has an absolute path; skipped",
        f"{archive}!C:/Windows/evil.dcm": "unsafe zip entry has an absolute path; skipped",
        f"{archive}!study/link.dcm": "unsafe zip entry is a symbolic link; skipped",
    }


def test_symlink_entry_is_refused_whatever_the_creating_system(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", _good_members(tmp_path))
    link = zipfile.ZipInfo("study/link2.dcm")
    link.create_system = 0  # claims MS-DOS but carries Unix symlink mode bits
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _add_entry(archive, link, b"../../../../etc/passwd")
    inv = scan([archive])
    assert [p.problem for p in problems_of(inv, "link2.dcm")] == ["unsafe zip entry is a symbolic link; skipped"]


def test_zip_bomb_by_compression_ratio_is_refused_without_inflating(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [*_good_members(tmp_path), ("study/zeros.dcm", bytes(50 * MiB))])
    tracemalloc.start()
    try:
        inv = scan([archive])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(only_series(inv).instances) == 8
    [problem] = problems_of(inv, "zeros.dcm")
    assert problem.source == f"{archive}!study/zeros.dcm"
    assert "compression ratio" in problem.problem and "over the cap of 200:1 (zip bomb?)" in problem.problem
    assert peak < 8 * MiB


def _lie_about_size(archive: Path, name: str, declared: int) -> None:
    """Patch the uncompressed size of ``name`` in its local header and central directory record."""
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    assert raw[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + name_len] == name.encode():
            struct.pack_into("<I", raw, central + 24, declared)
            break
        central = raw.find(b"PK\x01\x02", central + 4)
    assert central != -1
    archive.write_bytes(bytes(raw))


def test_zip_bomb_with_lying_size_header_inflates_no_more_than_declared(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", [*_good_members(tmp_path), ("study/liar.dcm", bytes(50 * MiB))])
    _lie_about_size(archive, "study/liar.dcm", 4000)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("study/liar.dcm").file_size == 4000  # the ratio check cannot see it
    tracemalloc.start()
    try:
        inv = scan([archive])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(only_series(inv).instances) == 8
    [problem] = problems_of(inv, "liar.dcm")
    assert problem.source == f"{archive}!study/liar.dcm"
    assert problem.problem.startswith("zip entry does not match its header (Bad CRC-32")
    assert "lying size header (zip bomb?)" in problem.problem
    assert peak < 8 * MiB


def test_entry_count_cap(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", [(f"f{n}.txt", b"x") for n in range(12)])
    inv = scan([archive], limits=Limits(max_zip_entries=10))
    assert [(p.source, p.problem) for p in inv.problems] == [
        (str(archive), "zip archive has 12 entries, over the cap of 10")
    ]
    assert inv.files_seen == 0


def test_total_size_cap(tmp_path: Path) -> None:
    good = _good_members(tmp_path)
    archive = make_zip(tmp_path / "big.zip", good)
    total = sum(p.stat().st_size for _, p in good)
    inv = scan([archive], limits=Limits(max_zip_total_bytes=total - 1))
    [problem] = inv.problems
    assert problem.source == str(archive)
    assert problem.problem == f"zip archive would inflate to {total} bytes, over the cap (zip bomb?)"
    assert inv.all_series == []


def test_entry_size_cap(tmp_path: Path) -> None:
    good = _good_members(tmp_path)
    archive = make_zip(tmp_path / "a.zip", [*good, ("study/large.dcm", bytes(100_000))])
    inv = scan([archive], limits=Limits(max_zip_entry_bytes=50_000))
    assert len(only_series(inv).instances) == 8
    assert [p.problem for p in problems_of(inv, "large.dcm")] == ["zip entry of 100000 bytes is over the cap"]


def test_nested_and_corrupt_archives(tmp_path: Path) -> None:
    good = _good_members(tmp_path)
    inner = make_zip(tmp_path / "inner.zip", good)
    outer = make_zip(tmp_path / "outer.zip", [("inner.zip", inner)])
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + bytes(200))
    inv = scan([outer, broken])
    assert inv.all_series == []
    reasons = {p.source: p.problem for p in inv.problems}
    assert reasons[f"{outer}!inner.zip"] == "zip archive inside a zip archive; nested archives are not read"
    assert reasons[str(broken)].startswith("not a readable zip archive")


def test_corrupt_member_data_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    good = _good_members(tmp_path)
    archive = make_zip(tmp_path / "c.zip", good)
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(good[2][0])
    start = info.header_offset + 30 + len(info.filename) + 10
    raw[start : start + 64] = bytes(range(64))  # garble the deflate stream of one member
    archive.write_bytes(bytes(raw))
    inv = scan([archive])
    assert len(only_series(inv).instances) == 7
    [problem] = inv.problems
    assert problem.source == f"{archive}!{good[2][0]}"
    assert problem.problem.startswith("corrupt or unreadable zip entry (Error -3 while decompressing")
