"""The worklist's "Search PACS" panel in Chromium, against a real Orthanc: a technician searches by patient
ID, sees the study the PACS holds, pulls it, and it appears in their worklist (the service's own listener
receives the C-MOVE; analyses are recorded, not run)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import uvicorn
from playwright.sync_api import Browser, expect

from neuronav.config import load_settings
from neuronav.db.session import session_scope
from neuronav.phantom import generate_study
from neuronav.service import create_app
from neuronav.workflow import jobs
from neuronav.workflow.nodes import NodeIn, add_node
from neuronav.workflow.operations import create_account
from tests.peers import Orthanc, free_port
from tests.web.conftest import PASSWORD, Account, LiveServer, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.pacs, pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture
def pacs_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orthanc: Orthanc) -> Iterator[LiveServer]:
    for name in ("NEURONAV_STORAGE_DIR", "NEURONAV_MASTER_KEY", "NEURONAV_SECRET_KEY", "NEURONAV_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.setenv("NEURONAV_DATABASE_URL", f"sqlite:///{tmp_path / 'service.db'}")
    monkeypatch.setenv("NEURONAV_DICOM_PORT", str(free_port()))
    monkeypatch.setenv("NEURONAV_PACS_NODE", "pacs")
    monkeypatch.setenv("NEURONAV_DICOM_STABLE_AGE", "1")
    settings = load_settings()
    monkeypatch.setattr(jobs, "dispatch", lambda _s, _analysis_id: None)  # analyses recorded, not run
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    email = "tech-pacs@hospital.example"
    create_account(settings, email, PASSWORD, "technician", display_name="Tech Pacs", active=True, licence=None)
    with session_scope(settings.database) as db:
        add_node(db, None, NodeIn(name="pacs", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                                  incoming=True))  # fmt: skip
    orthanc.clear()
    assert settings.dicom_port is not None
    orthanc.set_modality("neuronav", settings.dicom_ae_title, "127.0.0.1", settings.dicom_port)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, {"technician": Account("technician", email)})
    server.should_exit = True
    thread.join(timeout=30)


def test_a_technician_searches_the_pacs_and_pulls_a_study(
    browser: Browser, pacs_server: LiveServer, orthanc: Orthanc, tmp_path: Path
) -> None:
    generate_study(tmp_path / "s", seed=41, fmt="dicom", profile="clinical")
    flair = sorted(next((tmp_path / "s" / "dicom").glob("*_FLAIR")).iterdir())
    orthanc.upload(flair)
    first = pydicom.dcmread(flair[0], stop_before_pixels=True)

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, pacs_server, "technician")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    page.get_by_text("Search PACS").click()
    panel = page.get_by_role("search", name="Search the PACS")
    panel.get_by_label("Patient ID").fill(str(first.PatientID))
    panel.get_by_role("button", name="Search").click()
    row = page.locator(f"tr[data-study-uid='{first.StudyInstanceUID}']")
    expect(row).to_be_visible(timeout=30000)
    expect(row).to_contain_text("MR")
    expect(row).to_contain_text(str(len(flair)))
    row.get_by_role("button", name="Pull").click()
    expect(row).to_contain_text(f"Received ({len(flair)} instances)", timeout=120000)
    # the pulled study is the technician's upload: their worklist lists it
    expect(page.locator("table.worklist tbody tr[data-study-id]")).to_have_count(1, timeout=20000)
