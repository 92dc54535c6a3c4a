"""Audit anchors shipped off the server: the newest audit event's ``SEQ:HASH``
(:func:`neuronav.audit.head`) sent on a schedule to a place the database's owner cannot rewrite, so
that a cut-off or rewritten tail of the log shows (``neuronav audit verify --anchor SEQ:HASH`` with
the last anchor shipped).

Sinks (``NEURONAV_AUDIT_ANCHOR_SINK``):

* ``file:/path``: one line appended per interval (file created 0600, written with ``O_APPEND`` and
  fsynced): ``<UTC time> <host> neuronav audit-anchor <seq>:<hash>``. Point it at a write-once
  medium, a log shipper's input or a mounted share of another machine.
* ``syslog+tls://host:port``: one RFC 5424 message per interval over TLS with RFC 5425 octet-counting
  framing, facility 13 (log audit), severity 6 (informational), MSGID ``audit-anchor`` and the anchor
  as structured data ``[anchor@32473 seq="…" hash="…"]`` (32473: the documentation enterprise number
  of RFC 5612). The server's certificate is verified (hostname included) against
  ``NEURONAV_AUDIT_ANCHOR_CA_FILE`` or the system's trust store.

The server ships one every ``NEURONAV_AUDIT_ANCHOR_INTERVAL_S`` seconds (a background thread of the
app's lifespan, :func:`start_shipping`); ``neuronav audit ship`` ships one at once. An empty log ships
nothing. Anchors carry no patient data (a sequence number and a hash).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from neuronav.audit import Anchor, head
from neuronav.config import Settings
from neuronav.errors import ConfigError
from neuronav.workflow.background import Periodic

log = logging.getLogger(__name__)

SYSLOG_FACILITY_LOG_AUDIT = 13
SYSLOG_SEVERITY_INFO = 6
SD_ID = "anchor@32473"
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sink:
    kind: str  # file | syslog+tls
    path: Path | None = None
    host: str = ""
    port: int = 0


def parse_sink(text: str) -> Sink:
    """``file:/path`` or ``syslog+tls://host:port``; ConfigError naming the variable otherwise."""
    spec = text.strip()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ConfigError("NEURONAV_AUDIT_ANCHOR_SINK: a file sink needs an absolute path (file:/var/log/…)")
        return Sink("file", path=Path(path))
    if spec.startswith("syslog+tls://"):
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ConfigError("NEURONAV_AUDIT_ANCHOR_SINK: syslog over TLS is syslog+tls://host:port (6514)")
        return Sink("syslog+tls", host=parts.hostname, port=port)
    raise ConfigError("NEURONAV_AUDIT_ANCHOR_SINK must be file:/path or syslog+tls://host:port")


def _hostname() -> str:
    name = "".join(c for c in socket.gethostname() if 33 <= ord(c) <= 126)[:255]
    return name or "-"


def file_line(anchor: Anchor, at: datetime) -> str:
    return f"{at.isoformat(timespec='seconds')} {_hostname()} neuronav audit-anchor {anchor}\n"


def syslog_message(anchor: Anchor, at: datetime) -> bytes:
    """One RFC 5424 message (``<110>1 TIMESTAMP HOST neuronav PID audit-anchor [SD] MSG``)."""
    pri = SYSLOG_FACILITY_LOG_AUDIT * 8 + SYSLOG_SEVERITY_INFO
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sd = f'[{SD_ID} seq="{anchor.seq}" hash="{anchor.hash}"]'
    return f"<{pri}>1 {stamp} {_hostname()} neuronav {os.getpid()} audit-anchor {sd} audit anchor {anchor}".encode(
        "ascii"
    )


def frame(message: bytes) -> bytes:
    """RFC 5425 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


def _send_file(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _send_syslog(sink: Sink, payload: bytes, ca_file: Path | None) -> None:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection((sink.host, sink.port), timeout=CONNECT_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname=sink.host) as tls,
    ):
        tls.sendall(payload)


def ship_anchor(settings: Settings, anchor: Anchor, *, at: datetime | None = None) -> None:
    """Send ``anchor`` to the configured sink (OSError / ssl.SSLError when it cannot be reached)."""
    if not settings.audit_anchor_sink:
        raise ConfigError("NEURONAV_AUDIT_ANCHOR_SINK is not set: there is nowhere to ship audit anchors")
    sink = parse_sink(settings.audit_anchor_sink)
    when = at or datetime.now(UTC)
    if sink.kind == "file":
        assert sink.path is not None
        _send_file(sink.path, file_line(anchor, when))
    else:
        _send_syslog(sink, frame(syslog_message(anchor, when)), settings.audit_anchor_ca_file)


def ship(settings: Settings) -> Anchor | None:
    """Ship the newest audit event's anchor (None, nothing shipped, while the log is empty)."""
    from neuronav.db.session import session_scope

    with session_scope(settings.database) as db:
        anchor = head(db)
    if anchor is not None:
        ship_anchor(settings, anchor)
    return anchor


def start_shipping(settings: Settings) -> Periodic | None:
    """The server's shipping thread (None when no sink is configured); the sink is checked here, at start."""
    if not settings.audit_anchor_sink:
        return None
    parse_sink(settings.audit_anchor_sink)
    return Periodic("audit-anchors", settings.audit_anchor_interval_s, lambda: ship(settings), immediately=True).start()


__all__ = ["Sink", "file_line", "frame", "parse_sink", "ship", "ship_anchor", "start_shipping", "syslog_message"]
