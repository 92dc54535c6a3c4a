"""Operations from the command line: verify finds corrupted objects, keys rotate, backup and restore."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuronav.config import get_settings
from neuronav.db.session import migrate
from neuronav.storage.store import EncryptedObject as StoredObjectInfo
from neuronav.storage.store import ObjectStore
from tests.conftest import lift_audit_append_only


def cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *map(str, args)], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "11" * 32)
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    migrate(get_settings().database)
    return {**os.environ}


def store() -> ObjectStore:
    get_settings.cache_clear()
    return ObjectStore.from_settings(get_settings())


def registered(*objects: StoredObjectInfo) -> None:
    """Rows naming ``objects``, as an upload's or a job's final transaction writes them."""
    from neuronav.db.models import StoredObjectRow
    from neuronav.db.session import session_scope

    with session_scope(get_settings().database) as db:
        for obj in objects:
            db.add(StoredObjectRow(key=obj.key, kind="upload", sha256=obj.sha256, size_bytes=obj.size))


def test_verify_names_a_corrupted_object(env: dict[str, str]) -> None:
    good, bad = store().put(b"a" * 5000, kind="upload"), store().put(b"b" * 5000, kind="upload")
    registered(good, bad)
    assert cli(env, "verify").returncode == 0
    data = store().object_paths(bad.key).data
    raw = bytearray(data.read_bytes())
    raw[-20] ^= 0xFF
    data.write_bytes(bytes(raw))
    proc = cli(env, "verify")
    assert proc.returncode != 0 and bad.key in proc.stdout and good.key not in proc.stdout


def test_verify_lists_and_removes_what_an_interrupted_upload_left(env: dict[str, str]) -> None:
    """An upload or a job killed between storing its files and committing its rows leaves objects that
    no row names: listed by verify (not an error), removed by --remove-unreferenced once an hour old."""
    kept = store().put(b"committed upload" * 100, kind="upload")
    registered(kept)
    fresh = store().put(b"an upload still in progress" * 100, kind="upload")
    stale = store().put(b"left by a killed upload" * 100, kind="upload")
    two_hours_ago = time.time() - 7200
    os.utime(store().object_paths(stale.key).header, (two_hours_ago, two_hours_ago))

    proc = cli(env, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unreferenced = [line for line in proc.stdout.splitlines() if "named by no database row" in line]
    assert sorted(line.split(":")[0] for line in unreferenced) == sorted([fresh.key, stale.key])

    proc = cli(env, "verify", "--remove-unreferenced")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{stale.key}: removed" in proc.stdout
    assert not store().exists(stale.key)
    assert store().read_bytes(fresh.key) == b"an upload still in progress" * 100  # too recent to touch
    assert store().read_bytes(kept.key) == b"committed upload" * 100

    # the server does the same when it starts (after a crash, say)
    from fastapi.testclient import TestClient

    from neuronav.service.app import create_app

    os.utime(store().object_paths(fresh.key).header, (two_hours_ago, two_hours_ago))
    with TestClient(create_app(get_settings())) as client:
        assert client.get("/healthz").status_code == 200
    assert not store().exists(fresh.key) and store().exists(kept.key)


def test_keys_rotate_then_retire(env: dict[str, str]) -> None:
    obj = store().put(b"secret scan" * 100, kind="upload")
    old_id = next(iter(store().keys_in_use()))
    env2 = {**env, "NEURONAV_MASTER_KEY": "22" * 32, "NEURONAV_OLD_MASTER_KEYS": "11" * 32}
    assert cli(env2, "keys", "retire", old_id).returncode != 0  # still in use
    proc = cli(env2, "keys", "rotate")
    assert proc.returncode == 0, proc.stderr
    proc = cli(env2, "keys", "retire", old_id)
    assert proc.returncode == 0, proc.stderr
    env3 = {**env, "NEURONAV_MASTER_KEY": "22" * 32}  # the old key is gone from the environment
    assert cli(env3, "verify").returncode == 0
    assert old_id not in cli(env3, "keys", "status").stdout
    assert obj.key in {
        k for k in ObjectStore.from_settings(get_settings().model_copy(update={"master_key": "22" * 32})).iter_keys()
    }


def test_backup_and_restore_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    from sqlalchemy import select

    from neuronav import audit
    from neuronav.db.models import AuditEventRow
    from neuronav.db.session import session_scope

    obj = store().put(b"scan bytes" * 1000, kind="upload")
    with session_scope(get_settings().database) as db:
        audit.record(db, "study.upload", target_id="s1")
    proc = cli(env, "backup", tmp_path / "bk")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bk" / "manifest.json").is_file()
    assert "11" * 32 not in "".join(p.read_text(errors="ignore") for p in (tmp_path / "bk").rglob("*") if p.is_file())
    # disaster: storage and database lost
    import shutil

    shutil.rmtree(tmp_path / "data" / "storage")
    (tmp_path / "data" / "neuronav.db").unlink()
    proc = cli(env, "restore", tmp_path / "bk")
    assert proc.returncode == 0, proc.stderr
    assert store().read_bytes(obj.key) == b"scan bytes" * 1000
    with session_scope(get_settings().database) as db:
        assert [e.action for e in db.scalars(select(AuditEventRow))] == ["study.upload"]
    assert cli(env, "audit", "verify").returncode == 0
    head = cli(env, "audit", "head").stdout.strip()
    assert head.startswith("1:") and len(head) == 66
    assert cli(env, "audit", "verify", "--anchor", head).returncode == 0
    wrong = cli(env, "audit", "verify", "--anchor", "2:" + head[2:])
    assert wrong.returncode != 0 and "cut off" in wrong.stderr, wrong.stderr
    garbled = cli(env, "audit", "verify", "--anchor", "yesterday")
    assert garbled.returncode != 0 and "SEQ:SHA256" in garbled.stderr
    # a backup this server's master key cannot open is refused before anything is replaced
    later = store().put(b"stored after the backup" * 100, kind="upload")
    proc = cli({**env, "NEURONAV_MASTER_KEY": "33" * 32}, "restore", tmp_path / "bk")
    assert proc.returncode != 0 and "cannot be read with this server's master keys" in proc.stderr, proc.stderr
    assert "nothing was restored" in proc.stderr
    assert store().read_bytes(later.key) == b"stored after the backup" * 100  # the live storage is untouched
    assert not (tmp_path / "data" / ".storage.restoring").exists()
    # a corrupted backup is refused before anything is replaced
    victim = next(p for p in (tmp_path / "bk" / "storage").rglob("*.dat"))
    victim.write_bytes(b"x" + victim.read_bytes()[1:])
    proc = cli(env, "restore", tmp_path / "bk")
    assert proc.returncode != 0 and "corrupted" in proc.stderr
    assert store().read_bytes(obj.key) == b"scan bytes" * 1000
    assert cli(env, "backup", tmp_path / "bk").returncode != 0  # not empty


@pytest.mark.postgres
def test_backup_and_restore_on_postgresql(
    env: dict[str, str], tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import delete, select

    from neuronav import audit
    from neuronav.db.models import AuditEventRow, UserRow
    from neuronav.db.session import session_scope

    monkeypatch.setenv("NEURONAV_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    url = get_settings().database
    migrate(url)
    with session_scope(url) as db:
        db.add(UserRow(email="r@x.org", display_name="R", role="radiologist", password_hash="h", throttle={"n": 1}))
        audit.record(db, "user.create", target_id="r")
    envpg = {**env, "NEURONAV_DATABASE_URL": postgres_url}
    assert cli(envpg, "backup", tmp_path / "bk").returncode == 0
    with session_scope(url) as db:  # disaster: the rows are lost (by someone who could lift the refusal)
        lift_audit_append_only(db)
        db.execute(delete(AuditEventRow))
        db.execute(delete(UserRow))
    proc = cli(envpg, "restore", tmp_path / "bk")
    assert proc.returncode == 0, proc.stderr
    with session_scope(url) as db:
        user = db.scalars(select(UserRow)).one()
        assert user.email == "r@x.org" and user.throttle == {"n": 1} and user.created_at.tzinfo is not None
    assert cli(envpg, "audit", "verify").returncode == 0
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="append-only"), session_scope(url) as db:
        db.execute(delete(AuditEventRow))  # the restore left the log append-only again
