"""A migrated SQLite database, an encrypted store, a technician, and a zipped phantom study."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neuronav.config import Settings, get_settings
from neuronav.db.models import UserRow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.phantom import generate_study
from neuronav.storage.store import ObjectStore


@dataclass(frozen=True)
class Env:
    settings: Settings
    store: ObjectStore
    user_id: str


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEURONAV_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database)
    with session_scope(settings.database) as db:
        user = UserRow(
            email="tech@example.org", display_name="Tech", role="technician", password_hash="x", state="active"
        )
        db.add(user)
        db.flush()
        uid = user.id
    yield Env(settings, ObjectStore.from_settings(settings), uid)
    session_factory.cache_clear()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def phantom_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    generate_study(root / "study", seed=202, lesion="glioma", fmt="dicom", profile="clinical")
    path = root / "study.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / "study" / "dicom").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / "study"))
    return path
