"""The DICOM listener on a free loopback port over a fresh database and store, a phantom study written as
DICOM by the project's generator (once per session), and dcmtk's tools."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from neuronav.config import Settings, get_settings, load_settings
from neuronav.db.models import DicomArrivalRow, DicomInstanceRow
from neuronav.db.session import migrate, session_scope
from neuronav.integrations.dimse.listener import Listener
from neuronav.storage.store import ObjectStore
from neuronav.workflow import jobs
from neuronav.workflow.nodes import NodeIn, add_node
from tests.conftest import require_binary

STORESCU_AE = "STORESCU"


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4-sequence phantom study (576 files) as DICOM: ``dicom/<NN>_<sequence>/IM*.dcm``."""
    from neuronav.phantom import generate_study

    root = tmp_path_factory.mktemp("phantom-dimse")
    generate_study(root, seed=7, fmt="dicom", profile="clinical")
    return root / "dicom"


def phantom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@dataclass
class DicomEnv:
    settings: Settings
    store: ObjectStore
    listener: Listener
    dispatched: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.address[1]

    def add_node(self, name: str, ae: str, host: str = "127.0.0.1", *, incoming: bool = True, port: int = 104) -> None:
        with session_scope(self.settings.database) as db:
            add_node(db, None, NodeIn(name=name, ae_title=ae, host=host, port=port, incoming=incoming))

    def arrivals(self) -> list[DicomArrivalRow]:
        with session_scope(self.settings.database) as db:
            rows = list(db.query(DicomArrivalRow).order_by(DicomArrivalRow.first_at))
            for r in rows:
                db.expunge(r)
            return rows

    def instance_count(self) -> int:
        with session_scope(self.settings.database) as db:
            return db.query(DicomInstanceRow).count()


def dicom_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    for name in ("NEURONAV_DATABASE_URL", "NEURONAV_BROKER_URL", "NEURONAV_STORAGE_DIR", "NEURONAV_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NEURONAV_SECRET_KEY", "NEURONAV_PSEUDONYM_KEY", "NEURONAV_DICOM_PORT"):
        monkeypatch.delenv(name, raising=False)
    defaults = {
        "NEURONAV_DICOM_STABLE_AGE": "1",
        "NEURONAV_DICOM_ACSE_TIMEOUT_S": "2",
        "NEURONAV_DICOM_DIMSE_TIMEOUT_S": "2",
        "NEURONAV_DICOM_NETWORK_TIMEOUT_S": "2",
    }
    for name, value in {**defaults, **env}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return load_settings()


@pytest.fixture
def make_dicom_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DicomEnv]]:
    """Start a listener with these extra NEURONAV_* settings (analyses recorded, not run)."""
    started: list[Listener] = []

    def make(**env: str) -> DicomEnv:
        settings = dicom_settings(tmp_path / f"env{len(started)}", monkeypatch, **env)
        migrate(settings.database)
        store = ObjectStore.from_settings(settings)
        listener = Listener(settings, store, host="127.0.0.1", port=0)
        made = DicomEnv(settings, store, listener)
        monkeypatch.setattr(jobs, "dispatch", lambda _settings, analysis_id: made.dispatched.append(analysis_id))
        listener.start()
        started.append(listener)
        return made

    yield make
    for listener in started:
        listener.stop()
    get_settings.cache_clear()


@pytest.fixture
def dicom_env(make_dicom_env: Callable[..., DicomEnv]) -> DicomEnv:
    """A listener where dcmtk's storescu (calling AE STORESCU) on 127.0.0.1 may send."""
    env = make_dicom_env()
    env.add_node("scanner", STORESCU_AE)
    return env


def dcmtk(tool: str, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary(tool), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def storescu(
    port: int, *paths: Path, aet: str = STORESCU_AE, aec: str = "NEURONAV"
) -> subprocess.CompletedProcess[str]:
    """dcmtk storescu: every file under ``paths`` (folders scanned recursively) in one association."""
    return dcmtk("storescu", "-aet", aet, "-aec", aec, "+sd", "+r", "-nh", "127.0.0.1", str(port), *paths)


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``check`` until true (a bound, not a speed assertion: fails only when it never happens)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
