"""The MLLP sender against a real receiver (hl7apy's MLLP server): AA delivered, AE failed with the
peer's text, AR and no answer retried; the message arrives whole and parses strictly on the other side."""

from __future__ import annotations

import base64
import os
import socket
from datetime import UTC, datetime

import hl7 as python_hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from neuronav.integrations.hl7.mllp import judge, send
from neuronav.report.build import build_report
from neuronav.report.hl7v2 import make_oru
from neuronav.report.model import Patient, Report
from neuronav.workflow.deliveries import Payload
from tests.analysis.findings_factory import make_findings
from tests.integrations.peers import OruPeer, hl7apy_ack

pytestmark = pytest.mark.hl7_peer

PATIENT = Patient(
    name="Doe^Jane", mrn="0042", mrn_issuer="HOSP", birth_date="19700102", sex="F", accession_number="ACC-1"
)


@pytest.fixture(scope="module")
def report() -> Report:
    r = build_report(make_findings(), now=datetime(2026, 11, 29, 12, tzinfo=UTC))
    return r.model_copy(update={"patient": PATIENT})


def payload(message: str, port: int, *, timeout_s: float = 5.0) -> Payload:
    return Payload(
        delivery_id="d1",
        kind="hl7",
        output="hl7",
        destination="ris",
        config={"host": "127.0.0.1", "port": port, "timeout_s": timeout_s},
        secrets={},
        body=message.encode("utf-8"),
        media_type="application/hl7-v2",
        report_id="NN-1",
        report_version=1,
        identified=True,
    )


def test_aa_is_delivered_and_the_message_arrives_whole(report: Report, oru_peer: OruPeer) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(120_000)  # three ED parts
    message = make_oru(report, pdf=pdf)
    result = send(payload(message, oru_peer.port))
    assert result.delivered and result.status == "AA"
    (got,) = oru_peer.received
    assert got.rstrip("\r") == message.rstrip("\r")
    parsed = python_hl7.parse(got)
    assert str(parsed.segment("PID")[3][0][0]) == "0042"
    data = "".join(str(s[5][0][4]) for s in parsed.segments("OBX") if str(s[2]) == "ED")
    assert base64.b64decode(data) == pdf


def test_the_message_parses_strictly_at_the_receiver(report: Report, oru_peer: OruPeer) -> None:
    message = make_oru(report)  # no PDF: hl7apy's strict parser reads every field
    assert send(payload(message, oru_peer.port)).delivered
    msg = parse_message(oru_peer.received[0], validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()


def test_ae_is_failed_with_the_peers_text(report: Report, oru_peer: OruPeer) -> None:
    oru_peer.reset(lambda cid, n: "AE", text="Unknown patient MRN 0042")
    result = send(payload(make_oru(report), oru_peer.port))
    assert (result.delivered, result.retry, result.status) == (False, False, "AE")
    assert result.text == "Unknown patient MRN 0042"


def test_ar_is_retried_with_the_peers_text(report: Report, oru_peer: OruPeer) -> None:
    oru_peer.reset(lambda cid, n: "AR", text="Interface paused")
    result = send(payload(make_oru(report), oru_peer.port))
    assert (result.delivered, result.retry, result.status, result.text) == (False, True, "AR", "Interface paused")


def test_no_answer_is_retried(report: Report, oru_peer: OruPeer) -> None:
    oru_peer.reset(lambda cid, n: "drop")
    result = send(payload(make_oru(report), oru_peer.port))
    assert (result.delivered, result.retry) == (False, True)
    assert len(oru_peer.received) == 1  # it did arrive; no ACK came back


def test_nobody_listening_is_retried(report: Report) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = send(payload(make_oru(report), port))
    assert (result.delivered, result.retry) == (False, True)
    assert "cannot reach" in (result.text or "")


def test_a_silent_peer_times_out_and_is_retried(report: Report) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts the connection (kernel backlog) but never answers
        result = send(payload(make_oru(report), server.getsockname()[1], timeout_s=0.5))
    assert (result.delivered, result.retry) == (False, True)
    assert "time-out" in (result.text or "")


def test_an_ack_of_another_message_is_not_a_delivery() -> None:
    ack = hl7apy_ack("AA", "someone-else").strip("\x0b\x1c\r")
    result = judge(ack, "ours")
    assert (result.delivered, result.retry) == (False, True)
    assert judge("not hl7 at all", "ours").retry
