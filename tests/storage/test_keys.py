"""Master keys: keys.json, rotation (re-wrap only, resumable), retirement, no key material on disk."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from neuronav.errors import ConfigError
from neuronav.storage import (
    Keyring,
    MasterKey,
    MasterKeyUnavailableError,
    ObjectStore,
    StorageError,
    decrypt_field,
    encrypt_field,
)
from neuronav.storage.store import ObjectStore as _Store

OLD = MasterKey.from_bytes(bytes(range(32)))
NEW = MasterKey.from_bytes(bytes(range(200, 232)))
CHUNK = 64


def make(root: Path, active: MasterKey, *others: MasterKey) -> ObjectStore:
    return ObjectStore(root, Keyring(active, others), chunk_size=CHUNK)


def fill(store: ObjectStore, count: int = 6) -> dict[str, bytes]:
    contents = {}
    for i in range(count):
        data = bytes([i]) * (i * 50)
        contents[store.put(data, kind="upload").key] = data
    return contents


def keys_file(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / "keys.json").read_text())
    return data


def data_files(store: ObjectStore) -> dict[str, bytes]:
    return {key: store.object_paths(key).data.read_bytes() for key in store.iter_keys()}


def test_keys_json_lists_ids_only(tmp_path: Path) -> None:
    make(tmp_path, OLD)
    state = keys_file(tmp_path)
    assert state["active"] == OLD.id and [e["id"] for e in state["keys"]] == [OLD.id]  # type: ignore[attr-defined]
    make(tmp_path, NEW, OLD)
    state = keys_file(tmp_path)
    assert state["active"] == NEW.id
    assert sorted(e["id"] for e in state["keys"]) == sorted([OLD.id, NEW.id])  # type: ignore[attr-defined]


def test_objects_need_their_master_key(tmp_path: Path) -> None:
    contents = fill(make(tmp_path, OLD))
    stranger = make(tmp_path, NEW)
    key = next(iter(contents))
    with pytest.raises(MasterKeyUnavailableError, match=OLD.id):
        stranger.read_bytes(key)
    assert {p.key for p in stranger.verify_all()} == set(contents)
    both = make(tmp_path, NEW, OLD)  # the new key is active; old objects still readable
    assert all(both.read_bytes(k) == v for k, v in contents.items())
    assert both.put(b"new", kind="upload").master_key_id == NEW.id


def test_rotate_rewraps_without_reencrypting_then_old_key_can_be_retired(tmp_path: Path) -> None:
    old_store = make(tmp_path, OLD)
    contents = fill(old_store)
    field_key = old_store.field_key()
    token = encrypt_field("Doe^Jane", field_key, "patients.name")
    before = data_files(old_store)

    store = make(tmp_path, OLD)
    with pytest.raises(StorageError, match="active key"):
        store.retire(OLD.id)
    report = store.rotate(NEW)
    assert (report.master_key_id, report.rewrapped, report.already_current, report.problems) == (NEW.id, 6, 0, [])
    assert store.keys_in_use() == {NEW.id: 7}  # six objects and the field key
    assert data_files(store) == before  # data untouched: only headers were rewritten
    assert store.rotate().rewrapped == 0  # nothing left to do

    store.retire(OLD.id)
    assert OLD.id not in store.keyring
    retired = {e["id"]: e["retired"] for e in keys_file(tmp_path)["keys"]}  # type: ignore[attr-defined]
    assert retired[OLD.id] is not None and retired[NEW.id] is None

    only_new = make(tmp_path, NEW)  # the operator dropped the old key from the environment
    assert all(only_new.read_bytes(k) == v for k, v in contents.items())
    assert only_new.verify_all() == []
    assert decrypt_field(token, only_new.field_key(), "patients.name") == "Doe^Jane"


def test_retire_is_refused_while_an_object_uses_the_key(tmp_path: Path) -> None:
    fill(make(tmp_path, OLD), 2)
    store = make(tmp_path, NEW, OLD)  # new key supplied, but not rotated yet
    with pytest.raises(StorageError, match=rf"{OLD.id} still wraps 2 object"):
        store.retire(OLD.id)
    assert OLD.id in store.keyring
    with pytest.raises(StorageError, match="active key"):
        store.retire(NEW.id)
    with pytest.raises(StorageError, match="not listed"):
        store.retire("mk-0000000000000000")
    store.rotate()
    store.retire(OLD.id)
    with pytest.raises(ConfigError, match="retired"):
        make(tmp_path, OLD)  # a retired key cannot become active again


def test_interrupted_rotation_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = fill(make(tmp_path, OLD))
    store = make(tmp_path, OLD)
    real = _Store._rewrap
    calls = 0

    def crashing(self: ObjectStore, key: str, target: MasterKey) -> bool:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt
        return real(self, key, target)

    monkeypatch.setattr(_Store, "_rewrap", crashing)
    with pytest.raises(KeyboardInterrupt):
        store.rotate(NEW)
    monkeypatch.undo()
    assert store.keys_in_use() == {NEW.id: 3, OLD.id: 3}
    mixed = make(tmp_path, NEW, OLD)  # still consistent: every object readable mid-rotation
    assert all(mixed.read_bytes(k) == v for k, v in contents.items()) and mixed.verify_all() == []
    with pytest.raises(StorageError):
        mixed.retire(OLD.id)
    report = mixed.rotate()
    assert (report.rewrapped, report.already_current) == (3, 3)
    mixed.retire(OLD.id)
    assert make(tmp_path, NEW).verify_all() == []


def test_rotation_reports_corrupted_objects_and_keeps_going(tmp_path: Path) -> None:
    contents = fill(make(tmp_path, OLD), 3)
    bad = sorted(contents)[1]
    store = make(tmp_path, OLD)
    header = store.object_paths(bad).header
    header.write_bytes(header.read_bytes().replace(b'"size":', b'"size":1'))
    report = store.rotate(NEW)
    assert report.rewrapped == 2 and [p.key for p in report.problems] == [bad]
    with pytest.raises(StorageError, match="unreadable"):
        store.retire(OLD.id)  # an unreadable header might still need the old key


def test_master_key_material_never_reaches_the_disk(tmp_path: Path) -> None:
    store = make(tmp_path, OLD)
    fill(store)
    field_key = store.field_key()
    encrypt_field("x", field_key, "c")
    store.rotate(NEW)
    store.retire(OLD.id)
    make(tmp_path, NEW).put(b"after", kind="upload")
    secrets = [field_key]
    for key in (OLD, NEW):
        secrets += [key.key_bytes, key.key_bytes.hex().encode(), key.key_bytes.hex().upper().encode()]
        secrets += [base64.b64encode(key.key_bytes), base64.urlsafe_b64encode(key.key_bytes).rstrip(b"=")]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 12
    for path in files:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret not in raw, path


def test_a_process_still_on_a_retired_key_cannot_store_under_it(tmp_path: Path) -> None:
    fill(make(tmp_path, OLD), 1)
    stale = make(tmp_path, OLD)  # e.g. a worker not yet restarted with the new key
    operator = make(tmp_path, NEW, OLD)
    operator.rotate()
    operator.retire(OLD.id)
    with pytest.raises(StorageError, match="retired"):
        stale.put(b"late upload", kind="upload")
    assert operator.keys_in_use() == {NEW.id: 1} and list((tmp_path / "tmp").iterdir()) == []
