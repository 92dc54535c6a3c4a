"""Shared test fixtures. Test data is generated here, never downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

# Tests never touch the user's data folder (settings, generated dev secrets, pseudonym key).
os.environ.setdefault("NEURONAV_DATA_DIR", tempfile.mkdtemp(prefix="neuronav-test-data-"))


def require_binary(name: str) -> str:
    """Path of a system binary the test needs; FAIL (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup.sh (CI installs it)")
    return path


POSTGRES_SERVER = os.environ.get("NEURONAV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped afterwards.

    Fails (never skips) when the server is not reachable: CI runs these tests against the PostgreSQL
    the machine starts on 127.0.0.1:5432 (NEURONAV_TEST_POSTGRES_URL overrides the server address).
    """
    import psycopg

    from neuronav.db.session import session_factory

    name = f"neuronav_test_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_SERVER} ({exc}); CI starts it on 127.0.0.1:5432")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_SERVER}/{name}"
    try:
        yield url
    finally:
        session_factory(url).kw["bind"].dispose()  # close pooled connections before the drop
        session_factory.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def zip_phantom(root: Path, seed: int, lesion: str = "glioma") -> bytes:
    """A 4-sequence DICOM phantom study made in ``root``, zipped (stored) as a technician uploads it."""
    import io
    import zipfile

    from neuronav.phantom import generate_study

    generate_study(root / f"s{seed}", seed=seed, lesion=lesion, fmt="dicom", profile="clinical")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / f"s{seed}" / "dicom").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / f"s{seed}"))
    return buf.getvalue()


def lift_audit_append_only(db: Session) -> None:
    """Play someone with the schema owner's rights: remove the triggers that refuse UPDATE and DELETE
    of audit events (migration 0006), so that a test can tamper with the log as such a person could."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
    else:
        db.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        db.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))


from tests.peers import orthanc  # noqa: E402, F401 (the session-scoped Orthanc peer, for every test module)
