"""Patient data in clear at rest (issue 17, finding 5): the client's file name (often the patient's name and
birth date) was stored in clear in `stored_objects.name` and copied into backups; decrypted studies stayed
in `<data>/tmp/upload-*` after a kill -9, were never swept, and `neuronav verify` did not mention them."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from neuronav.config import Settings, get_settings
from neuronav.db.models import StoredObjectRow, UserRow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.storage import decrypt_field, is_encrypted_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import operations, uploads

PHI_NAME = "DOE_JOHN_19700101.zip"


@dataclass(frozen=True)
class Env:
    settings: Settings
    store: ObjectStore
    user_id: str


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "11" * 32)
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEURONAV_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database)
    with session_scope(settings.database) as db:
        user = UserRow(email="t@x.org", display_name="T", role="technician", password_hash="x", state="active")
        db.add(user)
        db.flush()
        uid = user.id
    yield Env(settings, ObjectStore.from_settings(settings), uid)
    session_factory.cache_clear()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from neuronav.phantom import generate_study

    root = tmp_path_factory.mktemp("phi")
    generate_study(root / "s", seed=77, lesion="glioma", fmt="dicom", profile="clinical")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / "s" / "dicom").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / "s"))
    return buf.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_upload_file_names_are_encrypted_and_decrypted_files_private(
    env: Env, study_zip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neuronav.ingest

    real_scan = neuronav.ingest.scan
    seen: dict[str, Any] = {}

    def scan(paths: list[Path], *args: Any, **kw: Any) -> Any:  # the spooled upload, as the scanner sees it
        (folder,) = paths
        seen["folder"] = (folder, mode(folder))
        seen["files"] = {p.name: mode(p) for p in folder.iterdir()}
        return real_scan(paths, *args, **kw)

    monkeypatch.setattr(neuronav.ingest, "scan", scan)
    old_umask = os.umask(0o022)  # the usual umask: files would be 0644 without an explicit mode
    try:
        with session_scope(env.settings.database) as db:
            received = uploads.receive_upload(
                db,
                env.store,
                env.settings,
                user_id=env.user_id,
                uploads=[uploads.Upload(PHI_NAME, io.BytesIO(study_zip))],
            )
            study_id = received.study.id
    finally:
        os.umask(old_umask)
    folder, folder_mode = seen["folder"]
    assert folder.parent == env.settings.data_dir / "tmp" and folder_mode == 0o700
    assert mode(folder.parent) == 0o700
    assert seen["files"] and all(m == 0o600 for m in seen["files"].values()), seen["files"]
    assert not folder.exists()  # removed when the upload was stored
    with session_scope(env.settings.database) as db:
        (obj,) = db.scalars(select(StoredObjectRow).where(StoredObjectRow.study_id == study_id)).all()
        assert obj.name is not None and is_encrypted_field(obj.name) and "DOE" not in obj.name
        assert decrypt_field(obj.name, env.store.field_key(), "stored_objects.name") == PHI_NAME
        assert uploads.upload_name(env.store, obj) == PHI_NAME
        # decrypted again for an analysis: the .zip suffix still found, the file 0600
        target = uploads.private_tmp(env.settings)
        try:
            (restored,) = list(uploads.decrypt_upload(env.store, [obj], target).glob("*.zip"))
            assert mode(restored) == 0o600
        finally:
            uploads.remove_tmp(target)
    # neither the database file nor a backup holds the name
    db_file = env.settings.data_dir / "neuronav.db"
    with sqlite3.connect(db_file) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert b"DOE_JOHN" not in db_file.read_bytes()
    operations.backup(env.settings, tmp_path / "bk")
    assert not any(b"DOE_JOHN" in p.read_bytes() for p in (tmp_path / "bk").rglob("*") if p.is_file())
    assert operations.cleartext_leftovers(env.settings) == []


def test_names_stored_in_clear_before_are_reported_and_encrypted_at_start(env: Env) -> None:
    from fastapi.testclient import TestClient

    from neuronav.service.app import create_app

    obj = env.store.put(b"legacy upload", kind="upload")
    with session_scope(env.settings.database) as db:  # a row written before migration 0007
        db.add(StoredObjectRow(key=obj.key, kind="upload", name=PHI_NAME, sha256=obj.sha256, size_bytes=obj.size))
    problems = operations.verify_storage(env.settings)
    assert any(p.startswith(obj.key) and "file name stored in clear" in p for p in problems), problems
    assert PHI_NAME not in " ".join(problems)  # the report names the key, never the name
    with TestClient(create_app(env.settings)) as client:  # the server's start-up encrypts it
        assert client.get("/healthz").status_code == 200
    with session_scope(env.settings.database) as db:
        row = db.get(StoredObjectRow, obj.key)
        assert row is not None and row.name is not None and is_encrypted_field(row.name)
        assert uploads.upload_name(env.store, row) == PHI_NAME
    assert operations.verify_storage(env.settings) == []
    assert operations.encrypt_stored_names(env.settings, env.store) == 0  # idempotent


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from neuronav.config import get_settings
    from neuronav.workflow.uploads import create_private, private_tmp
    folder = private_tmp(get_settings())
    with create_private(folder / "00000.dcm") as fh:
        fh.write(b"decrypted study")
    print(folder, flush=True)
    time.sleep(600)
    """
)


def holder(env: Env) -> tuple[subprocess.Popen[str], Path]:
    """A process using a private temporary folder (as an upload or a job does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, env={**os.environ}, start_new_session=False
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_decrypted_leftovers_of_a_killed_process_are_reported_and_swept(env: Env) -> None:
    killed, killed_folder = holder(env)
    alive, alive_folder = holder(env)
    try:
        os.kill(killed.pid, signal.SIGKILL)  # kill -9: no finally, no atexit
        killed.wait(10)
        mine = uploads.private_tmp(env.settings)  # in use by a thread of this process
        root = env.settings.data_dir / "tmp"
        legacy_old = root / "upload-legacyold"  # left by a version without lock files
        legacy_new = root / "upload-legacynew"
        for f in (legacy_old, legacy_new):
            f.mkdir()
        hours_ago = time.time() - 2 * 3600
        os.utime(legacy_old, (hours_ago, hours_ago))
        assert killed_folder.exists() and (killed_folder / "00000.dcm").read_bytes() == b"decrypted study"

        assert uploads.tmp_leftovers(env.settings) == sorted([killed_folder, legacy_old])
        cli = subprocess.run(
            [sys.executable, "-m", "neuronav.cli", "verify"],
            capture_output=True,
            text=True,
            env={**os.environ},
            check=False,
        )
        assert cli.returncode != 0 and str(killed_folder) in cli.stdout and "decrypted material" in cli.stdout
        assert str(alive_folder) not in cli.stdout and str(mine) not in cli.stdout

        assert uploads.sweep_private_tmp(env.settings) == sorted([killed_folder, legacy_old])
        assert not killed_folder.exists() and not legacy_old.exists()
        assert alive_folder.exists() and mine.exists() and legacy_new.exists()  # in use or too young
        uploads.remove_tmp(mine)
        assert not mine.exists()
    finally:
        alive.kill()
        alive.wait(10)
    assert uploads.sweep_private_tmp(env.settings) == [alive_folder]  # its process ended


def test_a_failing_job_leaves_no_decrypted_files(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronav.db.models import AnalysisRow, StudyRow
    from neuronav.workflow import jobs

    with session_scope(env.settings.database) as db:
        study = StudyRow(content_sha256="c" * 64, uploaded_by=env.user_id)
        db.add(study)
        db.flush()
        a = AnalysisRow(study_id=study.id, cache_key="k" * 64, model="m")
        db.add(a)
        db.flush()
        analysis_id = a.id

    def decrypt_then_crash(store: ObjectStore, objects: list[StoredObjectRow], folder: Path) -> Path:
        with uploads.create_private(folder / "00000.dcm") as fh:
            fh.write(b"decrypted")
        raise RuntimeError("a bug mid-job")

    monkeypatch.setattr(uploads, "upload_objects", lambda db, study_id: [])
    monkeypatch.setattr(uploads, "decrypt_upload", decrypt_then_crash)
    assert jobs.run_analysis(analysis_id, env.settings) == "failed"
    assert list((env.settings.data_dir / "tmp").iterdir()) == []
