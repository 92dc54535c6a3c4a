"""Operations of a NeuroNav installation (behind the CLI and the server's start-up): accounts made from
the command line, the demo set-up, storage verification and sweeping, backup and restore.

Backup (``neuronav backup DIR``): a consistent copy of the database (SQLite: the online backup API;
PostgreSQL: every table as JSON lines, read in one repeatable-read transaction) and of the object
store as it lies on disk (still encrypted: the master key is NOT in the backup and must be kept
apart), with ``manifest.json`` listing every file with its SHA-256. Restore verifies the manifest,
then replaces the database and the storage folder, then verifies every stored object. Stop the
service (and workers) before restoring.

The manifest is authenticated (format 2): ``mac`` is HMAC-SHA256 over the canonical JSON of the rest
of the manifest, keyed with ``derive_key(master, "backup-manifest")`` (HKDF-SHA256 of the active
master key, named by ``mac_key_id``). Whoever alters the database file of a backup and rewrites its
digest cannot write a matching ``mac`` without the master key: restore refuses such a backup before
anything is replaced, as it refuses format 1 backups (not authenticated) and backups signed under a
master key this server does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronav.config import Settings
from neuronav.errors import InputError

if TYPE_CHECKING:
    from neuronav.storage.store import ObjectStore

BACKUP_FORMAT = 2  # 2: the manifest is authenticated (HMAC); 1 (unauthenticated) is refused
MANIFEST_KEY_PURPOSE = "backup-manifest"


def create_account(
    settings: Settings,
    email: str,
    password: str,
    role: str,
    *,
    display_name: str,
    active: bool,
    licence: str | None,
    totp_secret: str | None = None,
    must_change_password: bool = False,
) -> str:
    """:func:`neuronav.workflow.accounts.create_user` in its own transaction (the database must be at the
    current schema: ``neuronav db upgrade``); the new user's id."""
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.accounts import create_user

    require_current(settings.database)
    store = ObjectStore.from_settings(settings)
    with session_scope(settings.database) as db:
        return create_user(
            db,
            store,
            email,
            password,
            role,
            display_name=display_name,
            active=active,
            licence=licence,
            totp_secret=totp_secret,
            must_change_password=must_change_password,
        )


@dataclass(frozen=True)
class DemoAccount:
    email: str
    role: str
    password: str
    totp_secret: str | None = None


def demo_setup(settings: Settings, *, seed: int = 42) -> tuple[list[DemoAccount], str]:
    """Demo admin, radiologist, technician and neurologist (one-time passwords: each must be changed
    at the first sign-in) and a phantom study uploaded and analysed."""
    from sqlalchemy import select

    from neuronav.db.models import StudyRow, UserRow
    from neuronav.db.session import migrate, session_scope
    from neuronav.phantom import generate_study
    from neuronav.security import totp
    from neuronav.workflow import jobs
    from neuronav.workflow.accounts import one_time_password
    from neuronav.workflow.uploads import Upload, receive_upload

    migrate(settings.database)
    accounts: list[DemoAccount] = []
    with session_scope(settings.database) as db:
        existing = set(db.scalars(select(UserRow.email)))
    for role in ("admin", "radiologist", "technician", "neurologist"):
        email = f"demo-{role}@neuronav.local"
        if email in existing:
            continue
        password = one_time_password()
        secret = totp.new_secret() if role == "admin" else None
        create_account(
            settings,
            email,
            password,
            role,
            display_name=f"Demo {role.capitalize()}",
            active=True,
            licence=None if role in ("admin", "technician") else f"DEMO-{role[:3].upper()}-0001",
            totp_secret=secret,
            must_change_password=True,
        )
        accounts.append(DemoAccount(email, role, password, secret))
    store = jobs.store_for(settings)
    work = settings.data_dir / "demo-phantom"
    if not (work / "truth.json").is_file():
        shutil.rmtree(work, ignore_errors=True)
        generate_study(work, seed=seed, lesion="glioma", fmt="dicom")
    files = sorted(p for p in (work / "dicom").rglob("*") if p.is_file())
    with session_scope(settings.database) as db:
        tech = db.scalars(select(UserRow).where(UserRow.email == "demo-technician@neuronav.local")).one()
        handles = [open(p, "rb") for p in files]  # noqa: SIM115 (closed below)
        try:
            received = receive_upload(
                db,
                store,
                settings,
                user_id=tech.id,
                uploads=[Upload(p.name, h) for p, h in zip(files, handles, strict=True)],
            )
        finally:
            for h in handles:
                h.close()
        study = db.get(StudyRow, received.study.id)
        assert study is not None
        analysis, queued = jobs.start_analysis(db, settings, study, user_id=tech.id)
        study_id, analysis_id = study.id, analysis.id
    if queued or analysis.state != "done":
        jobs.run_analysis(analysis_id, settings)
    return accounts, study_id


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest_mac(key: bytes, manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return hmac.new(key, b"neuronav backup manifest v2\x00" + canonical, hashlib.sha256).hexdigest()


def sign_manifest(settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with ``mac_key_id`` and ``mac`` (HMAC-SHA256 under a key derived from the active master key)."""
    from neuronav.storage.crypto import derive_key, keyring_from_settings

    master = keyring_from_settings(settings).active
    signed = {**manifest, "mac_key_id": master.id}
    signed["mac"] = _manifest_mac(derive_key(master, MANIFEST_KEY_PURPOSE), signed)
    return signed


def verify_manifest(settings: Settings, manifest: dict[str, Any], source: Path) -> None:
    """Refuse (InputError, nothing restored) a manifest whose ``mac`` does not verify under this server's keys."""
    from neuronav.storage.crypto import derive_key, keyring_from_settings

    if manifest.get("format") == 1:
        raise InputError(
            "backup format 1 has no authenticated manifest and is refused; nothing was restored "
            "(make a new backup with this version: `neuronav backup DIR`)",
            str(source),
        )
    if manifest.get("format") != BACKUP_FORMAT:
        raise InputError(f"backup format {manifest.get('format')} is not supported", str(source))
    key_id, mac = manifest.get("mac_key_id"), manifest.get("mac")
    if not isinstance(key_id, str) or not isinstance(mac, str):
        raise InputError("the backup's manifest is not authenticated (no mac); nothing was restored", str(source))
    keyring = keyring_from_settings(settings)
    if key_id not in keyring:
        raise InputError(
            f"the backup's manifest is authenticated with master key {key_id}, which this server does not hold: "
            "the backup cannot be read with this server's master keys; nothing was restored",
            str(source),
        )
    expected = _manifest_mac(derive_key(keyring.get(key_id), MANIFEST_KEY_PURPOSE), manifest)
    if not hmac.compare_digest(expected, mac):
        raise InputError(
            "the backup's manifest does not verify (altered after the backup was made); nothing was restored",
            str(source),
        )


def backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Write a backup into ``target`` (which must not exist or be empty); return its manifest."""
    from neuronav.db.session import require_current

    if target.exists() and any(target.iterdir()):
        raise InputError("the backup folder is not empty; give a new folder", str(target))
    require_current(settings.database)
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    url = settings.database
    if url.startswith("sqlite"):
        src = sqlite3.connect(url.split("///", 1)[1])
        dst = sqlite3.connect(tmp / "database.sqlite")
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        db_kind = "sqlite"
    else:
        _dump_tables(url, tmp / "database.jsonl")
        db_kind = "jsonl"
    storage = settings.storage
    if storage.exists():
        shutil.copytree(storage, tmp / "storage", ignore=shutil.ignore_patterns("tmp", ".lock"))
    files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = sign_manifest(
        settings,
        {"format": BACKUP_FORMAT, "created": datetime.now(UTC).isoformat(), "database": db_kind, "files": files},
    )
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if target.exists():
        target.rmdir()
    tmp.rename(target)
    return manifest


def _dump_tables(url: str, path: Path) -> None:
    from sqlalchemy import select

    from neuronav.db.models import Base
    from neuronav.db.session import make_engine

    engine = make_engine(url)
    with engine.connect() as conn, open(path, "w") as out:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                out.write(json.dumps({"table": table.name, "row": dict(row)}, default=str) + "\n")
    engine.dispose()


def _load_tables(url: str, path: Path) -> None:
    from sqlalchemy import DateTime

    from neuronav.db.models import Base
    from neuronav.db.session import make_engine, migrate

    migrate(url)
    engine = make_engine(url)
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    with engine.begin() as conn:
        # the audit log refuses deletes (migration 0006): lifted for this transaction only, which replaces
        # the whole database with the backup's (its chain is checked by `neuronav audit verify`)
        conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        rows: dict[str, list[dict[str, Any]]] = {}
        for line in path.read_text().splitlines():
            item = json.loads(line)
            table = tables[item["table"]]
            row = item["row"]
            for col in table.columns:
                if isinstance(col.type, DateTime) and row.get(col.name):
                    row[col.name] = datetime.fromisoformat(row[col.name])
            rows.setdefault(table.name, []).append(row)
        for table in Base.metadata.sorted_tables:
            if rows.get(table.name):
                conn.execute(table.insert(), rows[table.name])
        conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER USER")
    engine.dispose()


def restore(settings: Settings, source: Path) -> int:
    """Restore a backup over the current database and storage; returns the number of objects verified.

    Checked before anything is replaced: the manifest's HMAC (:func:`verify_manifest`), every file
    against the manifest's sha256, and every object decrypted and hashed with this server's master keys."""
    from neuronav.storage.crypto import keyring_from_settings
    from neuronav.storage.store import ObjectStore

    manifest_path = source / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise InputError("not a NeuroNav backup (manifest.json missing or unreadable)", str(source)) from exc
    if not isinstance(manifest, dict):
        raise InputError("not a NeuroNav backup (manifest.json is not an object)", str(source))
    verify_manifest(settings, manifest, source)
    listed = set(manifest["files"])
    present = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() or p.is_symlink()}
    unlisted = sorted(present - listed - {"manifest.json"})
    if unlisted:
        raise InputError(
            f"backup file {unlisted[0]} is not in the manifest (added after the backup); nothing was restored",
            str(source),
        )
    for rel, digest in manifest["files"].items():
        path = source / rel
        if not path.is_file() or _sha256(path) != digest:
            raise InputError(
                f"backup file {rel} is missing or corrupted (sha256 differs); nothing was restored", str(source)
            )
    url = settings.database
    if manifest["database"] == "sqlite" and not url.startswith("sqlite"):
        raise InputError("a SQLite backup restores into SQLite only; NEURONAV_DATABASE_URL is not SQLite", str(source))
    # the backup's objects are copied beside the live storage and verified with this server's master keys
    # BEFORE anything live is replaced: a backup made under another master key, or damaged, is refused
    # with the live database and storage untouched
    storage = settings.storage
    staged = storage.with_name(f".{storage.name}.restoring")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        if (source / "storage").exists():
            shutil.copytree(source / "storage", staged)
        else:
            staged.mkdir(parents=True)
        staged_store = ObjectStore(staged, keyring_from_settings(settings))
        problems = staged_store.verify_all()
        if problems:
            raise InputError(
                f"{len(problems)} objects of the backup cannot be read with this server's master keys or are "
                f"damaged (first: {problems[0]}); nothing was restored",
                str(source),
            )
        count = len(list(staged_store.iter_keys()))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if manifest["database"] == "sqlite":
        target = Path(url.split("///", 1)[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        staged_db = target.with_name(f".{target.name}.restoring")
        staged_db.unlink(missing_ok=True)
        src = sqlite3.connect(source / "database.sqlite")
        dst = sqlite3.connect(staged_db)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        for sidecar in ("-wal", "-shm"):  # a write-ahead log of the old database must not replay
            target.with_name(target.name + sidecar).unlink(missing_ok=True)
        staged_db.replace(target)
    else:
        _load_tables(url, source / "database.jsonl")
    old = storage.with_name(f".{storage.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if storage.exists():
        storage.rename(old)
    staged.rename(storage)
    shutil.rmtree(old, ignore_errors=True)
    return count


def verify_storage(settings: Settings) -> list[str]:
    """Every stored object decrypted and hashed; plus objects the database names that are missing, and
    cleartext left behind (:func:`cleartext_leftovers`)."""
    from sqlalchemy import select

    from neuronav.db.models import StoredObjectRow
    from neuronav.db.session import require_current, session_scope
    from neuronav.storage.store import ObjectStore

    require_current(settings.database)
    store = ObjectStore.from_settings(settings)
    problems = [str(p) for p in store.verify_all()]
    with session_scope(settings.database) as db:
        for key in db.scalars(select(StoredObjectRow.key)):
            if not store.exists(key):
                problems.append(f"{key}: named in the database but missing from storage")
    return problems + cleartext_leftovers(settings)


def cleartext_leftovers(settings: Settings) -> list[str]:
    """Patient data in clear at rest: private temporary folders no process uses (decrypted studies a
    killed process left in ``<data>/tmp``) and stored file names not encrypted. Paths and keys only."""
    from sqlalchemy import not_, select

    from neuronav.db.models import StoredObjectRow
    from neuronav.db.session import session_scope
    from neuronav.storage.crypto import FIELD_PREFIX
    from neuronav.workflow.uploads import tmp_leftovers

    found = [
        f"{entry}: decrypted material left in the private temporary folder by a process that stopped "
        "(removed by the server's next sweep)"
        for entry in tmp_leftovers(settings)
    ]
    with session_scope(settings.database) as db:
        clear = db.scalars(
            select(StoredObjectRow.key).where(
                StoredObjectRow.name.is_not(None), not_(StoredObjectRow.name.like(f"{FIELD_PREFIX}:%"))
            )
        ).all()
    found += [
        f"{key}: file name stored in clear (encrypted by `neuronav db upgrade` or the server's start-up)"
        for key in clear
    ]
    return found


def encrypt_stored_names(settings: Settings, store: ObjectStore, *, batch: int = 500) -> int:
    """Encrypt every ``stored_objects.name`` still in clear (rows written before migration 0007) with the
    field key, column-bound like the other PHI columns; idempotent. Returns how many were encrypted."""
    from sqlalchemy import not_, select

    from neuronav.db.models import StoredObjectRow
    from neuronav.db.session import session_scope
    from neuronav.storage import encrypt_field
    from neuronav.storage.crypto import FIELD_PREFIX
    from neuronav.workflow.uploads import NAME_COLUMN

    key = store.field_key()
    done = 0
    while True:
        with session_scope(settings.database) as db:
            rows = db.scalars(
                select(StoredObjectRow)
                .where(StoredObjectRow.name.is_not(None), not_(StoredObjectRow.name.like(f"{FIELD_PREFIX}:%")))
                .limit(batch)
            ).all()
            for row in rows:
                assert row.name is not None
                row.name = encrypt_field(row.name, key, NAME_COLUMN)
            done += len(rows)
        if len(rows) < batch:
            return done


def index_unsearchable(settings: Settings, store: ObjectStore, *, batch: int = 500) -> int:
    """Write the worklist's search tokens (:mod:`neuronav.workflow.search_index`) of every study that has
    an identity but none (studies received before migration 0011); idempotent. Returns how many."""
    from sqlalchemy import exists, or_, select

    from neuronav.db.models import StudyRow, StudySearchTokenRow
    from neuronav.db.session import session_scope
    from neuronav.workflow.search_index import index_study

    unindexed = select(StudyRow).where(
        or_(
            StudyRow.patient_name_enc.is_not(None),
            StudyRow.patient_id_enc.is_not(None),
            StudyRow.accession_enc.is_not(None),
        ),
        ~exists().where(StudySearchTokenRow.study_id == StudyRow.id),
    )
    done, last = 0, ""
    while True:
        with session_scope(settings.database) as db:
            rows = db.scalars(unindexed.where(StudyRow.id > last).order_by(StudyRow.id).limit(batch)).all()
            for study in rows:
                index_study(db, store, study)
            done += len(rows)
            last = rows[-1].id if rows else last
        if len(rows) < batch:
            return done


UNREFERENCED_GRACE_S = 3600.0  # an upload or a job commits its rows seconds after storing its objects


def unreferenced_objects(settings: Settings, store: ObjectStore, *, older_than_s: float = 0.0) -> list[str]:
    """Objects in ``store`` no database row names, written at least ``older_than_s`` seconds ago: what an
    upload or a job killed between storing its files and committing its rows leaves behind (the
    database must be migrated)."""
    import time

    from sqlalchemy import select

    from neuronav.db.models import StoredObjectRow
    from neuronav.db.session import session_scope

    keys = list(store.iter_keys())  # listed before the rows are read: an object committed meanwhile is named
    with session_scope(settings.database) as db:
        named = set(db.scalars(select(StoredObjectRow.key)))
    now = time.time()
    found = []
    for key in keys:
        if key in named:
            continue
        try:
            age = now - store.object_paths(key).header.stat().st_mtime
        except FileNotFoundError:  # removed meanwhile
            continue
        if age >= older_than_s:
            found.append(key)
    return found


def remove_unreferenced(
    settings: Settings, store: ObjectStore, *, older_than_s: float = UNREFERENCED_GRACE_S
) -> list[str]:
    """Delete :func:`unreferenced_objects` older than ``older_than_s`` (default an hour, so that an upload
    or a job in progress on any server, between storing and committing, is never touched)."""
    removed = unreferenced_objects(settings, store, older_than_s=older_than_s)
    for key in removed:
        store.delete(key, missing_ok=True)
    return removed


__all__ = [
    "backup",
    "cleartext_leftovers",
    "create_account",
    "demo_setup",
    "encrypt_stored_names",
    "remove_unreferenced",
    "restore",
    "sign_manifest",
    "unreferenced_objects",
    "verify_manifest",
    "verify_storage",
]
