"""Real peers for the integration tests, from maintained libraries, started on free loopback ports.

* :class:`OruPeer`: hl7apy's ``MLLPServer`` (a threading TCP server) receiving our ORU^R01 messages and
  answering with an ACK that hl7apy builds — AA, AE, AR, or nothing (the connection closed), as the test
  scripts it per message.
* :class:`FhirServer`: Medplum's FHIR router and in-memory repository (npm) in a Node process
  (``tests/integrations/fhir_server/server.mjs``), with the R4 definitions: it validates what it is sent.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FHIR_SERVER_DIR = Path(__file__).parent / "fhir_server"


def hl7apy_ack(code: str, control_id: str, text: str = "") -> str:
    """An HL7 v2.5 ACK built by hl7apy, framed for MLLP."""
    from hl7apy.core import Message

    ack = Message("ACK", version="2.5")
    ack.msh.msh_3 = "PEER"
    ack.msh.msh_4 = "HOSPITAL"
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = uuid.uuid4().hex[:20]
    ack.msh.msh_11 = "P"
    ack.msh.msh_12 = "2.5"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    if text:
        ack.msa.msa_3 = text
    return "\x0b" + ack.to_er7() + "\r\x1c\r"


@dataclass
class OruPeer:
    """A receiving system. ``decide(control_id, n)`` (n: the message's number, from 1) answers AA / AE / AR
    / ``drop`` (close without an answer); ``received`` holds every message (ER7) that reached it."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[str] = field(default_factory=list)
    decide: Callable[[str, int], str] = lambda control_id, n: "AA"
    text: str = "received"
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OruPeer:
        from hl7apy.mllp import AbstractHandler, MLLPServer

        peer = self

        class Handler(AbstractHandler):  # type: ignore[misc]
            def reply(self) -> str:
                msg = self.incoming_message
                control_id = msg.split("\r", 1)[0].split("|")[9]
                with peer._lock:
                    peer.received.append(msg)
                    n = len(peer.received)
                answer = peer.decide(control_id, n)
                if answer == "drop":
                    raise ConnectionAbortedError("peer scripted to answer nothing")
                return hl7apy_ack(answer, control_id, peer.text if answer != "AA" else "")

        self._server = MLLPServer(self.host, 0, {"ORU^R01^ORU_R01": (Handler,), "ORU^R01": (Handler,)}, timeout=10)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="oru-peer", daemon=True).start()
        return self

    def reset(self, decide: Callable[[str, int], str] | None = None, text: str = "received") -> None:
        with self._lock:
            self.received.clear()
        self.decide = decide or (lambda control_id, n: "AA")
        self.text = text

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class FhirServer:
    """Medplum's FHIR server pieces in a Node process; ``base_url`` is its FHIR base."""

    token: str
    process: subprocess.Popen[str] | None = None
    base_url: str = ""

    def start(self) -> FhirServer:
        node = shutil.which("node")
        if node is None or not (FHIR_SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
            raise RuntimeError(
                "the test FHIR server needs Node.js and `npm ci` in tests/integrations/fhir_server (scripts/setup.sh)"
            )
        self.process = subprocess.Popen(
            [node, "server.mjs", "0", self.token],
            cwd=FHIR_SERVER_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "listening <port>" once the definitions are indexed
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the test FHIR server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
