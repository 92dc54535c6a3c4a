"""Real peers for the tests, started once per session on free loopback ports with their own configuration
in a temporary folder: Orthanc from Debian (DICOM + REST + its DICOMweb plugin).

Imported by ``tests/conftest.py`` so every test module can ask for ``orthanc``. The binary missing is a
FAILURE, never a skip (scripts/setup.sh and CI install it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PLUGIN_FOLDERS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dicomweb_plugin() -> str | None:
    for folder in PLUGIN_FOLDERS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")):
            return str(path)
    return None


@dataclass
class Orthanc:
    """A running Orthanc: ``aet`` on ``dicom_port``, its REST API at ``url`` (DICOMweb at ``url``/dicom-web)."""

    aet: str
    dicom_port: int
    url: str
    folder: Path
    process: subprocess.Popen[bytes]

    def rest(self, method: str, path: str, body: bytes | dict[str, Any] | list[Any] | str | None = None) -> Any:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None and not isinstance(body, bytes):
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as rsp:
            raw = rsp.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def upload(self, files: list[Path]) -> list[str]:
        """Store files through the REST API (not DICOM); their Orthanc instance ids."""
        return [self.rest("POST", "/instances", f.read_bytes())["ID"] for f in files]

    def set_modality(self, name: str, aet: str, host: str, port: int) -> None:
        self.rest("PUT", f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})

    def clear(self) -> None:
        """Delete every patient (each test starts from an empty Orthanc)."""
        for patient in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{patient}")

    def sop_instance_uids(self) -> set[str]:
        """SOPInstanceUIDs of every instance held, as Orthanc's own index reads them."""
        uids = set()
        for inst in self.rest("GET", "/instances?expand"):
            uids.add(inst["MainDicomTags"]["SOPInstanceUID"])
        return uids


def _start_orthanc(folder: Path) -> Orthanc:
    binary = shutil.which("Orthanc")
    if binary is None:
        pytest.fail("Orthanc is not installed; run scripts/setup.sh (CI installs the Debian package orthanc)")
    http_port, dicom_port = free_port(), free_port()
    plugin = dicomweb_plugin()
    config = {
        "Name": "neuronav-tests",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomScuTimeout": 30,
        "DicomScpTimeout": 30,
        "StableAge": 2,
        "ConcurrentJobs": 2,
        "Plugins": [plugin] if plugin else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {},
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 (kept open while Orthanc runs)
    process = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/system", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Orthanc did not start: {tail}")
            time.sleep(0.2)
    return Orthanc("ORTHANC", dicom_port, url, folder, process)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[Orthanc]:
    """One Orthanc for the whole test session (empty it with ``orthanc.clear()`` where that matters)."""
    folder = Path(tempfile.mkdtemp(prefix="neuronav-orthanc-"))
    peer = _start_orthanc(folder)
    try:
        yield peer
    finally:
        peer.process.terminate()
        try:
            peer.process.wait(20)
        except subprocess.TimeoutExpired:
            peer.process.kill()
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["Orthanc", "dicomweb_plugin", "free_port", "orthanc"]
