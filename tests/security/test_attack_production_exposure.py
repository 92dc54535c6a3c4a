"""Attack: in production ``/metrics`` and the API documentation (``/docs``, ``/redoc``,
``/openapi.json``, ``/docs/assets/*``) answered anyone; ``neuronav.db`` was created world-readable
(0644); a weak password that follows the length rules (``Technician2024!!``) was accepted.

Now: outside development those pages need an administrator's session (``/metrics`` also the scrape
token ``NEURONAV_METRICS_TOKEN``); development keeps them open (``tests/service/test_admin.py``
walks them as public there). SQLite files are 0600 in a 0700 data folder. Passwords are scored
with zxcvbn's dictionaries of breached and common passwords.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neuronav.config import Settings, load_settings
from neuronav.db.session import migrate, session_scope
from neuronav.service import create_app
from tests.service.conftest import People, audit_events

METRICS_TOKEN = "scrape-" + "7f3a9c" * 6
OPERATOR_PAGES = ["/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css", "/docs/assets/redoc-init.js"]


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEURONAV_ENV", "production")
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'neuronav.db'}")
    monkeypatch.setenv("NEURONAV_MASTER_KEY", "ab" * 32)
    monkeypatch.setenv("NEURONAV_SECRET_KEY", "s" * 20 + "0123456789abcdef")
    monkeypatch.setenv("NEURONAV_PSEUDONYM_KEY", "p" * 20 + "fedcba9876543210")
    monkeypatch.setenv("NEURONAV_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.delenv("NEURONAV_STORAGE_DIR", raising=False)
    return load_settings()


@pytest.fixture
def prod_client(production: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(production)) as client:
        yield client


@pytest.fixture
def prod_people(production: Settings, prod_client: TestClient) -> People:
    return People(production, prod_client)


# -- /metrics and the API documentation ------------------------------------------------------------


@pytest.mark.parametrize("path", [*OPERATOR_PAGES, "/metrics"])
def test_production_operator_pages_refuse_anonymous_and_forged_tokens(prod_client: TestClient, path: str) -> None:
    assert prod_client.get(path).status_code == 401
    assert prod_client.get(path, headers={"Authorization": "Bearer v1.forged.token"}).status_code == 401


@pytest.mark.parametrize("path", [*OPERATOR_PAGES, "/metrics"])
@pytest.mark.parametrize("role", ["technician", "radiologist", "neurologist"])
def test_production_operator_pages_refuse_clinical_roles(
    prod_client: TestClient, prod_people: People, production: Settings, path: str, role: str
) -> None:
    headers = prod_people.direct_headers(prod_people.create(role))
    assert prod_client.get(path, headers=headers).status_code == 403
    template = "/docs/assets/{name}" if path.startswith("/docs/assets/") else path
    assert any(e.detail.get("route") == template for e in audit_events(production, "access.denied"))


@pytest.mark.parametrize("path", [*OPERATOR_PAGES, "/metrics"])
def test_production_operator_pages_open_to_an_admin(prod_client: TestClient, prod_people: People, path: str) -> None:
    headers = prod_people.direct_headers(prod_people.create("admin"))
    response = prod_client.get(path, headers=headers)
    assert response.status_code == 200, response.text


def test_the_scrape_token_opens_metrics_only(prod_client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    metrics = prod_client.get("/metrics", headers=headers)
    assert metrics.status_code == 200
    assert "neuronav_http_requests_total" in metrics.text
    assert prod_client.get("/openapi.json", headers=headers).status_code == 401
    assert prod_client.get("/api/audit", headers=headers).status_code == 401
    wrong = {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"}
    assert prod_client.get("/metrics", headers=wrong).status_code == 401


def test_health_probes_stay_open_in_production(prod_client: TestClient) -> None:
    assert prod_client.get("/healthz").status_code == 200
    assert prod_client.get("/readyz").status_code == 200


@pytest.mark.parametrize("path", [*OPERATOR_PAGES, "/metrics"])
def test_development_keeps_operator_pages_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_a_short_metrics_token_is_refused_in_production(production: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronav.errors import ConfigError

    monkeypatch.setenv("NEURONAV_METRICS_TOKEN", "changeme")
    with pytest.raises(ConfigError, match="NEURONAV_METRICS_TOKEN"):
        load_settings()


# -- database files ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless made private
    try:
        data = tmp_path / "data"
        url = f"sqlite:///{data / 'neuronav.db'}"
        migrate(url)
        with session_scope(url) as db:  # a write: the -wal and -shm files exist while it is open
            from sqlalchemy import text

            db.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            db.execute(text("INSERT INTO probe VALUES (1)"))
            db.commit()
            files = [p for p in data.iterdir() if p.name.startswith("neuronav.db")]
            assert {p.name for p in files} >= {"neuronav.db", "neuronav.db-wal", "neuronav.db-shm"}
            modes = {p.name: oct(_mode(p)) for p in files}
    finally:
        os.umask(previous)
    assert set(modes.values()) == {oct(0o600)}, modes
    assert _mode(data) == 0o700


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    db_file = data / "neuronav.db"
    db_file.touch(mode=0o644)
    os.chmod(db_file, 0o644)
    migrate(f"sqlite:///{db_file}")
    assert _mode(db_file) == 0o600


def test_the_data_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "fresh" / "data"))
    previous = os.umask(0o022)
    try:
        load_settings()  # development: makes the folder and secrets.json
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "fresh" / "data") == 0o700
