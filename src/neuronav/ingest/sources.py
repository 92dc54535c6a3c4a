"""Turn user paths (files, folder trees, zip archives) into a stream of :class:`Source` s.

Zip archives are read in place, never extracted to disk. Entries that could escape a folder on
extraction (``..``, absolute paths, drive letters), symlinks, and entries or archives over the
size / ratio / count caps are refused with a :class:`Problem` naming the entry; the rest of the
archive is still read. Reading a member enforces its declared size, so a lying header cannot
make us inflate more than the cap.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from neuronav.errors import UnsafeInputError
from neuronav.ingest.limits import DEFAULT_LIMITS, Limits
from neuronav.ingest.model import Problem, Source

ZIP_MAGIC = b"PK\x03\x04"
SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _is_regular(path: str) -> bool:
    """A regular file (opening a FIFO or a device would block or read forever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ZIP_MAGIC
    except OSError:
        return False


def iter_sources(
    paths: Iterable[str | Path], problems: list[Problem], limits: Limits = DEFAULT_LIMITS
) -> Iterator[Source]:
    """Yield every candidate file under ``paths``; append a Problem for each thing refused."""
    for raw in paths:
        path = os.fspath(raw)
        if os.path.isdir(path):
            yield from _walk(path, problems, limits)
        elif _is_regular(path):
            yield from _file_or_zip(path, problems, limits)
        elif os.path.lexists(path):
            problems.append(Problem(path, "not a regular file or folder"))
        else:
            problems.append(Problem(path, "no such file or folder"))


def _walk(root: str, problems: list[Problem], limits: Limits) -> Iterator[Source]:
    def onerror(err: OSError) -> None:
        problems.append(Problem(str(err.filename), f"cannot read folder ({err.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        for name in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            problems.append(Problem(os.path.join(dirpath, name), "symbolic link to a folder skipped", "warning"))
            dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.startswith("._"):
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                problems.append(Problem(full, "symbolic link skipped", "warning"))
                continue
            if not _is_regular(full):
                problems.append(Problem(full, "not a regular file (device, pipe or socket); skipped"))
                continue
            yield from _file_or_zip(full, problems, limits)


def _file_or_zip(path: str, problems: list[Problem], limits: Limits) -> Iterator[Source]:
    if is_zip(path):
        yield from _zip_members(path, problems, limits)
    else:
        yield Source(path)


def _unsafe_member_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "entry name contains a NUL byte"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "entry has an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "entry path contains '..' (path traversal)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):  # Unix mode bits in the high word (set by Info-ZIP whatever create_system says)
        return "entry is a symbolic link"
    return None


def _zip_members(path: str, problems: list[Problem], limits: Limits) -> Iterator[Source]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        problems.append(Problem(path, f"not a readable zip archive ({exc})"))
        return
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            problems.append(
                Problem(path, f"zip archive has {len(infos)} entries, over the cap of {limits.max_zip_entries}")
            )
            return
        total = sum(i.file_size for i in infos)
        if total > limits.max_zip_total_bytes:
            problems.append(Problem(path, f"zip archive would inflate to {total} bytes, over the cap (zip bomb?)"))
            return
        for info in infos:
            where = f"{path}!{info.filename}"
            if info.is_dir():
                continue
            reason = _unsafe_member_reason(info)
            if reason:
                problems.append(Problem(where, f"unsafe zip {reason}; skipped"))
                continue
            base = PurePosixPath(info.filename.replace("\\", "/")).name
            if base in SKIP_NAMES or base.startswith("._") or info.filename.startswith("__MACOSX/"):
                continue
            if info.file_size > limits.max_zip_entry_bytes:
                problems.append(Problem(where, f"zip entry of {info.file_size} bytes is over the cap"))
                continue
            if info.file_size > 1024**2 and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
                problems.append(
                    Problem(
                        where,
                        f"zip entry compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                        f"is over the cap of {limits.max_zip_ratio:.0f}:1 (zip bomb?)",
                    )
                )
                continue
            if info.flag_bits & 0x1:
                problems.append(Problem(where, "encrypted zip entry; skipped"))
                continue
            yield Source(path, info.filename)


class SourceReader:
    """Reads sources' bytes, keeping zip archives open between members. Use as a context manager."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._zips: dict[str, zipfile.ZipFile] = {}

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()

    def read(self, source: Source) -> bytes:
        """The whole content of ``source``, enforcing the size caps."""
        if source.member is None:
            with open(source.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > self.limits.max_file_bytes:
                    raise UnsafeInputError(f"file of {size} bytes is over the cap", str(source))
                return fh.read()
        zf = self._zips.get(source.path)
        if zf is None:
            zf = self._zips[source.path] = zipfile.ZipFile(source.path)
        info = zf.getinfo(source.member)
        if info.file_size > self.limits.max_zip_entry_bytes:
            raise UnsafeInputError(f"zip entry of {info.file_size} bytes is over the cap", str(source))
        try:
            with zf.open(info) as fh:
                data = fh.read(info.file_size + 1)  # zipfile never yields more than declared
        except zipfile.BadZipFile as exc:
            if "CRC" in str(exc):
                raise UnsafeInputError(
                    f"zip entry does not match its header ({exc}): corrupt, or a lying size header (zip bomb?)",
                    str(source),
                ) from exc
            raise UnsafeInputError(f"corrupt zip entry ({exc})", str(source)) from exc
        except (zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise UnsafeInputError(f"corrupt or unreadable zip entry ({exc})", str(source)) from exc
        if len(data) > info.file_size:  # cannot happen with zipfile today; kept as a guard
            raise UnsafeInputError("zip entry inflates beyond its declared size (zip bomb?)", str(source))
        return data
