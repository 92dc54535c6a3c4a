"""The DICOM node registry from the CLI (`neuronav nodes add|list|remove`) and the admin API; both audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from neuronav.config import Settings
from neuronav.db.models import DicomNodeRow, UserRow
from neuronav.db.session import session_scope
from tests.service.conftest import People, audit_events


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEURONAV_DATA_DIR": str(settings.data_dir), "NEURONAV_DATABASE_URL": settings.database}
    return subprocess.run(
        [sys.executable, "-m", "neuronav.cli", *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def test_nodes_from_the_command_line(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    add = ["nodes", "add", "PACS1", "--ae", "ORTHANC", "--host", "127.0.0.1", "--port", "4242"]
    done = cli(settings, *add, "--incoming", "--send", "seg,sr", "--on", "final,preliminary")
    assert done.returncode == 0, done.stderr
    listed = cli(settings, "nodes", "list", "--json")
    (node,) = json.loads(listed.stdout)
    assert (node["name"], node["ae_title"], node["host"], node["port"], node["incoming"]) == (
        "PACS1", "ORTHANC", "127.0.0.1", 4242, True,
    )  # fmt: skip
    assert node["send"] == ["seg", "sr"] and node["send_on"] == ["preliminary", "final"]

    again = cli(settings, *add)
    assert again.returncode != 0 and "exists already" in again.stderr
    bad = cli(settings, "nodes", "add", "X", "--ae", "A\\B", "--host", "h", "--port", "104", "--send", "pdf")
    assert bad.returncode != 0 and "backslash" in bad.stderr and "unknown output pdf" in bad.stderr

    with session_scope(settings.database) as db:
        row = db.scalars(select(DicomNodeRow)).one()
        account = db.get(UserRow, row.user_id)
        assert account is not None and account.role == "technician" and account.state == "active"
    assert [e.outcome for e in audit_events(settings, "dicom_node.add")] == ["success"]

    assert cli(settings, "nodes", "remove", "PACS1").returncode == 0
    assert json.loads(cli(settings, "nodes", "list", "--json").stdout) == []
    missing = cli(settings, "nodes", "remove", "PACS1")
    assert missing.returncode != 0 and "no DICOM node named PACS1" in missing.stderr
    with session_scope(settings.database) as db:
        assert db.get(UserRow, account.id).state == "disabled"  # type: ignore[union-attr]
    assert len(audit_events(settings, "dicom_node.remove")) == 1


def test_nodes_through_the_admin_api(client: TestClient, people: People, settings: Settings) -> None:
    admin = people.direct_headers(people.create("admin"))
    body = {"name": "ct-1", "ae_title": "CT1", "host": "10.0.0.5", "port": 104, "incoming": True, "send": ["sr"]}
    made = client.post("/api/admin/dicom-nodes", json=body, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["send"] == ["sr"] and made.json()["incoming"] is True
    assert client.post("/api/admin/dicom-nodes", json=body, headers=admin).status_code == 409
    bad = client.post("/api/admin/dicom-nodes", json={**body, "name": "x", "ae_title": "X" * 17}, headers=admin)
    assert bad.status_code == 422
    assert [n["name"] for n in client.get("/api/admin/dicom-nodes", headers=admin).json()] == ["ct-1"]
    assert client.get("/api/admin/dicom-arrivals", headers=admin).json() == []
    assert client.delete("/api/admin/dicom-nodes/ct-1", headers=admin).status_code == 204
    assert client.delete("/api/admin/dicom-nodes/ct-1", headers=admin).status_code == 404
    events = audit_events(settings, "dicom_node.add") + audit_events(settings, "dicom_node.remove")
    assert {e.target_id for e in events} == {"ct-1"} and len(events) == 2
