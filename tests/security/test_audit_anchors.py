"""Audit anchors shipped off the server (issue 17, finding 8): whoever can rewrite the database can cut the
tail of the audit log and rebuild the chain; an anchor kept elsewhere shows it. Shipped to a file sink
and to syslog over TLS (RFC 5424 / 5425), by the server on a schedule and by `neuronav audit ship`."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuronav import audit
from neuronav.config import Settings, get_settings
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.errors import ConfigError
from neuronav.workflow import anchors
from tests.tls import self_signed


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    s = get_settings()
    migrate(s.database)
    yield s
    session_factory.cache_clear()
    get_settings.cache_clear()


def record(s: Settings, action: str) -> audit.Anchor:
    with session_scope(s.database) as db:
        event = audit.record(db, action, target_id="x")
        return audit.Anchor(event.seq, event.hash)


def test_file_sink_appends_one_line_per_shipment(settings: Settings, tmp_path: Path) -> None:
    sink = tmp_path / "anchors" / "audit.log"
    s = settings.model_copy(update={"audit_anchor_sink": f"file:{sink}"})
    assert anchors.ship(s) is None and not sink.exists()  # an empty log ships nothing
    first = record(s, "login")
    assert anchors.ship(s) == first
    second = record(s, "study.upload")
    assert anchors.ship(s) == second
    lines = sink.read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(first), str(second)]
    assert all(" neuronav audit-anchor " in line for line in lines)
    assert sink.stat().st_mode & 0o777 == 0o600
    # the anchor shipped catches a cut-off tail
    with session_scope(s.database) as db:
        assert audit.verify(db, anchor=audit.Anchor.parse(lines[-1].rsplit(" ", 1)[1])) is None


def test_server_ships_anchors_on_a_schedule(settings: Settings, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from neuronav.service.app import create_app

    sink = tmp_path / "anchors.log"
    s = settings.model_copy(update={"audit_anchor_sink": f"file:{sink}", "audit_anchor_interval_s": 0.2})
    anchor = record(s, "login")
    with TestClient(create_app(s)) as client:
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not sink.exists() or len(sink.read_text().splitlines()) < 2):
            time.sleep(0.05)
    lines = sink.read_text().splitlines()
    assert len(lines) >= 2 and lines[-1].endswith(str(anchor))
    time.sleep(0.5)
    assert len(sink.read_text().splitlines()) == len(lines)  # stopped with the app


def test_cli_ships_once(settings: Settings, tmp_path: Path) -> None:
    sink = tmp_path / "cli-anchors.log"
    anchor = record(settings, "login")
    env = {**os.environ, "NEURONAV_AUDIT_ANCHOR_SINK": f"file:{sink}"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuronav.cli", "audit", "ship"], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"shipped {anchor}"
    assert sink.read_text().strip().endswith(str(anchor))


def test_bad_sinks_are_refused() -> None:
    for bad in ("file:relative/path", "syslog+tls://nohost", "http://x:1", "syslog+tls://h:notaport"):
        with pytest.raises(ConfigError, match="NEURONAV_AUDIT_ANCHOR_SINK"):
            anchors.parse_sink(bad)
    assert anchors.parse_sink("syslog+tls://logs.example.org:6514") == anchors.Sink(
        "syslog+tls", host="logs.example.org", port=6514
    )


# -- syslog over TLS against a listener on loopback ---------------------------------------------------


class TlsListener:
    """A TLS server on 127.0.0.1 that keeps what each connection sent."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while chunk := tls.recv(4096):
                        data += chunk
                    self.received.append(data)
            except (ssl.SSLError, OSError):
                self.received.append(b"<handshake failed>")

    def close(self) -> None:
        self.sock.close()


def test_syslog_over_tls_rfc5424(settings: Settings, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    listener = TlsListener(cert, key)
    try:
        sink = f"syslog+tls://127.0.0.1:{listener.port}"
        anchor = record(settings, "report.sign")
        s = settings.model_copy(update={"audit_anchor_sink": sink, "audit_anchor_ca_file": cert})
        assert anchors.ship(s) == anchor
        deadline = time.monotonic() + 10
        while not listener.received and time.monotonic() < deadline:
            time.sleep(0.02)
        (data,) = listener.received
        length, _, message = data.partition(b" ")  # RFC 5425 octet counting
        assert int(length) == len(message)
        text = message.decode("ascii")
        pattern = (
            r"<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ neuronav \d+ audit-anchor "
            rf'\[anchor@32473 seq="{anchor.seq}" hash="{anchor.hash}"\] audit anchor {anchor}'
        )
        assert re.fullmatch(pattern, text), text
        # without the CA, the listener's self-signed certificate is not trusted: nothing is sent
        untrusted = settings.model_copy(update={"audit_anchor_sink": sink})
        with pytest.raises(ssl.SSLCertVerificationError):
            anchors.ship(untrusted)
    finally:
        listener.close()
