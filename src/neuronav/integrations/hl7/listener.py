"""The HL7 v2 listener (MLLP over TCP, optionally TLS): orders and patient updates in, an ACK out.

python-hl7's asyncio MLLP server in a daemon thread. Per connection: the peer's address is checked
against ``NEURONAV_HL7_ALLOWED`` (addresses and networks; empty: nobody) — a peer not on the list is
disconnected, audited; then each framed message is handed to :func:`neuronav.workflow.orders.receive`
in its own transaction and answered with the ACK it decides (AA, or AE / AR with MSA-3 and an ERR
segment naming the problem). Nothing a peer sends stops the listener: a failure inside is answered AE
(application error) and logged by its class only.

Settings: ``NEURONAV_HL7_LISTEN`` (``host:port``; empty: no listener), ``NEURONAV_HL7_ALLOWED``,
``NEURONAV_HL7_TLS_CERT`` / ``NEURONAV_HL7_TLS_KEY`` (MLLP over TLS when both are set).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from neuronav.config import Settings
from neuronav.db.session import session_scope
from neuronav.report.hl7v2 import escape
from neuronav.storage.store import ObjectStore
from neuronav.workflow import orders
from neuronav.workflow.access import audit_event

log = logging.getLogger(__name__)


def allowed(peer: str, networks: str) -> bool:
    """Whether ``peer`` (an address) is in the comma-separated ``networks`` (addresses or CIDR blocks)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    for item in (n.strip() for n in networks.split(",")):
        if item and address in ipaddress.ip_network(item, strict=False):
            return True
    return False


def ack(message: str, code: str, text: str = "", error: str = "") -> str:
    """The ACK of ``message`` (its MSH-10 in MSA-2; sender and receiver swapped), ER7 with CRs."""
    fields = message.split("\r", 1)[0].split("|")

    def f(n: int) -> str:  # MSH-n (MSH-1 is the field separator)
        return fields[n - 1] if len(fields) >= n else ""

    trigger = f(9).split("^")[1] if len(f(9).split("^")) > 1 else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S%z")
    control = uuid.uuid4().hex[:20]
    segments = [
        f"MSH|^~\\&|NeuroNav|NEURONAV|{f(3)}|{f(4)}|{now}||ACK^{trigger}^ACK|{control}|P|2.5",
        f"MSA|{code}|{f(10)}" + (f"|{escape(text)[:80]}" if text else ""),
    ]
    if code != "AA":
        segments.append(f"ERR||||E|{error or '207'}^{escape(text)[:80]}^HL70357|||{escape(text)[:250]}")
    return "\r".join(segments) + "\r"


class Listener:
    """The MLLP listener; :meth:`start` returns once it listens (``port`` is then the bound port)."""

    def __init__(self, settings: Settings, store: ObjectStore, host: str, port: int) -> None:
        self.settings, self.store, self.host, self.port = settings, store, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neuronav-hl7", daemon=True)
        self._error: BaseException | None = None

    def _tls(self) -> ssl.SSLContext | None:
        s = self.settings
        if not (s.hl7_tls_cert and s.hl7_tls_key):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(s.hl7_tls_cert), str(s.hl7_tls_key))
        return ctx

    def start(self) -> Listener:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        from hl7.mllp import start_hl7_server

        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                start_hl7_server(self._connection, self.host, self.port, encoding="utf-8", ssl=self._tls())
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _connection(self, reader: Any, writer: Any) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        try:
            if not allowed(peer, self.settings.hl7_allowed):
                await asyncio.to_thread(self._refuse_peer, peer)
                return
            while True:
                try:
                    block = await reader.readblock()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the peer closed the connection
                except Exception as exc:  # an invalid MLLP block: answered, the connection goes on
                    log.info("hl7 from %s: unreadable block (%s)", peer, type(exc).__name__)
                    continue
                er7 = block.decode("utf-8", errors="replace")
                code, text, error = await asyncio.to_thread(self._apply, er7, peer)
                writer.writeblock(ack(er7.replace("\n", "\r"), code, text, error).encode("utf-8"))
                await writer.drain()
        finally:
            writer.close()

    def _apply(self, er7: str, peer: str) -> tuple[str, str, str]:
        try:
            with session_scope(self.settings.database) as db:
                return orders.receive(db, self.store, self.settings, er7, peer=peer)
        except Exception as exc:  # never stops the listener; the message is answered
            log.warning("hl7 message from %s failed (%s)", peer, type(exc).__name__)
            return "AE", f"application error ({type(exc).__name__})", "207"

    def _refuse_peer(self, peer: str) -> None:
        log.warning("hl7 connection from %s refused: not in NEURONAV_HL7_ALLOWED", peer)
        with session_scope(self.settings.database) as db:
            audit_event(db, None, "hl7.refuse_peer", outcome="denied", client=peer, detail={"peer": peer})


def start_listener(settings: Settings, store: ObjectStore) -> Listener | None:
    """The listener of ``NEURONAV_HL7_LISTEN`` (host:port), started; None when it is not set."""
    if not settings.hl7_listen:
        return None
    host, _, port = settings.hl7_listen.rpartition(":")
    return Listener(settings, store, host or "127.0.0.1", int(port)).start()


__all__ = ["Listener", "ack", "allowed", "start_listener"]
