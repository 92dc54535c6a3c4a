"""Browser tests of the web UI: the real service (uvicorn, SQLite, embedded worker) on a free loopback
port, people of every role, and Debian's Chromium driven by Playwright for Python.

Every test here carries the ``browser`` mark and the ``xdist_group("browser")`` (one worker runs them,
so the server and its analysed study are made once). The UI must be built (``scripts/setup.sh``); a
missing build or browser fails the tests with the reason, it never skips them.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from neuronav.config import Settings, load_settings
from neuronav.phantom import generate_study
from neuronav.security import totp
from neuronav.service import create_app
from neuronav.service.routes.web import WEBUI
from neuronav.workflow.operations import create_account
from tests.conftest import zip_phantom

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "quiet river stone lantern"
AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass(frozen=True)
class Account:
    role: str
    email: str
    password: str = PASSWORD
    totp_secret: str | None = None


@dataclass
class LiveServer:
    url: str
    settings: Settings
    accounts: dict[str, Account]

    def token(self, role: str) -> str:
        a = self.accounts[role]
        body: dict[str, str] = {"email": a.email, "password": a.password}
        if a.totp_secret:
            body["totp_code"] = totp.code_at(a.totp_secret, totp.current_step())
        r = httpx.post(f"{self.url}/api/auth/login", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    assert (WEBUI / "index.html").is_file(), f"the web UI is not built in {WEBUI}: run bash scripts/setup.sh"
    root = tmp_path_factory.mktemp("live")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURONAV_DATA_DIR", str(root / "data"))
        mp.setenv("NEURONAV_ENV", "development")
        mp.setenv("NEURONAV_DATABASE_URL", f"sqlite:///{root / 'service.db'}")
        mp.setenv("NEURONAV_MAX_UPLOAD_BYTES", str(300 * 1024 * 1024))
        for name in ("NEURONAV_STORAGE_DIR", "NEURONAV_MASTER_KEY", "NEURONAV_SECRET_KEY", "NEURONAV_PSEUDONYM_KEY"):
            mp.delenv(name, raising=False)
        settings = load_settings()
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        assert thread.is_alive(), "the service stopped while starting"
        time.sleep(0.05)
    accounts: dict[str, Account] = {}
    for role in ("technician", "radiologist", "neurologist", "admin"):
        secret = totp.new_secret() if role == "admin" else None
        email = f"{role}@hospital.example"
        create_account(
            settings,
            email,
            PASSWORD,
            role,
            display_name=f"Dr {role.title()}" if role in ("radiologist", "neurologist") else f"{role.title()} One",
            active=True,
            licence=None if role in ("technician", "admin") else f"GMC-{role[:3].upper()}-1",
            totp_secret=secret,
        )
        accounts[role] = Account(role, email, totp_secret=secret)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, accounts)
    server.should_exit = True
    thread.join(timeout=30)


def phantom_zip(root: Path, seed: int, lesion: str = "glioma") -> Path:
    """A phantom study (4 sequences, DICOM) zipped as a technician would upload it."""
    out = root / f"study-{seed}.zip"
    out.write_bytes(zip_phantom(root, seed, lesion))
    return out


def upload_and_wait(server: LiveServer, path: Path, timeout: float = 400) -> str:
    """Upload through the API as the technician and wait for the analysis; the study id."""
    headers = {"Authorization": f"Bearer {server.token('technician')}"}
    with open(path, "rb") as fh:
        r = httpx.post(
            f"{server.url}/api/studies",
            headers=headers,
            files=[("files", (path.name, fh, "application/zip"))],
            timeout=300,
        )
    assert r.status_code == 201, r.text
    study, analysis_id = r.json()["study"], r.json()["study"]["analysis"]["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = httpx.get(f"{server.url}/api/analyses/{analysis_id}", headers=headers, timeout=30).json()
        if a["state"] in ("done", "failed"):
            assert a["state"] == "done", a
            return str(study["id"])
        time.sleep(1)
    raise AssertionError("the analysis did not finish")


@dataclass(frozen=True)
class Studies:
    current: str  # analysed; its patient also has ...
    prior: str  # ... an earlier study, analysed


@pytest.fixture(scope="session")
def analysed_study(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Studies:
    """A study and an earlier one of the same patient, uploaded and analysed through the API, for the
    tests that read them."""
    root = tmp_path_factory.mktemp("phantom")
    current = phantom_zip(root, seed=515)
    prior = follow_up_zip(root, seed=517, patient_of=current, study_date="20180115")
    return Studies(current=upload_and_wait(live_server, current), prior=upload_and_wait(live_server, prior))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: run bash scripts/setup.sh (Debian package chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def sign_in(page: object, server: LiveServer, role: str) -> None:
    """Sign in through the login page (with the TOTP code for accounts that have one)."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    a = server.accounts[role]
    page.goto(f"{server.url}/#/login")
    page.get_by_label("E-mail").fill(a.email)
    page.get_by_label("Password", exact=True).fill(a.password)
    page.get_by_role("button", name="Sign in").click()
    if a.totp_secret:
        code = page.get_by_label("Authentication code (6 digits)")
        expect(code).to_be_visible()
        code.fill(totp.code_at(a.totp_secret, totp.current_step()))
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible(timeout=20000)


def coloured_pixels(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Masks of a screenshot: label-overlay colours (red, green, yellow blended over grey: red or green
    well above blue) and the cyan crosshair (blue and green well above red)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    overlay = (np.maximum(r, g) - b > 40) & (np.abs(r - g) + np.abs(g - b) > 40)
    crosshair = (b - r > 80) & (g - r > 60)
    return overlay, crosshair


def follow_up_zip(root: Path, seed: int, patient_of: Path, study_date: str) -> Path:
    """Another phantom study made to belong to the patient of ``patient_of`` (a phantom zip), on
    ``study_date``: the same patient identity, its own study and series."""
    import pydicom

    with zipfile.ZipFile(patient_of) as zf:
        first = pydicom.dcmread(io.BytesIO(zf.read(sorted(zf.namelist())[0])), stop_before_pixels=True)
    generate_study(root / f"s{seed}", seed=seed, lesion="glioma", fmt="dicom", profile="clinical")
    out = root / f"study-{seed}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((root / f"s{seed}" / "dicom").rglob("*")):
            if not f.is_file():
                continue
            ds = pydicom.dcmread(f)
            ds.PatientID, ds.PatientName, ds.PatientBirthDate = (
                first.PatientID,
                first.PatientName,
                first.PatientBirthDate,
            )
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            zf.writestr(str(f.relative_to(root / f"s{seed}")), buf.getvalue())
    return out
