"""Celery with the real Redis broker and a real worker process runs the same job as the embedded worker."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuronav.config import get_settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.workflow import jobs
from neuronav.workflow.uploads import Upload, receive_upload
from tests.workflow.conftest import Env

BROKER = os.environ.get("NEURONAV_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.celery
@pytest.mark.slow
def test_a_celery_worker_process_analyses_an_uploaded_study(
    env: Env, phantom_zip: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=3).flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {BROKER} ({exc}); CI starts it on 127.0.0.1:6379")
    monkeypatch.setenv("NEURONAV_BROKER_URL", BROKER)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.broker_url == BROKER and settings.data_dir == env.settings.data_dir
    from neuronav.workflow import celery_app

    importlib.reload(celery_app)  # bind the task to the test broker
    worker = subprocess.Popen(
        [sys.executable, "-m", "neuronav.cli", "worker"],
        env={**os.environ},
        stdout=open(tmp_path / "worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        with session_scope(settings.database) as db:
            study = receive_upload(
                db,
                env.store,
                settings,
                user_id=env.user_id,
                uploads=[Upload("s.zip", io.BytesIO(phantom_zip.read_bytes()))],
            ).study
            analysis, queued = jobs.start_analysis(db, settings, study, user_id=env.user_id)
            analysis_id, study_id = analysis.id, study.id
        assert queued
        jobs.dispatch(settings, analysis_id)  # → Redis → the worker process
        deadline = time.monotonic() + 300
        state = "queued"
        while time.monotonic() < deadline and state not in ("done", "failed"):
            time.sleep(2)
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            with session_scope(settings.database) as db:
                a = db.get(AnalysisRow, analysis_id)
                assert a is not None
                state = a.state
        log = (tmp_path / "worker.log").read_text()
        assert state == "done", log[-3000:]
        assert "neuronav.analyse" in log
        with session_scope(settings.database) as db:
            s = db.get(StudyRow, study_id)
            a = db.get(AnalysisRow, analysis_id)
            assert s is not None and a is not None and s.state == "done" and a.result["report_id"]
    finally:
        worker.terminate()
        worker.wait(30)
        importlib.reload(celery_app)
