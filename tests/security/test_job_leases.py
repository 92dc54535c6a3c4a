"""Crash recovery of analysis jobs (issue 17, finding 7): an analysis whose process was killed stayed
`running` until a server restarted an hour later, and starting it again returned the stuck job. Jobs now
hold a lease renewed by a heartbeat; an expired lease is re-queued (or failed with the reason after the
last attempt) within minutes by any server or worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from neuronav.config import Settings, get_settings
from neuronav.db.models import AnalysisRow, StudyRow, UserRow, utcnow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.errors import InputError
from neuronav.workflow import jobs


@dataclass
class Env:
    settings: Settings
    study_id: str
    dispatched: list[str]


def _running_study(settings: Settings) -> str:
    """A migrated database holding a technician and a study being analysed; the study's id."""
    migrate(settings.database)
    with session_scope(settings.database) as db:
        user = UserRow(email="t@x.org", display_name="T", role="technician", password_hash="x", state="active")
        db.add(user)
        db.flush()
        study = StudyRow(content_sha256="c" * 64, uploaded_by=user.id, state="running")
        db.add(study)
        db.flush()
        return study.id


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEURONAV_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings().model_copy(update={"job_lease_s": 120.0, "job_heartbeat_s": 0.1})
    study_id = _running_study(settings)
    dispatched: list[str] = []
    monkeypatch.setattr(jobs, "dispatch", lambda _settings, analysis_id: dispatched.append(analysis_id))
    monkeypatch.setattr(jobs, "cache_key", lambda study: "k" * 64)
    yield Env(settings, study_id, dispatched)
    session_factory.cache_clear()
    get_settings.cache_clear()


def analysis(env: Env, *, state: str = "running", silent_s: float = 180, attempts: int = 1) -> str:
    """An analysis as a process left it: ``running``, its last heartbeat ``silent_s`` seconds ago."""
    with session_scope(env.settings.database) as db:
        beat = utcnow() - timedelta(seconds=silent_s)
        a = AnalysisRow(
            study_id=env.study_id,
            cache_key="k" * 64,
            model="m",
            state=state,
            attempts=attempts,
            started_at=beat,
            heartbeat_at=beat,
            lease_owner="dead-host:4242:0123456789ab" if state == "running" else None,
        )
        db.add(a)
        db.flush()
        return a.id


def row(env: Env, analysis_id: str) -> AnalysisRow:
    with session_scope(env.settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        assert a is not None
        db.expunge(a)
        return a


def study_state(env: Env) -> str:
    with session_scope(env.settings.database) as db:
        study = db.get(StudyRow, env.study_id)
        assert study is not None
        return study.state


def test_a_killed_job_is_requeued_by_the_sweep(env: Env) -> None:
    killed = analysis(env, silent_s=180)
    alive = analysis(env, silent_s=5)
    assert jobs.recover_expired(env.settings) == [killed]
    assert env.dispatched == [killed]
    a = row(env, killed)
    assert a.state == "queued" and a.lease_owner is None and "no heartbeat" in (a.error or "")
    assert study_state(env) == "queued"
    assert row(env, alive).state == "running"  # its process is alive: untouched
    assert jobs.recover_expired(env.settings) == []  # taken once


def test_starting_a_killed_job_again_requeues_it(env: Env) -> None:
    killed = analysis(env, silent_s=180)
    with session_scope(env.settings.database) as db:
        study = db.get(StudyRow, env.study_id)
        assert study is not None
        found, queued_now = jobs.start_analysis(db, env.settings, study, user_id=None)
        assert (found.id, queued_now, found.state) == (killed, True, "queued")
    alive = analysis(env, silent_s=5)
    with session_scope(env.settings.database) as db:
        study = db.get(StudyRow, env.study_id)
        assert study is not None
        found, queued_now = jobs.start_analysis(db, env.settings, study, user_id=None)
        assert queued_now is False and found.state in ("queued", "running") and found.id in (killed, alive)


def test_the_last_attempt_fails_with_the_reason(env: Env) -> None:
    killed = analysis(env, silent_s=180, attempts=jobs.MAX_ATTEMPTS)
    assert jobs.recover_expired(env.settings) == [] and env.dispatched == []
    a = row(env, killed)
    assert a.state == "failed" and a.finished_at is not None
    assert f"on each of its {jobs.MAX_ATTEMPTS} attempts" in (a.error or "")
    assert study_state(env) == "failed"


def test_a_running_job_renews_its_lease_and_cannot_be_claimed_twice(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    queued = analysis(env, state="queued", attempts=0)
    seen: dict[str, object] = {}

    def slow_upload(db: object, study_id: str) -> list[object]:  # runs inside the job, lease held
        first = row(env, queued)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and row(env, queued).heartbeat_at == first.heartbeat_at:
            time.sleep(0.05)
        seen["renewed"] = row(env, queued).heartbeat_at != first.heartbeat_at
        seen["owner"] = first.lease_owner
        seen["second delivery"] = jobs.run_analysis(queued, env.settings)  # e.g. a task delivered twice
        raise InputError("stop here")

    monkeypatch.setattr("neuronav.workflow.uploads.upload_objects", slow_upload)
    assert jobs.run_analysis(queued, env.settings) == "failed"
    assert seen["renewed"] is True and seen["second delivery"] == "skipped"
    assert isinstance(seen["owner"], str) and seen["owner"].count(":") == 2
    a = row(env, queued)
    assert a.state == "failed" and a.lease_owner is None and a.attempts == 1


def test_a_job_that_lost_its_lease_writes_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that stalled past its lease (re-queued meanwhile) must not overwrite the new run's row."""
    queued = analysis(env, state="queued", attempts=0)

    def stalled(db: object, study_id: str) -> list[object]:
        with session_scope(env.settings.database) as s:
            a = s.get(AnalysisRow, queued)
            assert a is not None
            a.heartbeat_at = utcnow() - timedelta(minutes=5)  # as if it had hung for five minutes
        assert jobs.recover_expired(env.settings) == [queued]
        raise InputError("late failure")

    monkeypatch.setattr("neuronav.workflow.uploads.upload_objects", stalled)
    assert jobs.run_analysis(queued, env.settings) == "skipped"
    assert row(env, queued).state == "queued"  # left for the re-queued run, not marked failed


def test_servers_sweep_expired_leases_periodically(env: Env) -> None:
    from fastapi.testclient import TestClient

    from neuronav.service.app import create_app

    settings = env.settings.model_copy(update={"maintenance_interval_s": 0.2})
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        killed = analysis(env, silent_s=180)  # dies after the server started: no restart needed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and row(env, killed).state == "running":
            time.sleep(0.05)
        assert row(env, killed).state == "queued" and killed in env.dispatched
    assert not any(t.name == "neuronav-maintenance" and t.is_alive() for t in threading.enumerate())


@pytest.mark.postgres
def test_leases_on_postgresql(env: Env, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same conditional UPDATEs (claim, heartbeat, expiry) on PostgreSQL's timestamptz."""
    settings = env.settings.model_copy(update={"database_url": postgres_url})
    pg = Env(settings, _running_study(settings), env.dispatched)
    killed, alive = analysis(pg, silent_s=180), analysis(pg, silent_s=5)
    assert jobs.recover_expired(settings) == [killed] and row(pg, alive).state == "running"

    def check(db: object, study_id: str) -> list[object]:
        assert jobs.run_analysis(killed, settings) == "skipped"  # held by this run
        raise InputError("stop")

    monkeypatch.setattr("neuronav.workflow.uploads.upload_objects", check)
    assert jobs.run_analysis(killed, settings) == "failed"
    assert row(pg, killed).lease_owner is None


def test_celery_workers_run_the_sweep_too(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronav.workflow import celery_app

    monkeypatch.setenv("NEURONAV_MAINTENANCE_INTERVAL_S", "0.2")
    monkeypatch.setenv("NEURONAV_JOB_LEASE_S", "120")
    get_settings.cache_clear()
    killed = analysis(env, silent_s=180)
    celery_app._start_maintenance()  # what the worker_ready signal runs
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and row(env, killed).state == "running":
            time.sleep(0.05)
        assert row(env, killed).state == "queued" and env.dispatched == [killed]
    finally:
        celery_app._stop_maintenance()
    assert not any(t.name == "neuronav-maintenance" and t.is_alive() for t in threading.enumerate())
