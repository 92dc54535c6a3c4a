"""The durable outbox end to end on a migrated database: a signature queues the report for each
destination, the worker delivers it to a real MLLP receiver (hl7apy), refusals are retried with back-off,
the same version is never queued twice, an admin resends, and every step is audited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from neuronav.config import Settings, get_settings
from neuronav.db.models import AnalysisRow, AuditEventRow, DeliveryRow, StudyRow, UserRow, utcnow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.errors import ConflictError, InputError
from neuronav.integrations.outbox import SendResult, deliver_due, register_sender, sender_for
from neuronav.report.build import build_report
from neuronav.security.access import Actor
from neuronav.security.errors import PermissionDenied
from neuronav.security.passwords import hash_password
from neuronav.security.permissions import Role
from neuronav.storage.store import ObjectStore
from neuronav.workflow import deliveries, reports
from tests.analysis.findings_factory import make_findings
from tests.integrations.peers import OruPeer

SIGNING_PASSWORD = "quiet river stone lantern"  # the signer re-authenticates with it

pytestmark = pytest.mark.hl7_peer


@dataclass(frozen=True)
class World:
    settings: Settings
    store: ObjectStore
    radiologist: Actor
    admin: Actor
    study_id: str
    analysis_id: str


def _actor(user: UserRow, role: Role) -> Actor:
    return Actor(
        id=user.id,
        email=user.email,
        role=role,
        display_name=user.display_name,
        session_id="s",
        breakglass=None,
        client="test",
    )


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    monkeypatch.setenv("NEURONAV_OUTBOX_BACKOFF_S", "0.01")
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    with session_scope(settings.database) as db:
        rad = UserRow(
            email="rad@example.org",
            display_name="Dr Rad",
            role="radiologist",
            password_hash=hash_password(SIGNING_PASSWORD),
            state="active",
        )
        adm = UserRow(email="adm@example.org", display_name="Admin", role="admin", password_hash="x", state="active")
        db.add_all([rad, adm])
        db.flush()
        study = StudyRow(content_sha256="0" * 64, uploaded_by=rad.id, state="done")
        db.add(study)
        db.flush()
        analysis = AnalysisRow(study_id=study.id, cache_key="k", model="m", state="done")
        db.add(analysis)
        db.flush()
        w = World(settings, store, _actor(rad, Role.RADIOLOGIST), _actor(adm, Role.ADMIN), study.id, analysis.id)
    yield w
    session_factory.cache_clear()
    get_settings.cache_clear()


def _stored_report(w: World) -> str:
    report = build_report(make_findings(), now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    with session_scope(w.settings.database) as db:
        reports.save(db, w.store, report, study_id=w.study_id, analysis_id=w.analysis_id, user_id=None)
    return report.report_id


def _hl7_destination(w: World, peer: OruPeer, name: str = "ris", **extra: object) -> None:
    with session_scope(w.settings.database) as db:
        cfg = {"host": "127.0.0.1", "port": peer.port, "pdf": "none", "timeout_s": 5, **extra}
        deliveries.add_destination(db, w.store, w.admin, name, "hl7", cfg, identified=False)


def _deliveries(w: World) -> list[DeliveryRow]:
    with session_scope(w.settings.database) as db:
        rows = list(db.scalars(select(DeliveryRow).order_by(DeliveryRow.created_at)))
        db.expunge_all()
        return rows


def _actions(w: World) -> list[str]:
    with session_scope(w.settings.database) as db:
        return list(db.scalars(select(AuditEventRow.action).order_by(AuditEventRow.seq)))


def _make_due(w: World) -> None:
    with session_scope(w.settings.database) as db:
        for d in db.scalars(select(DeliveryRow).where(DeliveryRow.state == "queued")):
            d.next_attempt_at = utcnow() - timedelta(seconds=1)


def test_signature_queues_and_the_worker_delivers(world: World, oru_peer: OruPeer) -> None:
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    assert _deliveries(world) == []  # a preliminary report is not sent to a final-only destination
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    (queued,) = _deliveries(world)
    assert (queued.state, queued.report_version, queued.output, queued.event) == ("queued", 1, "hl7", "final")
    assert deliver_due(world.settings, world.store) == {"delivered": 1}
    (done,) = _deliveries(world)
    assert (done.state, done.attempts, done.peer_status) == ("delivered", 1, "AA")
    (message,) = oru_peer.received
    assert f"|{rid}/v1|" in message and "|F\r" in message.replace("|F|", "|F\r")  # the signed version, final
    assert deliver_due(world.settings, world.store) == {}  # nothing left: never sent twice
    assert len(oru_peer.received) == 1
    actions = _actions(world)
    assert actions.index("report.sign") < actions.index("delivery.queue") < actions.index("delivery.sent")
    with session_scope(world.settings.database) as db:
        (shown,) = reports.read_deliveries(db, world.store, world.radiologist, rid)
    assert (shown.destination, shown.state, shown.peer_status) == ("ris", "delivered", "AA")


def test_the_same_version_is_never_queued_twice(world: World, oru_peer: OruPeer) -> None:
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        report = reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    with session_scope(world.settings.database) as db:
        assert deliveries.enqueue(db, report, study_id=world.study_id) == []
    assert len(_deliveries(world)) == 1


def test_refusal_is_retried_with_back_off_then_delivered(world: World, oru_peer: OruPeer) -> None:
    oru_peer.reset(lambda cid, n: "AR" if n == 1 else "AA", text="busy, try later")
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    assert deliver_due(world.settings, world.store) == {"queued": 1}
    (waiting,) = _deliveries(world)
    assert (waiting.state, waiting.attempts, waiting.peer_status, waiting.error) == (
        "queued",
        1,
        "AR",
        "busy, try later",
    )
    assert waiting.next_attempt_at > utcnow() - timedelta(seconds=1)
    _make_due(world)
    assert deliver_due(world.settings, world.store) == {"delivered": 1}
    (done,) = _deliveries(world)
    assert (done.state, done.attempts) == ("delivered", 2)
    assert "delivery.retry" in _actions(world)


def test_application_error_fails_and_an_admin_resends(world: World, oru_peer: OruPeer) -> None:
    oru_peer.reset(lambda cid, n: "AE" if n == 1 else "AA", text="PID-3 unknown")
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    assert deliver_due(world.settings, world.store) == {"failed": 1}
    (failed,) = _deliveries(world)
    assert (failed.state, failed.peer_status, failed.error) == ("failed", "AE", "PID-3 unknown")
    with session_scope(world.settings.database) as db:
        deliveries.resend(db, world.admin, failed.id)
    with session_scope(world.settings.database) as db, pytest.raises(ConflictError):
        deliveries.resend(db, world.admin, failed.id)  # queued already
    assert deliver_due(world.settings, world.store) == {"delivered": 1}
    assert [a for a in _actions(world) if a.startswith("delivery.")] == [
        "delivery.queue", "delivery.fail", "delivery.resend", "delivery.sent"
    ]  # fmt: skip


def test_attempts_run_out(world: World, oru_peer: OruPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    oru_peer.reset(lambda cid, n: "drop")
    settings = world.settings.model_copy(update={"outbox_max_attempts": 2})
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    assert deliver_due(settings, world.store) == {"queued": 1}
    _make_due(world)
    assert deliver_due(settings, world.store) == {"failed": 1}
    (failed,) = _deliveries(world)
    assert failed.attempts == 2 and "without an ACK" in (failed.error or "")


def test_a_lost_lease_is_taken_up_again(world: World, oru_peer: OruPeer) -> None:
    _hl7_destination(world, oru_peer)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    (d,) = _deliveries(world)
    assert deliveries.claim(world.settings, d.id, "a-process-that-dies")
    assert deliver_due(world.settings, world.store) == {}  # under its lease: left alone
    with session_scope(world.settings.database) as db:
        db.get(DeliveryRow, d.id).lease_until = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    assert deliver_due(world.settings, world.store) == {"delivered": 1}
    # the dead process's late record changes nothing
    assert (
        deliveries.record(
            world.settings, d.id, "a-process-that-dies", delivered=False, retry=True, status=None, text=None
        )
        == "delivered"
    )


def test_senders_plug_in_by_kind(world: World) -> None:
    seen: list[str] = []

    def hl7_sender(payload: deliveries.Payload) -> SendResult:
        seen.append(payload.report_id)
        return SendResult(delivered=True, status="AA")

    previous = sender_for("hl7")
    register_sender("hl7", hl7_sender)
    try:
        with session_scope(world.settings.database) as db:
            cfg = {"host": "127.0.0.1", "port": 9, "pdf": "none"}
            deliveries.add_destination(db, world.store, world.admin, "ris", "hl7", cfg, identified=False)
        rid = _stored_report(world)
        with session_scope(world.settings.database) as db:
            reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
        assert deliver_due(world.settings, world.store) == {"delivered": 1}
        assert seen == [rid]
    finally:
        if previous is not None:
            register_sender("hl7", previous)


def test_destination_checks(world: World) -> None:
    with session_scope(world.settings.database) as db:
        with pytest.raises(InputError, match="port"):
            deliveries.add_destination(db, world.store, world.admin, "x", "hl7", {"host": "ris"})
        with pytest.raises(InputError, match="base-url"):
            deliveries.add_destination(db, world.store, world.admin, "x", "fhir", {"base_url": "ftp://x"})
        with pytest.raises(InputError, match="unknown hl7 setting"):
            deliveries.add_destination(db, world.store, world.admin, "x", "hl7", {"host": "h", "port": 1, "colour": 1})
        made = deliveries.add_destination(
            db, world.store, world.admin, "ehr", "fhir", {"base_url": "https://ehr.example/fhir", "auth": "bearer"},
            secrets={"token": "s3cret"},
        )  # fmt: skip
        assert made.outputs == ["fhir-r4"] and made.secrets_set == ["token"]
        assert "s3cret" not in str(deliveries.list_destinations(db, world.store, world.admin))
        with pytest.raises(ConflictError):
            deliveries.add_destination(db, world.store, world.admin, "ehr", "fhir", {"base_url": "https://x"})
        with pytest.raises(PermissionDenied):
            deliveries.list_destinations(db, world.store, world.radiologist)


def test_the_cli_manages_destinations_and_resends(world: World, oru_peer: OruPeer, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neuronav.cli import app as cli_app

    token = tmp_path / "token"
    token.write_text("t0ken-from-file\n")
    runner = CliRunner()
    added = runner.invoke(
        cli_app,
        [
            "destinations",
            "add",
            "ris",
            "--kind",
            "hl7",
            "--host",
            "127.0.0.1",
            "--port",
            str(oru_peer.port),
            "--pdf",
            "none",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "destination ris (hl7, clinical) added: hl7 on final, amendment" in added.output
    fhir = runner.invoke(
        cli_app,
        ["destinations", "add", "ehr", "--kind", "fhir", "--base-url", "https://ehr.example/fhir/R4",
         "--auth", "bearer", "--token-file", str(token), "--fhir-version", "R4", "--pseudonymous", "--events", "final"],
    )  # fmt: skip
    assert fhir.exit_code == 0, fhir.output
    listed = runner.invoke(cli_app, ["destinations", "list"])
    assert "ehr" in listed.output and "fhir-r4" in listed.output and "secrets: token" in listed.output
    assert "t0ken" not in listed.output
    bad = runner.invoke(cli_app, ["destinations", "add", "x", "--kind", "hl7", "--host", "h"])
    assert bad.exit_code != 0 and "port" in str(bad.exception)
    removed = runner.invoke(cli_app, ["destinations", "remove", "ehr"])
    assert removed.exit_code == 0 and "ehr" not in runner.invoke(cli_app, ["destinations", "list"]).output
    with session_scope(world.settings.database) as db:
        assert [
            a.detail["via"] for a in db.scalars(select(AuditEventRow).where(AuditEventRow.action == "destination.add"))
        ] == ["cli", "cli"]


def test_clinical_delivery_answers_the_matched_order(world: World, oru_peer: OruPeer) -> None:
    from neuronav.db.models import OrderRow
    from neuronav.storage import encrypt_field
    from neuronav.workflow import orders

    key = world.store.field_key()
    with session_scope(world.settings.database) as db:
        study = db.get(StudyRow, world.study_id)
        assert study is not None
        study.patient_id_enc = encrypt_field("MRN-5", key, "studies.patient_id")
        study.patient_id_issuer_enc = encrypt_field("HOSP", key, "studies.patient_id_issuer")
        study.patient_name_enc = encrypt_field("Doe^Jane", key, "studies.patient_name")
        study.accession_enc = encrypt_field("ACC-5", key, "studies.accession")
        study.study_date = "20260105"
        orm = "\r".join(
            [
                "MSH|^~\\&|RIS|HOSP|NeuroNav|NEURONAV|20260105090000||ORM^O01^ORM_O01|c1|P|2.5",
                "PID|1||MRN-5^^^HOSP^MR||Doe^Jane||19700102|F",
                "ORC|NW|PL-5^EPIC|FI-5^RIS",
                "OBR|1|PL-5^EPIC|FI-5^RIS|MRBRAIN^MR Brain^L|||20260105|||||||||||ACC-5",
            ]
        )
        assert orders.receive(db, world.store, world.settings, orm, peer="127.0.0.1")[0] == "AA"
        matched = orders.match_study(db, world.store, world.settings, study)
        assert matched is not None and matched.state == "arrived"
        cfg = {"host": "127.0.0.1", "port": oru_peer.port, "pdf": "none", "timeout_s": 5}
        deliveries.add_destination(db, world.store, world.admin, "epic", "hl7", cfg, identified=True)
    rid = _stored_report(world)
    with session_scope(world.settings.database) as db:
        reports.sign(db, world.store, world.radiologist, rid, password=SIGNING_PASSWORD)
    assert deliver_due(world.settings, world.store) == {"delivered": 1}
    import hl7 as python_hl7

    (message,) = oru_peer.received
    parsed = python_hl7.parse(message)
    assert str(parsed.segment("PID")[3][0][0]) == "MRN-5" and str(parsed.segment("PID")[3][0][3]) == "HOSP"
    assert str(parsed.segment("ORC")[2]) == "PL-5^EPIC" and str(parsed.segment("ORC")[3]) == "FI-5^RIS"
    assert str(parsed.segment("OBR")[18]) == "ACC-5"
    with session_scope(world.settings.database) as db:
        (order,) = db.scalars(select(OrderRow))
        assert (order.study_id, order.state) == (world.study_id, "signed")
        from neuronav.workflow.worklist import list_studies

        (row,) = list_studies(db, world.radiologist).items
        assert (row.id, row.order_state) == (world.study_id, "signed")  # the worklist shows the order
