"""Where results go on the DICOM network: a DICOM node that receives results owns a destination of kind
``dicom`` (made and removed with it), ``default_route`` sends a study's results back to the node that sent
it, STOW-RS endpoints are added like other destinations, and a peer's C-STORE status decides a delivery.

The round trip against a real PACS (Orthanc) is ``tests/integrations/dimse/test_results_to_pacs.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from neuronav.db.models import DeliveryRow, DestinationRow, DicomArrivalRow, DicomNodeRow
from neuronav.db.session import session_scope
from neuronav.errors import ConflictError, InputError
from neuronav.integrations.dimse.status import store_outcome
from neuronav.workflow import deliveries, reports
from neuronav.workflow.nodes import NodeIn, add_node, remove_node
from tests.integrations import test_outbox
from tests.integrations.test_outbox import SIGNING_PASSWORD, World, _deliveries, _stored_report

world = test_outbox.world  # the same fresh database, store, radiologist and admin


def _node(w: World, name: str, ae: str, **fields: object) -> None:
    with session_scope(w.settings.database) as db:
        add_node(db, None, NodeIn(name=name, ae_title=ae, host="127.0.0.1", port=11112, **fields))  # type: ignore[arg-type]


def _destinations(w: World) -> dict[str, DestinationRow]:
    with session_scope(w.settings.database) as db:
        rows = {r.name: r for r in db.scalars(select(DestinationRow))}
        db.expunge_all()
        return rows


def test_a_node_that_receives_results_owns_one_dicom_destination(world: World) -> None:
    _node(world, "pacs", "PACS", send=["sr", "seg"], send_on=["final"], default_route=True)
    _node(world, "scanner", "SCANNER", incoming=True)  # sends studies, receives nothing
    _node(world, "half", "HALF", send=["sr"])  # outputs but no moment: receives nothing
    dests = _destinations(world)
    assert set(dests) == {"pacs"}
    pacs = dests["pacs"]
    assert (pacs.kind, pacs.outputs, pacs.events) == ("dicom", ["seg", "sr"], ["final", "amendment"])
    assert pacs.config["default_route"] is True and pacs.identified
    with session_scope(world.settings.database) as db:
        node = db.scalars(select(DicomNodeRow).where(DicomNodeRow.name == "pacs")).one()
        assert pacs.config["node_id"] == node.id
        with pytest.raises(ConflictError, match="nodes remove pacs"):
            deliveries.remove_destination(db, world.admin, "pacs")
        with pytest.raises(InputError, match="nodes add"):
            deliveries.add_destination(db, world.store, world.admin, "pacs2", "dicom", {})
    with session_scope(world.settings.database) as db:
        remove_node(db, None, "pacs")
    assert _destinations(world) == {}


def test_a_node_cannot_take_the_name_of_another_destination(world: World) -> None:
    with session_scope(world.settings.database) as db:
        deliveries.add_destination(db, world.store, world.admin, "pacs", "dicomweb", {"base_url": "http://p/dw"})
    with pytest.raises(ConflictError, match="dicomweb destination is named pacs"):
        _node(world, "pacs", "PACS", send=["sr"], send_on=["final"])
    with session_scope(world.settings.database) as db:  # nothing half-made
        assert db.scalars(select(DicomNodeRow)).all() == []


def test_default_route_sends_results_back_to_the_node_that_sent_the_study(world: World) -> None:
    _node(world, "origin", "ORIGIN", incoming=True, send=["sr"], send_on=["preliminary"], default_route=True)
    _node(world, "elsewhere", "ELSE", incoming=True, send=["sr"], send_on=["preliminary"], default_route=True)
    _node(world, "archive", "ARCHIVE", send=["seg", "sr"], send_on=["preliminary", "final"])  # every study
    with session_scope(world.settings.database) as db:
        origin = db.scalars(select(DicomNodeRow).where(DicomNodeRow.name == "origin")).one()
        db.add(DicomArrivalRow(study_uid_digest="d" * 64, node_id=origin.id, state="received", study_id=world.study_id))
    rid = _stored_report(world)  # preliminary, as the analysis stores it
    with session_scope(world.settings.database) as db:
        report = reports.load(db, world.store, rid)
        made = deliveries.enqueue(db, report, study_id=world.study_id)
        names = sorted((db.get(DestinationRow, d.destination_id).name, d.output, d.event) for d in made)  # type: ignore[union-attr]
    assert names == [
        ("archive", "seg", "preliminary"),
        ("archive", "sr", "preliminary"),
        ("origin", "sr", "preliminary"),
    ]
    with session_scope(world.settings.database) as db:  # a study not sent by a node goes to no default route
        assert [d.output for d in deliveries.enqueue(db, report, study_id=None)] == []
    # version 1 signed is a delivery of its own (final), though version 1 was sent as preliminary already
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    rows = _deliveries(world)
    assert sorted((r.output, r.event) for r in rows if r.event == "final") == [("seg", "final"), ("sr", "final")]
    assert len({r.idempotency_key for r in rows}) == len(rows) == 5


def test_stow_rs_destinations_are_checked(world: World) -> None:
    with session_scope(world.settings.database) as db:
        add = deliveries.add_destination
        with pytest.raises(InputError, match="base-url"):
            add(db, world.store, world.admin, "x", "dicomweb", {"base_url": "orthanc:8042"})
        with pytest.raises(InputError, match="basic needs --username"):
            add(db, world.store, world.admin, "x", "dicomweb", {"base_url": "http://p/dw", "auth": "basic"})
        with pytest.raises(InputError, match="needs the secret token"):
            add(db, world.store, world.admin, "x", "dicomweb", {"base_url": "http://p/dw", "auth": "bearer"})
        with pytest.raises(InputError, match="auth must be none, basic or bearer"):
            add(db, world.store, world.admin, "x", "dicomweb", {"base_url": "http://p/dw", "auth": "oauth"})
        with pytest.raises(InputError, match="unknown dicomweb output pdf"):
            add(db, world.store, world.admin, "x", "dicomweb", {"base_url": "http://p/dw"}, outputs=["pdf"])
        with pytest.raises(InputError, match="outputs are chosen for dicomweb"):
            add(db, world.store, world.admin, "x", "hl7", {"host": "h", "port": 1}, outputs=["seg"])
        with pytest.raises(InputError, match="no secret named client_secret"):
            add(
                db,
                world.store,
                world.admin,
                "x",
                "dicomweb",
                {"base_url": "http://p/dw"},
                secrets={"client_secret": "s"},
            )
        made = add(
            db, world.store, world.admin, "web", "dicomweb",
            {"base_url": "https://pacs.example/dicom-web/", "auth": "basic", "username": "nn"},
            secrets={"password": "pw-secret"}, outputs=["sr", "seg"],
        )  # fmt: skip
    assert made.config["base_url"] == "https://pacs.example/dicom-web" and made.outputs == ["seg", "sr"]
    assert made.secrets_set == ["password"] and "pw-secret" not in repr(made)


def test_the_cli_adds_a_stow_rs_destination(world: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neuronav.cli import app as cli_app

    token = tmp_path / "token"
    token.write_text("b3arer\n")
    runner = CliRunner()
    added = runner.invoke(
        cli_app,
        ["destinations", "add", "pacs-web", "--kind", "dicomweb", "--base-url", "http://127.0.0.1:8042/dicom-web",
         "--auth", "bearer", "--token-file", str(token), "--outputs", "sr,epdf", "--events", "final,amendment"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "destination pacs-web (dicomweb, clinical) added: sr, epdf on final, amendment" in added.output
    listed = runner.invoke(cli_app, ["destinations", "list"]).output
    assert "pacs-web" in listed and "b3arer" not in listed
    bad = runner.invoke(cli_app, ["destinations", "add", "x", "--kind", "dicom", "--host", "h"])
    assert bad.exit_code != 0 and "nodes add" in str(bad.exception)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (0x0000, "delivered"),
        (0xB000, "delivered"),  # coercion of data elements: stored
        (0xB007, "delivered"),
        (0xA700, "retry"),  # out of resources
        (0xA7FF, "retry"),
        (0x0213, "retry"),  # resource limitation
        (0x0110, "retry"),  # processing failure
        (0xA900, "failed"),  # data set does not match the SOP class
        (0xC000, "failed"),  # cannot understand
        (0x0122, "failed"),  # SOP class not supported
        (0x0124, "failed"),  # not authorised
    ],
)
def test_a_c_store_status_decides_the_delivery(status: int, outcome: str) -> None:
    assert store_outcome(status) == outcome


def test_deliveries_of_a_removed_node_go_with_it(world: World) -> None:
    _node(world, "pacs", "PACS", send=["sr"], send_on=["preliminary"])
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        deliveries.enqueue(db, reports.load(db, world.store, rid), study_id=world.study_id)
    assert [d.state for d in _deliveries(world)] == ["queued"]
    with session_scope(world.settings.database) as db:
        remove_node(db, None, "pacs")
        assert db.scalars(select(DeliveryRow)).all() == []  # nothing left queued for a node that is gone
