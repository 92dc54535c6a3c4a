"""Send an HL7 v2 message over MLLP and read its acknowledgement (python-hl7's asyncio MLLP streams).

One connection per message: ``<VT>message<FS><CR>`` out, one framed ACK back, within ``timeout_s``
(optionally over TLS, the server checked against ``ca_file`` or the system's CAs). The ACK decides
(HL7 v2.5 §2.9, original acknowledgement mode):

=====================  =================================================================
ACK                    outcome
=====================  =================================================================
MSA-1 AA (or CA)       delivered
MSA-1 AE (or CE)       failed: the receiver found an error in the content — resending
                       the same message cannot help; MSA-3 / ERR kept for an admin
MSA-1 AR (or CR)       refused for a reason other than the content (receiver down,
                       unsupported event): retried with back-off, MSA-3 / ERR kept
no answer, timeout,    retried with back-off
refused connection,
an ACK of another
message, not an ACK
=====================  =================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from neuronav.integrations.outbox import SendResult
from neuronav.workflow.deliveries import Payload

ACCEPTED = ("AA", "CA")
ERROR = ("AE", "CE")
REJECTED = ("AR", "CR")


def _control_id(message: bytes) -> str:
    msh = message.split(b"\r", 1)[0].decode("utf-8", errors="replace")
    fields = msh.split("|")
    return fields[9] if len(fields) > 9 else ""


def _tls(config: dict[str, Any]) -> ssl.SSLContext | None:
    if not config.get("tls"):
        return None
    return ssl.create_default_context(cafile=config.get("ca_file") or None)


async def exchange(host: str, port: int, message: bytes, *, timeout_s: float, tls: ssl.SSLContext | None) -> str:
    """Send one framed message and return the ER7 text of the one framed answer (asyncio.TimeoutError,
    OSError, IncompleteReadError when there is none)."""
    from hl7.mllp import open_hl7_connection

    async def go() -> str:
        reader, writer = await open_hl7_connection(host, port, encoding="utf-8", ssl=tls)
        try:
            writer.writeblock(message)
            await writer.drain()
            block = await reader.readblock()
            return str(block.decode("utf-8", errors="replace"))
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    return await asyncio.wait_for(go(), timeout_s)


def judge(ack_er7: str, control_id: str) -> SendResult:
    """The outcome of an acknowledgement (python-hl7 parses it)."""
    import hl7

    try:
        ack = hl7.parse(ack_er7.replace("\n", "\r"))
        msa = ack.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.exceptions.ParseException):
        return SendResult(delivered=False, retry=True, status=None, text="the answer was not an HL7 ACK")
    code = str(msa[1]).strip().upper()
    acked = str(msa[2]).strip()
    text = str(msa[3]).strip() if len(msa) > 3 else ""
    try:
        errors = [str(seg) for seg in ack.segments("ERR")]
    except KeyError:
        errors = []
    words = " | ".join(t for t in (text, *errors) if t) or None
    if control_id and acked != control_id:
        return SendResult(
            delivered=False, retry=True, status=code, text=f"ACK of another message ({acked!r}, sent {control_id!r})"
        )
    if code in ACCEPTED:
        return SendResult(delivered=True, status=code, text=words)
    if code in ERROR:
        return SendResult(delivered=False, retry=False, status=code, text=words)
    if code in REJECTED:
        return SendResult(delivered=False, retry=True, status=code, text=words)
    return SendResult(delivered=False, retry=True, status=code or None, text=f"unknown acknowledgement code {code!r}")


def send(payload: Payload) -> SendResult:
    """The outbox's ``hl7`` sender."""
    cfg = payload.config
    try:
        answer = asyncio.run(
            exchange(
                str(cfg["host"]),
                int(cfg["port"]),
                payload.body,
                timeout_s=float(cfg.get("timeout_s", 30.0)),
                tls=_tls(cfg),
            )
        )
    except TimeoutError:
        return SendResult(delivered=False, retry=True, text="no acknowledgement within the time-out")
    except asyncio.IncompleteReadError:
        return SendResult(delivered=False, retry=True, text="the receiver closed the connection without an ACK")
    except (OSError, ssl.SSLError) as exc:
        return SendResult(
            delivered=False,
            retry=True,
            text=f"cannot reach {cfg['host']}:{cfg['port']} ({exc.strerror or type(exc).__name__})",
        )
    return judge(answer, _control_id(payload.body))


__all__ = ["exchange", "judge", "send"]
