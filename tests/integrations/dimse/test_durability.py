"""Nothing acknowledged is lost: `neuronav serve` (with NEURONAV_DICOM_PORT) killed -9 while storescu
sends a study keeps every instance it answered Success; the sender sends again after the restart (each
instance counted once); a restart completes the study that was waiting for its stable age."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from neuronav.config import get_settings, load_settings
from neuronav.db.models import DicomArrivalRow, DicomInstanceRow, StudyRow
from neuronav.db.session import migrate, session_scope
from neuronav.workflow.nodes import NodeIn, add_node
from tests.conftest import require_binary
from tests.integrations.dimse.conftest import dcmtk, phantom_files, wait_for
from tests.peers import free_port

pytestmark = [pytest.mark.dcmtk, pytest.mark.pacs, pytest.mark.slow]


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 (the server's log, kept open while it runs)
    http = str(free_port())
    return subprocess.Popen(
        [sys.executable, "-m", "neuronav.cli", "serve", "--port", http], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"neuronav serve exited with {process.returncode}")
    return dcmtk("echoscu", "-aet", "STORESCU", "-aec", "NEURONAV", "127.0.0.1", port, timeout=30).returncode == 0


def test_kill_mid_study_restart_resend_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phantom_dicom: Path
) -> None:
    port = free_port()
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    for name in ("NEURONAV_DATABASE_URL", "NEURONAV_BROKER_URL", "NEURONAV_STORAGE_DIR", "NEURONAV_DICOM_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEURONAV_DICOM_PORT", str(port))
    monkeypatch.setenv("NEURONAV_DICOM_STABLE_AGE", "3600")  # nothing completes until the last restart
    get_settings.cache_clear()
    settings = load_settings()  # generates the development secrets the server will read
    migrate(settings.database)
    with session_scope(settings.database) as db:
        add_node(db, None, NodeIn(name="scanner", ae_title="STORESCU", host="127.0.0.1", port=104, incoming=True))
    env = {**os.environ}
    log = tmp_path / "serve.log"

    def held() -> int:
        with session_scope(settings.database) as db:
            return db.query(DicomInstanceRow).count()

    server = _serve(env, log)
    try:
        wait_for(lambda: _listening(port, server), 120, "the listener")
        sender = subprocess.Popen(
            [require_binary("storescu"), "-v", "-aet", "STORESCU", "-aec", "NEURONAV", "+sd", "+r", "-nh",
             "127.0.0.1", str(port), str(phantom_dicom)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wait_for(lambda: held() >= 100, 120, "100 instances stored")
        server.send_signal(signal.SIGKILL)  # between two instances, or in the middle of one
        server.wait()
        said, _ = sender.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    acknowledged = said.count("Received Store Response (Success)")
    stored = held()
    assert 100 <= stored < 576
    assert acknowledged <= stored  # every Success answered was stored (at most the one in flight is extra)

    server = _serve(env, log)  # the restart; the sender sends the whole study again
    try:
        wait_for(lambda: _listening(port, server), 120, "the listener after the restart")
        again = dcmtk("storescu", "-aet", "STORESCU", "-aec", "NEURONAV", "+sd", "+r", "-nh", "127.0.0.1", port,
                      phantom_dicom)  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert held() == len(phantom_files(phantom_dicom)) == 576  # the ones sent twice counted once
        server.send_signal(signal.SIGKILL)
        server.wait()
    finally:
        if server.poll() is None:
            server.kill()
    with session_scope(settings.database) as db:
        (arrival,) = db.scalars(select(DicomArrivalRow)).all()
        assert (arrival.state, arrival.instances) == ("receiving", 576)

    env["NEURONAV_DICOM_STABLE_AGE"] = "1"  # the study has been stable long enough: completed at start
    time.sleep(1.5)
    server = _serve(env, log)
    try:

        def completed() -> bool:
            if server.poll() is not None:
                pytest.fail(f"neuronav serve exited with {server.returncode}: {log.read_text()[-2000:]}")
            with session_scope(settings.database) as db:
                return db.scalars(select(DicomArrivalRow.state)).one() != "receiving"

        wait_for(completed, 180, "the waiting study to complete at start")
    finally:
        server.kill()
        server.wait()
    with session_scope(settings.database) as db:
        arrival = db.scalars(select(DicomArrivalRow)).one()
        assert arrival.state == "received", arrival.reason
        study = db.get(StudyRow, arrival.study_id)
        assert study is not None and study.n_files == 576
