"""The encrypted object store: uploads and job outputs under server-generated keys, AES-256-GCM at rest.

On-disk layout (``<root>`` is ``NEURONAV_STORAGE_DIR``, default ``<data>/storage``; folders 0700, files 0600)::

    <root>/keys.json                      master key ids, the active one, retired ones: NEVER key material
    <root>/field-key.json                 the PHI field key, wrapped by a master key (see crypto.py)
    <root>/.lock                          flock taken around commits, deletes, re-wraps and keys.json updates
    <root>/tmp/*.partial                  writes in progress; after a crash anything here is garbage (sweep)
    <root>/objects/ab/cd/obj_abcd….hdr    header: one line of canonical JSON (below)
    <root>/objects/ab/cd/obj_abcd….dat    data: b"NNOBJv1\\n" then one record per chunk

Keys are ``obj_`` and 32 hex digits of a uuid4, made by the server; a name a user sends is never part
of a path. The two shard folders are the key's first four hex digits.

Header (``.hdr``), e.g. ``{"chunk_size":4194304,"format":1,"key":"obj_…","master_key_id":"mk-…",
"sealed":"…","size":123,"wrapped_key":"…"}``:

* ``wrapped_key``: the object's random data key, AES-GCM-wrapped by master key ``master_key_id`` and
  bound to the object key (:func:`neuronav.storage.crypto.wrap_key`);
* ``sealed``: ``{"created","kind","sha256"}`` (sha256 of the plaintext) AES-GCM-encrypted with a subkey
  of the data key, the other header fields as associated data. So every header field is authenticated,
  the checksum and kind are not readable without the keys, and the file must be byte-for-byte the
  canonical JSON (sorted keys, no spaces, one newline).

Data (``.dat``): the magic, then for chunk *i* the record ``nonce[12] ‖ ciphertext ‖ tag[16]``, bound to
(object key, *i*, final flag) — see :mod:`neuronav.storage.crypto`. Every chunk but the last holds
``chunk_size`` plaintext bytes, so the file length is fixed by the header: a short file is found
without decrypting anything.

Writes are atomic: :meth:`ObjectStore.put` streams into ``tmp/`` (same filesystem), fsyncs both files,
then under the lock renames the data file and then the header into place and fsyncs the folder. The
header rename is the commit point: an object exists exactly when its header does. Any exception
(including one raised by the input stream, or the size cap) removes everything it wrote. A hard
crash (kill -9, power cut) leaves at most ``tmp/*.partial`` files or, between the two renames, a
``.dat`` without header: invisible to readers, reported by :meth:`~ObjectStore.verify_all`, removed
by :meth:`~ObjectStore.sweep` (run it at start-up).

Key rotation (``neuronav keys rotate``): :meth:`ObjectStore.rotate` makes a new master key active and
rewrites each header (60-byte re-wrap, data untouched) atomically under the lock; run it again after
an interruption and it continues where it stopped. :meth:`ObjectStore.retire` marks an old key
retired in ``keys.json`` only when no header (and not the field key) still uses it; after that the
operator drops it from ``NEURONAV_OLD_MASTER_KEYS``. Retire scans under the lock and every commit
checks ``keys.json`` under the same lock, so a process still running with the old key active cannot
slip a new object under it afterwards (its puts fail until it is restarted with the new key).
Procedure: set the new ``NEURONAV_MASTER_KEY`` and the old one in ``NEURONAV_OLD_MASTER_KEYS``,
restart every process, ``neuronav keys rotate``, retire the old id, remove it from the environment.

Reads authenticate every chunk before releasing it, check the plaintext sha256 at the end, and raise
:class:`StorageIntegrityError` (naming the object) on any alteration. A streamed read may have handed
out earlier, authentic chunks before a later chunk fails: treat that error as fatal for the whole object.

Threat model (details in :mod:`neuronav.storage.crypto`): someone who can read or modify ``<root>``,
its backups or the disk, but does not hold the master keys, learns only object count, sizes, write
times and master key ids, and any change they make — a flipped byte, reordered/cut chunks, a header
or data file swapped with another object's — is detected. Not covered: removing whole objects or the
whole store (the database must cross-check the keys it references), replacing a header with its own
pre-rotation copy (harmless: still authentic, but ``retire`` then refuses until ``rotate`` runs
again), denial of service, and anyone holding the master keys or running code in the service.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict

from neuronav.errors import ConfigError
from neuronav.storage.crypto import (
    CHUNK_OVERHEAD,
    DEFAULT_CHUNK_SIZE,
    ChunkCipher,
    Keyring,
    MasterKey,
    field_key_id,
    header_key,
    keyring_from_settings,
    new_data_key,
    seal,
    unseal,
    unwrap_key,
    wrap_key,
)
from neuronav.storage.errors import (
    ObjectNotFoundError,
    StorageError,
    StorageIntegrityError,
    UploadTooLargeError,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from neuronav.config import Settings

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"NNOBJv1\n"
MAX_CHUNK_SIZE = 64 * 1024 * 1024
KEY_PATTERN = re.compile(r"obj_[0-9a-f]{32}")
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_PUBLIC_FIELDS = frozenset({"chunk_size", "format", "key", "master_key_id", "size", "wrapped_key"})
_PRIVATE_FIELDS = frozenset({"created", "kind", "sha256"})
_HEADER_SUFFIX = ".hdr"
_DATA_SUFFIX = ".dat"


class Readable(Protocol):
    """Anything with ``read(n) -> bytes``: a file, ``UploadFile.file``, a socket file."""

    def read(self, size: int = ..., /) -> bytes | None: ...


@dataclass(frozen=True)
class EncryptedObject:
    """What the (authenticated) header says about an object."""

    key: str
    kind: str
    size: int
    sha256: str
    created: datetime
    master_key_id: str
    chunk_size: int


@dataclass(frozen=True)
class VerifyProblem:
    """One object that failed verification, and why."""

    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


@dataclass(frozen=True)
class RotationReport:
    """Result of :meth:`ObjectStore.rotate`."""

    master_key_id: str
    rewrapped: int
    already_current: int
    problems: list[VerifyProblem] = field(default_factory=list)


@dataclass(frozen=True)
class ObjectPaths:
    header: Path
    data: Path


@dataclass(frozen=True)
class _Header:
    info: EncryptedObject
    data_key: bytes


class _KeyEntry(TypedDict):
    id: str
    added: str
    retired: str | None


class _KeysState(TypedDict):
    format: int
    active: str
    keys: list[_KeyEntry]


# -- helpers -----------------------------------------------------------------------------------------------------


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _chunk_count(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def _data_length(size: int, chunk_size: int) -> int:
    return len(MAGIC) + size + CHUNK_OVERHEAD * _chunk_count(size, chunk_size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path) -> io.BufferedWriter:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def _write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{path.name}.{uuid.uuid4().hex}.partial"
    try:
        with _create(tmp) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _str_field(fields: dict[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise StorageIntegrityError(f"header field {name!r} is not text")
    return value


def _int_field(fields: dict[str, object], name: str) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StorageIntegrityError(f"header field {name!r} is not a non-negative integer")
    return value


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ObjectNotFoundError(f"{key!r} is not a storage key (obj_ and 32 hex digits)")


def _object_context(key: str) -> bytes:
    return b"obj\x00" + key.encode("ascii")


def _parse_header(raw: bytes, key: str) -> dict[str, object]:
    """The header's fields, checked for shape only (nothing authenticated yet)."""
    try:
        fields = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StorageIntegrityError("header is not valid JSON", key) from None
    if not isinstance(fields, dict) or set(fields) != _PUBLIC_FIELDS | {"sealed"}:
        raise StorageIntegrityError("header does not have the expected fields", key)
    if _canonical(fields) != raw:
        raise StorageIntegrityError("header is not in canonical form (altered)", key)
    try:
        if _int_field(fields, "format") != FORMAT:
            raise StorageIntegrityError(f"unknown header format {fields['format']!r}")
        if _str_field(fields, "key") != key:
            raise StorageIntegrityError(f"header belongs to {fields['key']!r} (swapped or copied)")
        chunk_size = _int_field(fields, "chunk_size")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise StorageIntegrityError(f"header chunk size {chunk_size} is out of range")
        _int_field(fields, "size")
        _str_field(fields, "master_key_id")
        _str_field(fields, "wrapped_key")
        _str_field(fields, "sealed")
    except StorageIntegrityError as exc:
        raise StorageIntegrityError(exc.problem, key) from None
    return fields


def _build_header(master: MasterKey, info: EncryptedObject, data_key: bytes) -> bytes:
    public: dict[str, object] = {
        "chunk_size": info.chunk_size,
        "format": FORMAT,
        "key": info.key,
        "master_key_id": master.id,
        "size": info.size,
        "wrapped_key": wrap_key(master, data_key, _object_context(info.key)),
    }
    private = {"created": info.created.isoformat(), "kind": info.kind, "sha256": info.sha256}
    sealed = seal(header_key(data_key), _canonical(private), _canonical(public))
    return _canonical({**public, "sealed": sealed})


# -- reading -----------------------------------------------------------------------------------------------------


class ObjectReader(io.RawIOBase):
    """A read-only binary stream of one object's plaintext; every chunk is authenticated before release.

    ``read``/``readinto`` behave like a file; iterating yields decrypted chunks (not lines), e.g. for a
    streaming HTTP response. At the end the sha256 of everything read is compared with the header.
    """

    def __init__(self, path: Path, header: _Header) -> None:
        super().__init__()
        self.info = header.info
        self._key = header.info.key
        self._cipher = ChunkCipher(header.data_key, self._key)
        self._chunks = _chunk_count(header.info.size, header.info.chunk_size)
        self._index = 0
        self._pending = memoryview(b"")
        self._hash = hashlib.sha256()
        self._failed: StorageIntegrityError | None = None
        try:
            self._fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise StorageIntegrityError("data file is missing", self._key) from None
        try:
            length = os.fstat(self._fh.fileno()).st_size
            expected = _data_length(header.info.size, header.info.chunk_size)
            if length != expected:
                raise StorageIntegrityError(f"data file has {length} bytes, expected {expected} (truncated or altered)")
            if self._fh.read(len(MAGIC)) != MAGIC:
                raise StorageIntegrityError("data file does not start with the NNOBJv1 magic")
        except StorageIntegrityError as exc:
            self._fh.close()
            raise StorageIntegrityError(exc.problem, self._key) from None
        except BaseException:
            self._fh.close()
            raise
        self._record = bytearray(min(header.info.size, header.info.chunk_size) + CHUNK_OVERHEAD)

    def readable(self) -> bool:
        return True

    def _next_record(self) -> tuple[memoryview, bool] | None:
        """The next raw record and its final flag, or None after the last one was consumed."""
        if self._index >= self._chunks:
            return None
        final = self._index == self._chunks - 1
        plain = self.info.chunk_size if not final else self.info.size - self.info.chunk_size * (self._chunks - 1)
        view = memoryview(self._record)[: plain + CHUNK_OVERHEAD]
        got = 0
        while got < len(view):
            n = self._fh.readinto(view[got:])
            if not n:
                raise StorageIntegrityError(f"data file ends inside chunk {self._index}", self._key)
            got += n
        return view, final

    def _finish(self) -> None:
        if self._fh.read(1):
            raise StorageIntegrityError("data file has bytes after the final chunk", self._key)
        if self._hash.hexdigest() != self.info.sha256:
            raise StorageIntegrityError("sha256 of the plaintext differs from the header", self._key)

    def _step(self, out: memoryview | None) -> bytes | int | None:
        """Open the next chunk: its plaintext (or its length, written into ``out``); None at the end.

        After an integrity failure the reader stays failed: every later call raises the same error.
        """
        if self.closed:
            raise ValueError("read from a closed ObjectReader")
        if self._failed is not None:
            raise self._failed
        try:
            record = self._next_record()
            if record is None:
                return None
            view, final = record
            try:
                result: bytes | int
                if out is None:
                    plain = self._cipher.open(self._index, final, view)
                    self._hash.update(plain)
                    result = plain
                else:
                    length = self._cipher.open_into(self._index, final, view, out)
                    self._hash.update(out[:length])
                    result = length
            except StorageIntegrityError as exc:
                raise StorageIntegrityError(exc.problem, self._key) from None
            self._index += 1
            if final:
                self._finish()
            return result
        except StorageIntegrityError as exc:
            self._failed = exc
            raise

    def _next_chunk(self) -> bytes | None:
        chunk = self._step(None)
        assert not isinstance(chunk, int)
        return chunk

    def drain(self) -> None:
        """Authenticate and checksum the rest of the object without keeping it (used by verify)."""
        out = memoryview(bytearray(len(self._record)))
        self._pending = memoryview(b"")
        while self._step(out) is not None:
            pass

    def iter_chunks(self) -> Iterator[bytes]:
        """The remaining plaintext, one decrypted chunk at a time."""
        if self._pending:
            rest, self._pending = bytes(self._pending), memoryview(b"")
            yield rest
        while (chunk := self._next_chunk()) is not None:
            if chunk:
                yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks()

    def __next__(self) -> bytes:
        if self._pending:
            rest, self._pending = bytes(self._pending), memoryview(b"")
            return rest
        while (chunk := self._next_chunk()) is not None:
            if chunk:
                return chunk
        raise StopIteration

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all the rest when negative); fewer only at the end, like a regular file."""
        if size is None or size < 0:
            return self.readall()
        parts: list[bytes] = []
        need = size
        while need > 0:
            if not self._pending:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            piece = self._pending[:need]
            parts.append(bytes(piece))
            self._pending = self._pending[len(piece) :]
            need -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        return b"".join(self.iter_chunks())

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        target = memoryview(buffer).cast("B")
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        fh = getattr(self, "_fh", None)  # absent when __init__ failed to open the data file
        if fh is not None:
            fh.close()
        self._pending = memoryview(b"")
        super().close()


# -- the store ---------------------------------------------------------------------------------------------------


class ObjectStore:
    """Encrypted, checksummed, atomically written objects under ``root`` (layout in the module docstring)."""

    def __init__(self, root: Path, keyring: Keyring, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
        self.root = Path(root)
        self.chunk_size = chunk_size
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        for folder in (self.root, self._objects, self._tmp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._keyring = keyring
        self._field_key: bytes | None = None
        self._sync_keys_file()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ObjectStore:
        """The store at ``settings.storage`` with :func:`~neuronav.storage.crypto.keyring_from_settings`."""
        if settings is None:
            from neuronav.config import get_settings

            settings = get_settings()
        return cls(settings.storage, keyring_from_settings(settings))

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    # -- paths and locking ----------------------------------------------------------------------------------

    def object_paths(self, key: str) -> ObjectPaths:
        """Where an object's two files live (for backups, which copy them still encrypted)."""
        _check_key(key)
        hexpart = key[4:]
        shard = self._objects / hexpart[:2] / hexpart[2:4]
        return ObjectPaths(shard / f"{key}{_HEADER_SUFFIX}", shard / f"{key}{_DATA_SUFFIX}")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _ensure_shard(self, shard: Path) -> None:
        """Create the two shard folders durably (fsync each new folder's parent)."""
        for folder in (shard.parent, shard):
            if not folder.is_dir():
                folder.mkdir(mode=0o700, exist_ok=True)
                _fsync_dir(folder.parent)

    def _scan(self) -> Iterator[tuple[str, bool, bool]]:
        """(key, has header, has data) for every object-looking file pair, sorted by key."""
        for first in sorted(os.scandir(self._objects), key=lambda e: e.name):
            if not first.is_dir(follow_symlinks=False):
                continue
            for second in sorted(os.scandir(first.path), key=lambda e: e.name):
                if not second.is_dir(follow_symlinks=False):
                    continue
                found: dict[str, set[str]] = {}
                for entry in os.scandir(second.path):
                    stem, dot, suffix = entry.name.partition(".")
                    if dot and KEY_PATTERN.fullmatch(stem) and "." + suffix in (_HEADER_SUFFIX, _DATA_SUFFIX):
                        found.setdefault(stem, set()).add("." + suffix)
                for key in sorted(found):
                    yield key, _HEADER_SUFFIX in found[key], _DATA_SUFFIX in found[key]

    # -- keys.json ------------------------------------------------------------------------------------------

    def _keys_path(self) -> Path:
        return self.root / "keys.json"

    def _load_keys_state(self) -> _KeysState | None:
        path = self._keys_path()
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_bytes())
            entries: list[_KeyEntry] = [
                {
                    "id": str(e["id"]),
                    "added": str(e["added"]),
                    "retired": None if e["retired"] is None else str(e["retired"]),
                }
                for e in data["keys"]
            ]
            return {"format": int(data["format"]), "active": str(data["active"]), "keys": entries}
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{path} is not a valid keys file: {exc}") from exc

    def _sync_keys_file(self) -> None:
        """Record this keyring's ids and active key in keys.json (ids only, never key material)."""
        with self._lock():
            state = self._load_keys_state()
            before = _canonical(state) if state is not None else b""
            if state is None:
                state = {"format": 1, "active": self._keyring.active.id, "keys": []}
            known = {entry["id"]: entry for entry in state["keys"]}
            for key in self._keyring:
                if key.id not in known:
                    entry: _KeyEntry = {"id": key.id, "added": _now(), "retired": None}
                    state["keys"].append(entry)
                    known[key.id] = entry
                elif known[key.id]["retired"] is not None and key.id != self._keyring.active.id:
                    log.warning("master key %s was retired; drop it from NEURONAV_OLD_MASTER_KEYS", key.id)
            active = self._keyring.active.id
            if known[active]["retired"] is not None:
                raise ConfigError(
                    f"NEURONAV_MASTER_KEY is master key {active}, which was retired; supply a new key "
                    "and run `neuronav keys rotate`"
                )
            if state["active"] != active:
                log.info(
                    "active master key is now %s (was %s); run `neuronav keys rotate` to re-wrap older objects",
                    active,
                    state["active"],
                )
                state["active"] = active
            if _canonical(state) != before:
                _write_atomic(self._keys_path(), _canonical(state), self._tmp)

    def _check_not_retired(self, master: MasterKey) -> None:
        """Refuse to commit under a key retired meanwhile (call with the lock held; retire takes it too)."""
        state = self._load_keys_state()
        if state is not None and any(e["id"] == master.id and e["retired"] for e in state["keys"]):
            raise StorageError(
                f"master key {master.id} was retired by another process; restart with the new NEURONAV_MASTER_KEY"
            )

    # -- headers --------------------------------------------------------------------------------------------

    def _read_header_bytes(self, key: str) -> bytes:
        try:
            return self.object_paths(key).header.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no stored object {key}") from None

    def _open_header(self, key: str, raw: bytes | None = None) -> _Header:
        """The authenticated header and data key of ``key``."""
        raw = self._read_header_bytes(key) if raw is None else raw
        fields = _parse_header(raw, key)
        master = self._keyring.get(_str_field(fields, "master_key_id"))
        public = {name: fields[name] for name in _PUBLIC_FIELDS}
        try:
            data_key = unwrap_key(master, _str_field(fields, "wrapped_key"), _object_context(key))
            private_raw = unseal(header_key(data_key), _str_field(fields, "sealed"), _canonical(public), "header")
        except StorageIntegrityError as exc:
            raise StorageIntegrityError(exc.problem, key) from None
        private = json.loads(private_raw)
        if not isinstance(private, dict) or set(private) != _PRIVATE_FIELDS:
            raise StorageIntegrityError("sealed header does not have the expected fields", key)
        info = EncryptedObject(
            key=key,
            kind=str(private["kind"]),
            size=_int_field(fields, "size"),
            sha256=str(private["sha256"]),
            created=datetime.fromisoformat(str(private["created"])),
            master_key_id=master.id,
            chunk_size=_int_field(fields, "chunk_size"),
        )
        return _Header(info, data_key)

    # -- objects --------------------------------------------------------------------------------------------

    def put(
        self, stream: Readable | bytes | bytearray | memoryview, *, kind: str, max_bytes: int | None = None
    ) -> EncryptedObject:
        """Encrypt and store a stream (or bytes) under a new server-generated key.

        ``kind`` is a short lowercase label (``upload``, ``nifti``, ``report``…). More than ``max_bytes``
        plaintext bytes raises :class:`UploadTooLargeError`. On any error nothing is left behind.
        """
        if not KIND_PATTERN.fullmatch(kind):
            raise ValueError(f"kind {kind!r} must be 1-32 lowercase letters, digits, '_' or '-'")
        key = f"obj_{uuid.uuid4().hex}"
        paths = self.object_paths(key)
        master = self._keyring.active
        data_key = new_data_key()
        cipher = ChunkCipher(data_key, key)
        chunk_size = self.chunk_size
        hasher = hashlib.sha256()
        total = 0

        if isinstance(stream, bytes | bytearray | memoryview):
            whole = memoryview(stream).cast("B")
            position = 0

            def read_chunk() -> bytes | memoryview:
                nonlocal position
                piece = whole[position : position + chunk_size]
                position += len(piece)
                return piece

        else:
            source = stream

            def read_chunk() -> bytes | memoryview:
                parts: list[bytes] = []
                need = chunk_size
                while need > 0:
                    got = source.read(need)
                    if got is None:
                        raise StorageError("the input stream is non-blocking and has no data ready")
                    if not got:
                        break
                    parts.append(got)
                    need -= len(got)
                return parts[0] if len(parts) == 1 else b"".join(parts)

        def next_chunk() -> bytes | memoryview:
            nonlocal total
            piece = read_chunk()
            total += len(piece)
            if max_bytes is not None and total > max_bytes:
                raise UploadTooLargeError(f"upload is larger than the limit of {max_bytes} bytes")
            return piece

        token = uuid.uuid4().hex[:8]
        tmp_data = self._tmp / f"{key}.{token}{_DATA_SUFFIX}.partial"
        tmp_header = self._tmp / f"{key}.{token}{_HEADER_SUFFIX}.partial"
        data_placed = False
        record = bytearray(chunk_size + CHUNK_OVERHEAD)
        try:
            with _create(tmp_data) as fh:
                fh.write(MAGIC)
                index = 0
                current = next_chunk()
                while True:
                    following = next_chunk() if len(current) == chunk_size else b""
                    final = len(following) == 0
                    hasher.update(current)
                    fh.write(cipher.seal_into(index, final, current, record))
                    if final:
                        break
                    current, index = following, index + 1
                fh.flush()
                os.fsync(fh.fileno())
            info = EncryptedObject(
                key=key,
                kind=kind,
                size=total,
                sha256=hasher.hexdigest(),
                created=datetime.now(UTC),
                master_key_id=master.id,
                chunk_size=chunk_size,
            )
            with _create(tmp_header) as fh:
                fh.write(_build_header(master, info, data_key))
                fh.flush()
                os.fsync(fh.fileno())
            self._ensure_shard(paths.header.parent)
            with self._lock():
                self._check_not_retired(master)
                os.replace(tmp_data, paths.data)
                data_placed = True
                os.replace(tmp_header, paths.header)  # the commit point
            _fsync_dir(paths.header.parent)
            return info
        except BaseException:
            if data_placed and not paths.header.exists():
                paths.data.unlink(missing_ok=True)
            raise
        finally:
            tmp_data.unlink(missing_ok=True)
            tmp_header.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether a committed object has this key (no decryption; a corrupted object still exists)."""
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            return False
        return self.object_paths(key).header.exists()

    def stat(self, key: str) -> EncryptedObject:
        """The authenticated header of ``key``."""
        return self._open_header(key).info

    def open(self, key: str) -> ObjectReader:
        """A stream of the plaintext (use as a context manager)."""
        header = self._open_header(key)
        return ObjectReader(self.object_paths(key).data, header)

    def read_bytes(self, key: str) -> bytes:
        """The whole plaintext (small objects; stream big ones with :meth:`open`)."""
        with self.open(key) as reader:
            return reader.readall()

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove an object (header first, so it vanishes atomically)."""
        paths = self.object_paths(key)
        with self._lock():
            try:
                paths.header.unlink()
            except FileNotFoundError:
                if not missing_ok:
                    raise ObjectNotFoundError(f"no stored object {key}") from None
            paths.data.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            _fsync_dir(paths.header.parent)

    def iter_keys(self) -> Iterator[str]:
        """Keys of every committed object, sorted."""
        for key, has_header, _ in self._scan():
            if has_header:
                yield key

    # -- verification ---------------------------------------------------------------------------------------

    def verify(self, key: str) -> VerifyProblem | None:
        """None when the object decrypts, authenticates and matches its sha256; else what is wrong."""
        try:
            header = self._open_header(key)
            with ObjectReader(self.object_paths(key).data, header) as reader:
                reader.drain()
        except StorageIntegrityError as exc:
            return VerifyProblem(key, exc.problem)
        except StorageError as exc:
            return VerifyProblem(key, str(exc))
        except OSError as exc:
            return VerifyProblem(key, f"cannot read: {exc}")
        return None

    def verify_all(self) -> list[VerifyProblem]:
        """Every problem in the store: corrupted objects and data files left without a header."""
        problems = []
        for key, has_header, _ in self._scan():
            if not has_header:
                problems.append(VerifyProblem(key, "data file without header (interrupted write; sweep removes it)"))
            elif (problem := self.verify(key)) is not None:
                problems.append(problem)
        return problems

    def sweep(self, max_idle_s: float = 3600.0) -> list[Path]:
        """Remove debris of crashed writes: data files without header, temp files idle for ``max_idle_s``."""
        removed = []
        with self._lock():
            for key, has_header, has_data in self._scan():
                if has_data and not has_header:
                    path = self.object_paths(key).data
                    path.unlink(missing_ok=True)
                    removed.append(path)
            cutoff = time.time() - max_idle_s
            for entry in os.scandir(self._tmp):
                if entry.name.endswith(".partial") and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    Path(entry.path).unlink(missing_ok=True)
                    removed.append(Path(entry.path))
        return removed

    # -- master keys ----------------------------------------------------------------------------------------

    def keys_in_use(self) -> dict[str, int]:
        """How many objects each master key id wraps (``"?"`` counts unreadable headers); the field key counts too."""
        counts: dict[str, int] = {}
        for key in self.iter_keys():
            try:
                master_id = _str_field(_parse_header(self._read_header_bytes(key), key), "master_key_id")
            except ObjectNotFoundError:
                continue
            except StorageIntegrityError:
                master_id = "?"
            counts[master_id] = counts.get(master_id, 0) + 1
        field_state = self._load_field_key_state()
        if field_state is not None:
            counts[field_state["master_key_id"]] = counts.get(field_state["master_key_id"], 0) + 1
        return counts

    def rotate(self, new_master: MasterKey | None = None) -> RotationReport:
        """Make ``new_master`` active and re-wrap every data key (and the field key) under it.

        Data is never re-encrypted; each header is replaced atomically. Safe to run again after an
        interruption (objects already under the new key are skipped). Objects that fail to re-wrap
        are reported, not fatal; they keep the old key, so :meth:`retire` will still refuse it.
        """
        if new_master is not None and new_master.id != self._keyring.active.id:
            self._keyring = self._keyring.with_active(new_master)
            self._sync_keys_file()
        target = self._keyring.active
        rewrapped = current = 0
        problems = []
        for key in self.iter_keys():
            try:
                if self._rewrap(key, target):
                    rewrapped += 1
                else:
                    current += 1
            except ObjectNotFoundError:
                continue  # deleted meanwhile
            except StorageError as exc:
                problems.append(VerifyProblem(key, exc.problem if isinstance(exc, StorageIntegrityError) else str(exc)))
        self._rewrap_field_key(target)
        return RotationReport(target.id, rewrapped, current, problems)

    def _rewrap(self, key: str, target: MasterKey) -> bool:
        paths = self.object_paths(key)
        raw = self._read_header_bytes(key)
        if _str_field(_parse_header(raw, key), "master_key_id") == target.id:
            return False
        header = self._open_header(key, raw)
        new = _build_header(target, header.info, header.data_key)
        tmp = self._tmp / f"{key}.{uuid.uuid4().hex[:8]}{_HEADER_SUFFIX}.partial"
        try:
            with _create(tmp) as fh:
                fh.write(new)
                fh.flush()
                os.fsync(fh.fileno())
            with self._lock():
                try:
                    unchanged = paths.header.read_bytes() == raw
                except FileNotFoundError:
                    unchanged = False
                if unchanged:
                    os.replace(tmp, paths.header)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(paths.header.parent)
        return unchanged

    def retire(self, master_id: str) -> None:
        """Mark a master key retired; refused while any object (or the field key) still uses it."""
        if master_id == self._keyring.active.id:
            raise StorageError(f"master key {master_id} is the active key; rotate to a new key before retiring it")
        with self._lock():
            state = self._load_keys_state()
            entry = next((e for e in state["keys"] if e["id"] == master_id), None) if state else None
            if state is None or entry is None:
                raise StorageError(f"master key {master_id} is not listed in {self._keys_path()}")
            in_use = self.keys_in_use()
            if in_use.get(master_id, 0) or in_use.get("?", 0):
                raise StorageError(
                    f"master key {master_id} still wraps {in_use.get(master_id, 0)} object(s) and "
                    f"{in_use.get('?', 0)} header(s) are unreadable; run `neuronav keys rotate` "
                    "and `neuronav verify` first"
                )
            if entry["retired"] is None:
                entry["retired"] = _now()
                _write_atomic(self._keys_path(), _canonical(state), self._tmp)
        if master_id in self._keyring:
            self._keyring = self._keyring.without(master_id)

    # -- PHI field key --------------------------------------------------------------------------------------

    def _field_key_path(self) -> Path:
        return self.root / "field-key.json"

    def _load_field_key_state(self) -> dict[str, str] | None:
        path = self._field_key_path()
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_bytes())
            return {name: str(data[name]) for name in ("id", "master_key_id", "wrapped_key")}
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageIntegrityError(f"{path} is not a valid field key file: {exc}") from exc

    @staticmethod
    def _field_context(field_id: str) -> bytes:
        return b"field\x00" + field_id.encode("ascii")

    def _write_field_key(self, master: MasterKey, key: bytes) -> None:
        fid = field_key_id(key)
        state = {
            "format": 1,
            "id": fid,
            "master_key_id": master.id,
            "wrapped_key": wrap_key(master, key, self._field_context(fid)),
        }
        _write_atomic(self._field_key_path(), _canonical(state), self._tmp)

    def _unwrap_field_key(self, state: dict[str, str]) -> bytes:
        master = self._keyring.get(state["master_key_id"])
        key = unwrap_key(master, state["wrapped_key"], self._field_context(state["id"]))
        if field_key_id(key) != state["id"]:
            raise StorageIntegrityError("field key does not match its id")
        return key

    def field_key(self) -> bytes:
        """The key for :func:`~neuronav.storage.crypto.encrypt_field`: created once, kept wrapped in field-key.json."""
        if self._field_key is None:
            with self._lock():
                state = self._load_field_key_state()
                if state is None:
                    self._check_not_retired(self._keyring.active)
                    key = new_data_key()
                    self._write_field_key(self._keyring.active, key)
                else:
                    key = self._unwrap_field_key(state)
            self._field_key = key
        return self._field_key

    def _rewrap_field_key(self, target: MasterKey) -> None:
        with self._lock():
            state = self._load_field_key_state()
            if state is not None and state["master_key_id"] != target.id:
                self._write_field_key(target, self._unwrap_field_key(state))
