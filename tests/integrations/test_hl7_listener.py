"""The HL7 order listener over MLLP: a real client (python-hl7's MLLPClient) sends ORM^O01, OMI^O23,
ADT^A08 and ADT^A40 and gets AA; malformed and unsupported messages get AE / AR with the reason, are
kept (encrypted) for an admin, and never stop the listener; a peer off the allow-list is disconnected."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import hl7 as python_hl7
import pytest
from hl7.client import MLLPClient
from hl7apy.parser import parse_message
from sqlalchemy import select

from neuronav.config import Settings, get_settings
from neuronav.db.models import AuditEventRow, OrderRow, RejectedMessageRow
from neuronav.db.session import migrate, session_factory, session_scope
from neuronav.integrations.hl7.listener import Listener, ack, allowed
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import orders
from tests.tls import self_signed

pytestmark = pytest.mark.hl7_peer

HEADER = "MSH|^~\\&|RIS|HOSP|NeuroNav|NEURONAV|20260105090000||{type}|{control}|P|2.5"
PID = "PID|1||{mrn}^^^HOSP^MR||{name}||19700102|F"


def orm(
    control: str, order_control: str = "NW", *, placer: str = "P1", accession: str = "ACC1", mrn: str = "M1"
) -> str:
    return (
        "\r".join(
            [
                HEADER.format(type="ORM^O01^ORM_O01", control=control),
                PID.format(mrn=mrn, name="Doe^Jane"),
                f"ORC|{order_control}|{placer}^EPIC|F-{placer}^RIS",
                f"OBR|1|{placer}^EPIC|F-{placer}^RIS|MRBRAIN^MR Brain^L|||20260105|||||||||||{accession}",
            ]
        )
        + "\r"
    )


def omi(control: str) -> str:
    return (
        "\r".join(
            [
                HEADER.format(type="OMI^O23^OMI_O23", control=control),
                PID.format(mrn="M2", name="Roe^Richard"),
                "ORC|NW|P2^EPIC",
                "TQ1|1||||||20260106",
                "OBR|1|P2^EPIC||MRBRAIN^MR Brain^L",
                "IPC|ACC2^RIS|RP2|1.2.3.4|SPS2",
            ]
        )
        + "\r"
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, ObjectStore]]:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NEURONAV_DATABASE_URL", raising=False)
    monkeypatch.setenv("NEURONAV_HL7_ALLOWED", "127.0.0.1/32")
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database)
    yield settings, ObjectStore.from_settings(settings)
    session_factory.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def listener(env: tuple[Settings, ObjectStore]) -> Iterator[Listener]:
    server = Listener(env[0], env[1], "127.0.0.1", 0).start()
    yield server
    server.stop()


def send(port: int, message: str) -> python_hl7.Message:
    with MLLPClient("127.0.0.1", port) as client:
        answer = client.send_message(message)
    return python_hl7.parse(answer.decode("utf-8").strip("\x0b\x1c\r"))


def msa(answer: python_hl7.Message) -> tuple[str, str, str]:
    seg = answer.segment("MSA")
    return str(seg[1]), str(seg[2]), str(seg[3]) if len(seg) > 3 else ""


def test_messages_are_valid_hl7() -> None:  # the test's own inputs, read by an independent parser
    for message in (orm("c1"), omi("c2")):
        parse_message(message, find_groups=False)
    assert parse_message(orm("c1"), find_groups=False).obr.obr_18.value == "ACC1"


def test_new_order_is_acknowledged_and_stored_encrypted(env: tuple[Settings, ObjectStore], listener: Listener) -> None:
    settings, store = env
    code, control, _ = msa(send(listener.port, orm("c1")))
    assert (code, control) == ("AA", "c1")
    with session_scope(settings.database) as db:
        (order,) = db.scalars(select(OrderRow))
        assert (order.placer_number, order.placer_authority, order.filler_number) == ("P1", "EPIC", "F-P1")
        assert (order.state, order.scheduled_date, order.message_type) == ("ordered", "20260105", "ORM^O01")
        assert order.mrn_enc and "M1" not in order.mrn_enc
        assert decrypt_field(order.mrn_enc, store.field_key(), "orders.mrn") == "M1"
        assert order.accession_digest == orders.digest(settings, "accession", "ACC1")
        assert order.mrn_digest == orders.digest(settings, "mrn", "HOSP", "M1")


def test_omi_with_ipc_accession_and_tq1_date(env: tuple[Settings, ObjectStore], listener: Listener) -> None:
    settings, _ = env
    assert msa(send(listener.port, omi("c2")))[0] == "AA"
    with session_scope(settings.database) as db:
        (order,) = db.scalars(select(OrderRow))
        assert order.accession_digest == orders.digest(settings, "accession", "ACC2")
        assert (order.scheduled_date, order.message_type) == ("20260106", "OMI^O23")


def test_cancel_update_and_merge(env: tuple[Settings, ObjectStore], listener: Listener) -> None:
    settings, store = env
    assert msa(send(listener.port, orm("c1")))[0] == "AA"
    assert msa(send(listener.port, orm("c3", placer="P9", accession="ACC9")))[0] == "AA"
    assert msa(send(listener.port, orm("c4", "CA", placer="P9", accession="")))[0] == "AA"
    a08 = "\r".join(
        [HEADER.format(type="ADT^A08^ADT_A01", control="c5"), PID.format(mrn="M1", name="Doe-Smith^Jane"), "PV1|1|O"]
    )
    assert msa(send(listener.port, a08 + "\r"))[0] == "AA"
    a40 = "\r".join(
        [
            HEADER.format(type="ADT^A40^ADT_A39", control="c6"),
            PID.format(mrn="M7", name="Doe-Smith^Jane"),
            "MRG|M1^^^HOSP^MR",
        ]
    )
    assert msa(send(listener.port, a40 + "\r"))[0] == "AA"
    with session_scope(settings.database) as db:
        by_placer = {o.placer_number: o for o in db.scalars(select(OrderRow))}
        assert by_placer["P9"].state == "cancelled"
        first = by_placer["P1"]
        assert decrypt_field(first.patient_name_enc or "", store.field_key(), "orders.patient_name") == "Doe-Smith^Jane"
        assert first.mrn_digest == orders.digest(settings, "mrn", "HOSP", "M7")  # merged into the surviving MRN


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (orm("e1").replace("PID|1||M1^^^HOSP^MR|", "PID|1|||"), "AE", "PID-3"),
        (orm("e2").replace("|19700102|", "|1970-13-45|"), "AE", "PID-7"),
        (orm("e3", "XO"), "AR", "ORC-1"),
        (HEADER.format(type="ADT^A01^ADT_A01", control="e4") + "\rPID|1||M1^^^HOSP^MR\r", "AR", "MSH-9"),
        (
            orm("e5")
            .replace("ORC|NW|P1^EPIC|F-P1^RIS", "ORC|NW")
            .replace("|ACC1\r", "|\r")
            .replace("OBR|1|P1^EPIC|F-P1^RIS", "OBR|1||"),
            "AE",
            "ORC-2",
        ),
    ],
)
def test_bad_messages_get_the_reason_and_are_kept(
    env: tuple[Settings, ObjectStore], listener: Listener, message: str, code: str, words: str
) -> None:
    settings, store = env
    answer = send(listener.port, message)
    got, _, text = msa(answer)
    assert got == code and words in text
    assert str(answer.segment("ERR")[8]) == text or words in str(answer.segment("ERR"))
    assert "M1" not in text  # the reason names the field, not its value
    with session_scope(settings.database) as db:
        (kept,) = db.scalars(select(RejectedMessageRow))
        assert kept.ack_code == code and words in kept.reason
        assert decrypt_field(kept.message_enc, store.field_key(), "hl7_rejected.message") == message
        assert db.scalars(select(OrderRow)).first() is None
    assert msa(send(listener.port, orm("ok")))[0] == "AA"  # the listener goes on


def test_garbage_does_not_stop_the_listener(listener: Listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as s:
        s.sendall(b"\x0bnot hl7 at all\x1c\r")
        reply = s.recv(4096)
    assert b"MSA|AE" in reply
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not MLLP
        s.shutdown(socket.SHUT_WR)
        s.recv(4096)
    assert msa(send(listener.port, orm("after")))[0] == "AA"


def test_a_peer_off_the_allow_list_is_disconnected(env: tuple[Settings, ObjectStore]) -> None:
    settings, store = env
    closed = Listener(settings.model_copy(update={"hl7_allowed": "10.0.0.0/8"}), store, "127.0.0.1", 0).start()
    try:
        with socket.create_connection(("127.0.0.1", closed.port), timeout=5) as s:
            s.sendall(b"\x0b" + orm("c1").encode() + b"\x1c\r")
            assert s.recv(4096) == b""  # closed without an answer
    finally:
        closed.stop()
    with session_scope(settings.database) as db:
        assert db.scalars(select(OrderRow)).first() is None
        assert "hl7.refuse_peer" in list(db.scalars(select(AuditEventRow.action)))


def test_allow_list_and_ack_helpers() -> None:
    assert allowed("127.0.0.1", "127.0.0.0/8, 10.1.2.3") and allowed("10.1.2.3", "127.0.0.0/8,10.1.2.3")
    assert not allowed("10.1.2.4", "127.0.0.0/8,10.1.2.3") and not allowed("127.0.0.1", "")
    text = ack(orm("c9"), "AE", "PID-3 | missing")
    parsed = parse_message(text.replace("\r", "\r"), find_groups=False)
    assert parsed.msa.msa_2.value == "c9"
    assert str(python_hl7.parse(text).segment("MSH")[5]) == "RIS"  # sender and receiver swapped


def test_mllp_over_tls(env: tuple[Settings, ObjectStore], tmp_path: Path) -> None:
    """With a certificate configured the listener speaks only TLS: a client that trusts the certificate gets
    its ACK; a plain-text peer gets nothing stored."""
    import ssl

    settings, store = env
    cert, key = self_signed(tmp_path)
    secure = Listener(settings.model_copy(update={"hl7_tls_cert": cert, "hl7_tls_key": key}), store, "127.0.0.1", 0)
    secure.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", secure.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            s.sendall(b"\x0b" + orm("tls1").encode() + b"\x1c\r")
            answer = b""
            while not answer.endswith(b"\x1c\r"):
                chunk = s.recv(4096)
                assert chunk, "the listener closed the TLS connection without an ACK"
                answer += chunk
        parsed = python_hl7.parse(answer.decode("utf-8").strip("\x0b\x1c\r"))
        assert msa(parsed)[:2] == ("AA", "tls1")
        with socket.create_connection(("127.0.0.1", secure.port), timeout=10) as plain:
            plain.sendall(b"\x0b" + orm("plain1").encode() + b"\x1c\r")
            try:
                reply = plain.recv(4096)
            except (ConnectionResetError, TimeoutError):
                reply = b""
            assert b"MSA" not in reply  # no HL7 answer over plain text
    finally:
        secure.stop()
    with session_scope(settings.database) as db:
        controls = {o.control_id for o in db.scalars(select(OrderRow))}
    assert "tls1" in controls and "plain1" not in controls
