"""The encrypted object store: round trips, on-disk secrecy, tamper detection, atomic writes, size cap."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from neuronav.config import Settings
from neuronav.errors import InputError
from neuronav.storage import (
    Keyring,
    MasterKey,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    StorageIntegrityError,
    UploadTooLargeError,
)
from neuronav.storage.crypto import CHUNK_OVERHEAD, ChunkCipher
from neuronav.storage.store import MAGIC

CHUNK = 64


def pattern(size: int, seed: int = 0) -> bytes:
    """Recognisable, non-repeating plaintext (so a leak of any 16-byte window can be searched for)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey.from_bytes(bytes(range(32))))


@pytest.fixture
def store(tmp_path: Path, keyring: Keyring) -> ObjectStore:
    return ObjectStore(tmp_path / "storage", keyring, chunk_size=CHUNK)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def object_files(store: ObjectStore) -> list[Path]:
    return [p for p in all_files(store.root) if p.name not in ("keys.json", ".lock", "field-key.json")]


class TrickleStream(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read (like a socket), optionally failing part way."""

    def __init__(self, data: bytes, step: int = 7, fail_after: int | None = None) -> None:
        self._data = data
        self._pos = 0
        self._step = step
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


SIZES = [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 3]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_bytes_and_streams(store: ObjectStore, size: int) -> None:
    data = pattern(size)
    a = store.put(data, kind="upload")
    b = store.put(TrickleStream(data), kind="upload")
    c = store.put(io.BytesIO(data), kind="nifti")
    for obj in (a, b, c):
        assert store.read_bytes(obj.key) == data
        assert obj.size == size and obj.sha256 == hashlib.sha256(data).hexdigest()
        assert store.stat(obj.key) == obj and store.verify(obj.key) is None
        assert obj.chunk_size == CHUNK and obj.master_key_id == store.keyring.active.id
    assert c.kind == "nifti" and len({a.key, b.key, c.key}) == 3
    chunks = -(-size // CHUNK) or 1
    assert store.object_paths(a.key).data.stat().st_size == len(MAGIC) + size + chunks * CHUNK_OVERHEAD


def test_reader_behaves_like_a_binary_file(store: ObjectStore) -> None:
    data = pattern(5 * CHUNK + 3)
    key = store.put(data, kind="upload").key
    with store.open(key) as reader:
        assert reader.read(10) == data[:10] and reader.read(CHUNK) == data[10 : 10 + CHUNK]
        assert reader.read() == data[10 + CHUNK :] and reader.read(5) == b""
    with store.open(key) as reader:
        chunks = list(reader)
    assert b"".join(chunks) == data and all(len(c) == CHUNK for c in chunks[:-1])
    with store.open(key) as reader:
        out = io.BytesIO()
        shutil.copyfileobj(reader, out, 13)
        assert out.getvalue() == data
    with store.open(key) as reader:
        buffered = io.BufferedReader(reader, 17)
        assert buffered.read(20) == data[:20] and buffered.read() == data[20:]
    assert reader.closed


def test_multi_chunk_object_with_the_default_chunk_size(tmp_path: Path, keyring: Keyring) -> None:
    store = ObjectStore(tmp_path / "s", keyring)
    data = os.urandom(9 * 1024 * 1024 + 5)  # three 4 MiB chunks
    obj = store.put(io.BytesIO(data), kind="upload")
    assert store.read_bytes(obj.key) == data and obj.chunk_size == 4 * 1024 * 1024
    assert store.verify_all() == []


def test_keys_are_server_generated_and_sharded(store: ObjectStore) -> None:
    obj = store.put(b"x", kind="upload")
    assert obj.key.startswith("obj_") and len(obj.key) == 36
    hexpart = obj.key[4:]
    paths = store.object_paths(obj.key)
    assert paths.header == store.root / "objects" / hexpart[:2] / hexpart[2:4] / f"{obj.key}.hdr"
    assert paths.data.name == f"{obj.key}.dat"
    for bad in ["../../etc/passwd", "obj_" + "g" * 32, "OBJ_" + "a" * 32, "", "obj_" + "a" * 31, obj.key + "\n"]:
        assert not store.exists(bad)
        with pytest.raises(ObjectNotFoundError):
            store.read_bytes(bad)
    with pytest.raises(ValueError):
        store.put(b"x", kind="../evil")


def test_files_are_private(store: ObjectStore) -> None:
    obj = store.put(pattern(200), kind="upload")
    paths = store.object_paths(obj.key)
    for path in (paths.header, paths.data, store.root / "keys.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (store.root, store.root / "objects", paths.header.parent, store.root / "tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_stored_bytes_do_not_contain_the_plaintext(store: ObjectStore) -> None:
    data = pattern(10 * CHUNK, seed=7)
    obj = store.put(data, kind="upload")
    text = b"PatientName=Doe^Jane " * 20
    store.put(text, kind="report")
    digest = obj.sha256
    for path in all_files(store.root):
        raw = path.read_bytes()
        for start in range(0, len(data) - 16, 16):
            assert data[start : start + 16] not in raw, path
        assert b"Doe^Jane" not in raw and digest.encode() not in raw and b"upload" not in raw, path


def test_iter_keys_exists_and_delete(store: ObjectStore) -> None:
    keys = sorted(store.put(pattern(i), kind="upload").key for i in range(5))
    assert list(store.iter_keys()) == keys and all(store.exists(k) for k in keys)
    store.delete(keys[0])
    assert not store.exists(keys[0]) and list(store.iter_keys()) == keys[1:]
    assert not store.object_paths(keys[0]).data.exists()
    with pytest.raises(ObjectNotFoundError):
        store.read_bytes(keys[0])
    with pytest.raises(ObjectNotFoundError):
        store.delete(keys[0])
    store.delete(keys[0], missing_ok=True)


def test_concurrent_puts(store: ObjectStore) -> None:
    datas = [pattern(3 * CHUNK + i, seed=i) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        objs = list(pool.map(lambda d: store.put(d, kind="upload"), datas))
    assert [store.read_bytes(o.key) for o in objs] == datas and store.verify_all() == []


# -- tampering ---------------------------------------------------------------------------------------------------


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def assert_corrupt(store: ObjectStore, key: str, *others: str) -> None:
    with pytest.raises(StorageIntegrityError) as info:
        store.read_bytes(key)
    assert info.value.key == key and key in str(info.value)
    problems = store.verify_all()
    assert [p.key for p in problems] == sorted([key, *others])
    assert store.verify(key) is not None


@pytest.fixture
def two_objects(store: ObjectStore) -> tuple[str, str, bytes]:
    data = pattern(3 * CHUNK + 5)
    first = store.put(data, kind="upload").key
    second = store.put(pattern(3 * CHUNK + 5, seed=1), kind="upload").key
    return first, second, data


def test_every_ciphertext_byte_is_authenticated(store: ObjectStore, two_objects: tuple[str, str, bytes]) -> None:
    key, other, _ = two_objects
    path = store.object_paths(key).data
    original = path.read_bytes()
    for offset in range(len(original)):
        flip(path, offset)
        assert store.verify(key) is not None, offset
        path.write_bytes(original)
    flip(path, len(original) // 2, 0x80)
    assert_corrupt(store, key)
    assert store.read_bytes(other) == pattern(3 * CHUNK + 5, seed=1)


def test_every_header_byte_is_authenticated(store: ObjectStore, two_objects: tuple[str, str, bytes]) -> None:
    key, _, data = two_objects
    path = store.object_paths(key).header
    original = path.read_bytes()
    for offset in range(len(original)):
        for mask in (0x01, 0x02, 0x20):
            flip(path, offset, mask)
            assert store.verify(key) is not None, (offset, mask)
            path.write_bytes(original)
    path.write_bytes(original.replace(b'{"', b'{ "', 1))  # equivalent JSON is still refused
    assert_corrupt(store, key)
    path.write_bytes(original)
    assert store.read_bytes(key) == data


def test_swapped_chunks_are_detected(store: ObjectStore, two_objects: tuple[str, str, bytes]) -> None:
    key, _, _ = two_objects
    path = store.object_paths(key).data
    raw = path.read_bytes()
    record = CHUNK + CHUNK_OVERHEAD
    first, second = raw[len(MAGIC) : len(MAGIC) + record], raw[len(MAGIC) + record : len(MAGIC) + 2 * record]
    path.write_bytes(raw[: len(MAGIC)] + second + first + raw[len(MAGIC) + 2 * record :])
    assert_corrupt(store, key)
    assert "chunk 0" in str(store.verify(key))


def test_truncated_or_extended_data_is_detected(store: ObjectStore, two_objects: tuple[str, str, bytes]) -> None:
    key, _, data = two_objects
    path = store.object_paths(key).data
    raw = path.read_bytes()
    last_record = 5 + CHUNK_OVERHEAD
    for cut in (raw[:-1], raw[:-last_record], raw[: len(MAGIC)], b"", raw + b"\x00"):
        path.write_bytes(cut)
        assert_corrupt(store, key)
        problem = store.verify(key)
        assert problem is not None and "bytes, expected" in problem.problem
    path.write_bytes(raw)
    assert store.read_bytes(key) == data


def test_truncation_is_detected_even_when_the_reader_does_not_check_lengths(
    store: ObjectStore, two_objects: tuple[str, str, bytes]
) -> None:
    """Defence in depth: the final-chunk flag alone catches a stream cut at a chunk boundary."""
    key, _, _ = two_objects
    header = store._open_header(key)  # white-box: the data key, to open records one by one
    raw = store.object_paths(key).data.read_bytes()
    record = CHUNK + CHUNK_OVERHEAD
    second = raw[len(MAGIC) + record : len(MAGIC) + 2 * record]
    cipher = ChunkCipher(header.data_key, key)
    assert len(cipher.open(1, False, second)) == CHUNK
    with pytest.raises(StorageIntegrityError):
        cipher.open(1, True, second)  # an attacker cannot declare a middle chunk the last one


def test_swapped_object_files_are_detected(store: ObjectStore, keyring: Keyring) -> None:
    a, b = (store.put(pattern(2 * CHUNK, seed=s), kind="upload").key for s in (1, 2))
    pa, pb = store.object_paths(a), store.object_paths(b)
    da, db = pa.data.read_bytes(), pb.data.read_bytes()
    pa.data.write_bytes(db)
    pb.data.write_bytes(da)
    assert_corrupt(store, a, b)
    pa.data.write_bytes(da)
    pb.data.write_bytes(db)
    assert store.verify_all() == []
    ha, hb = pa.header.read_bytes(), pb.header.read_bytes()
    pa.header.write_bytes(hb)
    pb.header.write_bytes(ha)
    assert_corrupt(store, a, b)
    pa.header.write_bytes(ha)
    # a header copied to another key with the "key" field edited still fails (wrapped key bound to the key)
    pb.header.write_bytes(ha.replace(a.encode(), b.encode()))
    assert_corrupt(store, b)


def test_missing_files_are_reported(store: ObjectStore) -> None:
    a = store.put(pattern(100), kind="upload").key
    b = store.put(pattern(100, seed=2), kind="upload").key
    store.object_paths(a).data.unlink()
    store.object_paths(b).header.unlink()  # leaves an orphan data file, as a crash between renames would
    problems = {p.key: p.problem for p in store.verify_all()}
    assert problems.keys() == {a, b}
    assert "missing" in problems[a] and "without header" in problems[b]
    assert not store.exists(b) and list(store.iter_keys()) == [a]
    removed = store.sweep()
    assert removed == [store.object_paths(b).data] and [p.key for p in store.verify_all()] == [a]


def test_sweep_removes_only_idle_temp_files(store: ObjectStore) -> None:
    old = store.root / "tmp" / "obj_x.dat.partial"
    fresh = store.root / "tmp" / "obj_y.dat.partial"
    old.write_bytes(b"junk")
    fresh.write_bytes(b"junk")
    os.utime(old, (1, 1))
    assert store.sweep(max_idle_s=60) == [old] and fresh.exists()


# -- atomicity and size cap --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_after", [0, 5, CHUNK, 3 * CHUNK + 1])
def test_interrupted_put_leaves_nothing(store: ObjectStore, fail_after: int) -> None:
    store.put(b"keep me", kind="upload")
    before = object_files(store)
    with pytest.raises(ConnectionResetError):
        store.put(TrickleStream(pattern(10 * CHUNK), step=11, fail_after=fail_after), kind="upload")
    assert object_files(store) == before and list((store.root / "tmp").iterdir()) == []


def test_put_interrupted_at_commit_leaves_nothing(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def failing_replace(src: object, dst: object) -> None:
        if str(dst).endswith(".hdr"):
            raise KeyboardInterrupt  # between the data rename and the header rename
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        store.put(pattern(3 * CHUNK), kind="upload")
    monkeypatch.undo()
    assert object_files(store) == [] and store.verify_all() == []


def test_size_cap(store: ObjectStore) -> None:
    data = pattern(4 * CHUNK)
    assert store.put(data, kind="upload", max_bytes=len(data)).size == len(data)
    before = object_files(store)
    for source in (data + b"!", TrickleStream(data + b"!"), io.BytesIO(pattern(100 * CHUNK))):
        with pytest.raises(UploadTooLargeError) as info:
            store.put(source, kind="upload", max_bytes=len(data))
        assert isinstance(info.value, InputError) and isinstance(info.value, StorageError)
        assert str(len(data)) in str(info.value)
    assert object_files(store) == before and list((store.root / "tmp").iterdir()) == []


def test_store_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", master_key="ab" * 32)
    store = ObjectStore.from_settings(settings)
    assert store.root == tmp_path / "data" / "storage"
    assert store.keyring.active == MasterKey.from_hex("ab" * 32)
    assert store.read_bytes(store.put(b"hello", kind="upload").key) == b"hello"


def test_chunk_size_must_be_sane(tmp_path: Path, keyring: Keyring) -> None:
    for bad in (0, -1, 65 * 1024 * 1024):
        with pytest.raises(ValueError):
            ObjectStore(tmp_path / "s", keyring, chunk_size=bad)


def test_a_reader_that_hit_corruption_stays_failed(store: ObjectStore) -> None:
    data = pattern(4 * CHUNK)
    key = store.put(data, kind="upload").key
    flip(store.object_paths(key).data, len(MAGIC) + (CHUNK + CHUNK_OVERHEAD) + 20)  # inside chunk 1
    with store.open(key) as reader:
        assert reader.read(CHUNK) == data[:CHUNK]  # chunk 0 is authentic
        for _ in range(2):
            with pytest.raises(StorageIntegrityError, match="chunk 1"):
                reader.read(1)
