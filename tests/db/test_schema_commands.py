"""The schema is changed by `neuronav db upgrade` and the service's start-up only; every other command
checks it without writing, and read-only commands never change a database, not even a new one."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from neuronav.cli import app as cli_app
from neuronav.config import Settings, get_settings, load_settings
from neuronav.db.models import AnalysisRow, StudyRow, UserRow
from neuronav.db.session import head_revision, migrate, schema_revision, session_scope
from neuronav.service import create_app
from neuronav.workflow import jobs

READ_ONLY = (["audit", "verify"], ["audit", "head"], ["verify"], ["db", "status"])


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    for name in ("NEURONAV_STORAGE_DIR", "NEURONAV_MASTER_KEY", "NEURONAV_SECRET_KEY", "NEURONAV_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


def _db_file(settings: Settings) -> Path:
    return Path(settings.database.split("///", 1)[1])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_only_commands_write_nothing_in_a_new_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "new-data"
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(data))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    for command in READ_ONLY:
        get_settings.cache_clear()
        result = CliRunner().invoke(cli_app, command)
        assert result.exit_code != 0, command
        message = str(result.exception) + result.output
        assert "neuronav db upgrade" in message, (command, message)
        made = sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []
        assert made == [], f"{command} wrote {made} (no database, no secrets, no storage folder)"
    get_settings.cache_clear()


def test_read_only_commands_leave_an_outdated_database_as_it_is(settings: Settings) -> None:
    migrate(settings.database, "0005")  # one migration behind
    before = _digest(_db_file(settings))
    for command in READ_ONLY:
        result = CliRunner().invoke(cli_app, command)
        assert result.exit_code != 0 and "neuronav db upgrade" in str(result.exception) + result.output, command
    assert schema_revision(settings.database) != head_revision()
    assert _digest(_db_file(settings)) == before


def test_db_upgrade_then_the_read_only_commands_work(settings: Settings) -> None:
    first = CliRunner().invoke(cli_app, ["db", "upgrade"])
    assert first.exit_code == 0 and "upgraded from empty" in first.output, first.output
    again = CliRunner().invoke(cli_app, ["db", "upgrade"])
    assert again.exit_code == 0 and "already at schema" in again.output
    assert schema_revision(settings.database) == head_revision()
    status = CliRunner().invoke(cli_app, ["db", "status"])
    assert status.exit_code == 0, status.output
    verify = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert verify.exit_code == 0 and "intact" in verify.output


def test_the_app_recovers_stale_jobs_at_start_under_any_asgi_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job left `running` by a process that died is re-queued by the app's own start-up (lifespan), not
    only by `neuronav serve`; a job running for a short while is left alone."""
    migrate(settings.database)
    long_ago, just_now = datetime.now(UTC) - timedelta(hours=3), datetime.now(UTC) - timedelta(minutes=1)
    with session_scope(settings.database) as db:
        user = UserRow(email="t@example.org", display_name="T", role="technician", password_hash="x", state="active")
        db.add(user)
        db.flush()
        study = StudyRow(content_sha256="0" * 64, sequences={}, uploaded_by=user.id)
        db.add(study)
        db.flush()
        stale = AnalysisRow(study_id=study.id, cache_key="a", model="m", state="running", started_at=long_ago)
        fresh = AnalysisRow(study_id=study.id, cache_key="b", model="m", state="running", started_at=just_now)
        db.add_all([stale, fresh])
        db.flush()
        stale_id, fresh_id = stale.id, fresh.id
    dispatched: list[str] = []
    monkeypatch.setattr(jobs, "dispatch", lambda _settings, analysis_id: dispatched.append(analysis_id))
    with TestClient(create_app(settings)):
        pass
    assert dispatched == [stale_id]
    with session_scope(settings.database) as db:
        assert db.get(AnalysisRow, stale_id).state == "queued"  # type: ignore[union-attr]
        assert db.get(AnalysisRow, fresh_id).state == "running"  # type: ignore[union-attr]
