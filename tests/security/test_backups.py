"""Attacks on backups: a database altered inside a backup, with its digest rewritten in the manifest, must
not be restored (issue 17, finding 8: a technician became admin that way)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from neuronav.config import Settings, get_settings
from neuronav.db.models import UserRow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.errors import InputError
from neuronav.storage.store import ObjectStore
from neuronav.workflow.operations import backup, restore


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "11" * 32)
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    s = get_settings()
    migrate(s.database)
    with session_scope(s.database) as db:
        db.add(UserRow(email="tech@x.org", display_name="T", role="technician", password_hash="h", state="active"))
    ObjectStore.from_settings(s).put(b"scan" * 1000, kind="upload")
    yield s
    session_factory.cache_clear()
    get_settings.cache_clear()


def roles(s: Settings) -> dict[str, str]:
    with session_scope(s.database) as db:
        return {u.email: u.role for u in db.scalars(select(UserRow))}


def promote_in_backup(folder: Path) -> None:
    """The attack: make the technician an admin in the backup's database, then rewrite its digest."""
    db_file = folder / "database.sqlite"
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE users SET role = 'admin' WHERE email = 'tech@x.org'")
    conn.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["database.sqlite"] = hashlib.sha256(db_file.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_altered_database_with_rewritten_digest_is_refused(settings: Settings, tmp_path: Path) -> None:
    backup(settings, tmp_path / "bk")
    promote_in_backup(tmp_path / "bk")
    with session_scope(settings.database) as db:  # the live database moves on after the backup
        db.add(UserRow(email="later@x.org", display_name="L", role="radiologist", password_hash="h"))
    with pytest.raises(InputError, match=r"does not verify.*nothing was restored"):
        restore(settings, tmp_path / "bk")
    assert roles(settings) == {"tech@x.org": "technician", "later@x.org": "radiologist"}  # nothing replaced


def test_manifest_mac_is_keyed_by_the_master_key(settings: Settings, tmp_path: Path) -> None:
    """An attacker who recomputes the MAC with a key of their own (not this server's) is refused too."""
    import hmac

    backup(settings, tmp_path / "bk")
    promote_in_backup(tmp_path / "bk")
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    body = {k: v for k, v in manifest.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    manifest["mac"] = hmac.new(b"guess" * 8, b"neuronav backup manifest v2\x00" + canonical, "sha256").hexdigest()
    (tmp_path / "bk" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="does not verify"):
        restore(settings, tmp_path / "bk")
    assert roles(settings) == {"tech@x.org": "technician"}


def test_unauthenticated_or_extended_backups_are_refused(settings: Settings, tmp_path: Path) -> None:
    backup(settings, tmp_path / "bk")
    manifest_path = tmp_path / "bk" / "manifest.json"
    signed = json.loads(manifest_path.read_text())
    assert signed["format"] == 2 and len(signed["mac"]) == 64 and signed["mac_key_id"].startswith("mk-")
    # a file slipped into the backup's storage, not named by the manifest
    extra = tmp_path / "bk" / "storage" / "objects" / "planted.hdr"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text("{}")
    with pytest.raises(InputError, match="not in the manifest"):
        restore(settings, tmp_path / "bk")
    extra.unlink()
    # the old, unauthenticated format
    old = {k: v for k, v in signed.items() if k not in ("mac", "mac_key_id")} | {"format": 1}
    manifest_path.write_text(json.dumps(old))
    with pytest.raises(InputError, match="format 1 has no authenticated manifest"):
        restore(settings, tmp_path / "bk")
    # the genuine backup restores
    manifest_path.write_text(json.dumps(signed))
    assert restore(settings, tmp_path / "bk") == 1
    assert roles(settings) == {"tech@x.org": "technician"}
