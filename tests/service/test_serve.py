"""`neuronav serve` as a new user runs it: a child process on an empty data folder, nothing set up.

The README's main-job command is `neuronav serve --demo`; plain `neuronav serve` must start too (it
once stopped on "no such table" because it looked for stale jobs before creating the tables).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

NEW_PASSWORD = "a fresh passphrase for the demo reader"


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data: Path, *args: str, ready_within: float) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURONAV_")}
    env["NEURONAV_DATA_DIR"] = str(data)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuronav.cli", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", proc)
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: served.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if proc.poll() is not None:
                reader.join(5)
                pytest.fail(f"neuronav serve exited with {proc.returncode}:\n{served.output()}")
            try:
                if httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"neuronav serve not ready within {ready_within:.0f} s:\n{served.output()}")
            time.sleep(0.3)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path / "data", ready_within=60)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path / "data", "--demo", ready_within=300)


def test_serve_starts_on_an_empty_data_folder(plain: Served, tmp_path: Path) -> None:
    health = httpx.get(f"{plain.url}/healthz", timeout=5)
    assert health.status_code == 200
    data = tmp_path / "data"
    assert (data / "neuronav.db").is_file() and (data / "storage").is_dir()
    assert "database sqlite, worker embedded" in plain.output()
    # the tables exist: an unknown account is refused as such, not with a server error
    login = httpx.post(f"{plain.url}/api/auth/login", json={"email": "nobody@x.example", "password": "x" * 12})
    assert login.status_code == 401, login.text


@pytest.mark.slow
def test_serve_demo_gives_a_reader_an_analysed_phantom_study(demo: Served) -> None:
    text = demo.output()
    found = re.search(r"demo radiologist\s+(\S+)\s+one-time password: (\S+)", text)
    assert found is not None, text
    email, password = found.groups()
    assert re.search(r"demo admin\s+\S+\s+one-time password: \S+\s+TOTP secret: [A-Z2-7]+", text), text
    study_id = re.search(r"demo study (\S+) analysed", text)
    assert study_id is not None, text

    with httpx.Client(base_url=demo.url, timeout=30) as client:
        signed = client.post("/api/auth/login", json={"email": email, "password": password})
        assert signed.status_code == 200, signed.text
        assert signed.json()["password_change_required"] is True
        client.cookies.clear()
        headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        assert client.get("/api/studies", headers=headers).status_code == 403  # change the password first
        changed = client.post(
            "/api/auth/password", json={"current_password": password, "new_password": NEW_PASSWORD}, headers=headers
        )
        assert changed.status_code == 200, changed.text

        listing = client.get("/api/studies", headers=headers).json()
        assert listing["total"] == 1
        study = listing["items"][0]
        assert study["id"] == study_id.group(1)
        assert study["analysis"]["state"] == "done" and study["flagged"] is True  # the phantom has a glioma
        result = client.get(f"/api/analyses/{study['analysis']['id']}/result", headers=headers).json()
        report = client.get(f"/api/reports/{result['report_id']}", headers=headers)
        assert report.status_code == 200 and report.json()["status"] == "preliminary"
        pdf = client.get(f"/api/reports/{result['report_id']}/export/pdf", headers=headers)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
