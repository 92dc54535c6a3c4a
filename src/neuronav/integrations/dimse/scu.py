"""C-STORE SCU: send DICOM files to a node (the ``dicom`` sender of the outbox).

:func:`send_files` opens one association to the node (calling AE title: ours), proposes each file's
SOP class in the file's own transfer syntax (and Explicit / Implicit VR Little Endian, into which a
file in a native syntax can be converted), sends every file and returns the peer's status for each
(:class:`SendResult`). It raises :class:`~neuronav.integrations.dimse.errors.DicomNetworkError` naming
what went wrong when nothing could be delivered as asked: the peer unreachable, the association
refused (with the peer's reason), a timeout, an abort, or a failure status for any file (the result,
with every status, is on the error as ``result``). Warnings (0xB000-0xBFFF) count as delivered, as
PS3.4 says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread, uid
from pynetdicom import AE, evt
from pynetdicom.association import Association

from neuronav.config import Settings
from neuronav.db.models import DicomNodeRow
from neuronav.errors import InputError
from neuronav.integrations.dimse.errors import DicomNetworkError
from neuronav.integrations.dimse.status import store_outcome

if TYPE_CHECKING:
    from neuronav.integrations.outbox import SendResult as OutboxResult
    from neuronav.workflow.deliveries import Payload

NATIVE = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)


@dataclass(frozen=True)
class Peer:
    """Where to send: a node's AE title, host and port (:class:`neuronav.db.models.DicomNodeRow` fits)."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class InstanceStatus:
    sop_instance_uid: str
    status: int  # the peer's DIMSE status (0x0000 success, 0xBxxx warning, else failure)
    comment: str = ""

    @property
    def delivered(self) -> bool:
        return self.status == 0x0000 or 0xB000 <= self.status <= 0xBFFF


@dataclass(frozen=True)
class SendResult:
    peer: str  # AE@host:port
    statuses: list[InstanceStatus] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.statuses) and all(s.delivered for s in self.statuses)


def _describe_rejection(assoc: Association) -> str:
    rsp = assoc.acceptor.primitive
    if rsp is None or rsp.result is None:
        return "no answer"
    kind = "permanently" if rsp.result == 0x01 else "transiently"
    return f"{kind}, {rsp.reason_str}" if getattr(rsp, "reason_str", None) else kind


def associate(ae: AE, peer: Peer) -> Association:
    """Open an association from ``ae`` (its contexts and timeouts set) to ``peer``; a
    :class:`DicomNetworkError` says why none was made: refused (with the peer's reason), unreachable, no
    answer within the ACSE timeout, or aborted."""
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    timeout = float(ae.acse_timeout or 0.0)
    connected = threading.Event()
    started = time.monotonic()
    assoc = ae.associate(
        peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, lambda _e: connected.set())]
    )
    if assoc.is_rejected:
        raise DicomNetworkError(f"{where} refused the association ({_describe_rejection(assoc)})", failure="refused")
    if not assoc.is_established:
        if not connected.is_set():
            raise DicomNetworkError(f"{where} is unreachable (no connection could be made)", failure="unreachable")
        if time.monotonic() - started >= timeout:
            raise DicomNetworkError(
                f"{where} did not answer the association request within {timeout:g} s", failure="timeout"
            )
        raise DicomNetworkError(f"{where} aborted the association request", failure="aborted")
    return assoc


def send_files(
    peer: Peer,
    files: Sequence[Path],
    *,
    calling_ae: str,
    acse_timeout: float = 30.0,
    dimse_timeout: float = 60.0,
    network_timeout: float = 60.0,
) -> SendResult:
    """Send ``files`` to ``peer`` in one association (module docstring); the statuses, or
    :class:`DicomNetworkError`."""
    if not files:
        raise InputError("nothing to send: no DICOM files given")
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    datasets = []
    for path in files:
        try:
            ds = dcmread(path)
        except Exception as exc:
            raise InputError(f"{path.name}: not a readable DICOM file ({type(exc).__name__})") from exc
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise InputError(f"{path.name}: no SOPClassUID or SOPInstanceUID")
        datasets.append(ds)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = acse_timeout
    ae.dimse_timeout = dimse_timeout
    ae.network_timeout = network_timeout
    proposed: dict[str, list[str]] = {}
    for ds in datasets:
        syntaxes = proposed.setdefault(str(ds.SOPClassUID), [])
        ts = str(ds.file_meta.TransferSyntaxUID)
        for syntax in (ts, *(NATIVE if ts in NATIVE else ())):
            if syntax not in syntaxes:
                syntaxes.append(syntax)
    if len(proposed) > 128:
        raise InputError(f"{len(proposed)} SOP classes in one send: at most 128 per association")
    for sop, syntaxes in proposed.items():
        ae.add_requested_context(sop, syntaxes)
    assoc = associate(ae, peer)
    statuses: list[InstanceStatus] = []
    try:
        for ds in datasets:
            rsp = assoc.send_c_store(ds)
            if rsp is None or "Status" not in rsp:
                if assoc.is_aborted:
                    raise DicomNetworkError(f"{where} aborted the association while receiving", failure="aborted")
                raise DicomNetworkError(
                    f"{where} sent no C-STORE response within {dimse_timeout:g} s", failure="timeout"
                )
            statuses.append(
                InstanceStatus(str(ds.SOPInstanceUID), int(rsp.Status), str(rsp.get("ErrorComment", "") or ""))
            )
    except ValueError as exc:  # no accepted presentation context for a file
        raise DicomNetworkError(
            f"{where} accepted no presentation context for a file: {exc}", failure="refused"
        ) from exc
    finally:
        if assoc.is_established:
            assoc.release()
    result = SendResult(where, statuses)
    failed = [s for s in statuses if not s.delivered]
    if failed:
        first = failed[0]
        error = DicomNetworkError(
            f"{where} answered failure status 0x{first.status:04X} for {len(failed)} of {len(statuses)} instances"
            + (f" ({first.comment})" if first.comment else ""),
            failure="status",
            status=first.status,
            result=result,
        )
        raise error
    return result


def send_to_node(settings: Settings, node: Peer | DicomNodeRow, files: Sequence[Path]) -> SendResult:
    """:func:`send_files` to a registered node as NeuroNav (``NEURONAV_DICOM_AE_TITLE``, the listener's
    timeouts): the function the outbox registers as its ``dicom`` sender."""
    return send_files(
        Peer(node.ae_title, node.host, node.port),
        files,
        calling_ae=settings.dicom_ae_title,
        acse_timeout=settings.dicom_acse_timeout_s,
        dimse_timeout=settings.dicom_dimse_timeout_s,
        network_timeout=settings.dicom_network_timeout_s,
    )


def send(payload: Payload) -> OutboxResult:
    """The outbox's ``dicom`` sender: the files rendered for a delivery to the node in ``payload.config``
    (``ae_title``, ``host``, ``port``, ``calling_ae`` and timeouts, set by
    :func:`neuronav.workflow.deliveries.render`). Every instance's status decides
    (:func:`~neuronav.integrations.dimse.status.store_outcome`): all stored → delivered; a status worth
    another try, or no association (refused, unreachable, timed out, aborted) → retry; else failed."""
    from neuronav.integrations.outbox import SendResult as Outcome

    cfg = payload.config
    peer = Peer(str(cfg["ae_title"]), str(cfg["host"]), int(cfg["port"]))
    try:
        result = send_files(
            peer,
            list(payload.extra["files"]),
            calling_ae=str(cfg.get("calling_ae", "NEURONAV")),
            acse_timeout=float(cfg.get("acse_timeout", 30.0)),
            dimse_timeout=float(cfg.get("dimse_timeout", 60.0)),
            network_timeout=float(cfg.get("network_timeout", 60.0)),
        )
    except DicomNetworkError as exc:
        if exc.failure != "status" or not isinstance(exc.result, SendResult):
            return Outcome(delivered=False, retry=True, status=exc.failure, text=str(exc))
        result = exc.result
    outcomes = [store_outcome(s.status) for s in result.statuses]
    worst = next((s for s in result.statuses if store_outcome(s.status) == "failed"), None) or next(
        (s for s in result.statuses if store_outcome(s.status) == "retry"), None
    )
    stored = sum(o == "delivered" for o in outcomes)
    text = f"{stored} of {len(outcomes)} instances stored by {result.peer}"
    if worst is None:
        first = result.statuses[0].status if result.statuses else 0
        return Outcome(delivered=True, status=f"C-STORE 0x{first:04X}", text=text)
    comment = f" ({worst.comment})" if worst.comment else ""
    return Outcome(
        delivered=False,
        retry="failed" not in outcomes,
        status=f"C-STORE 0x{worst.status:04X}",
        text=f"{text}; 0x{worst.status:04X}{comment}",
    )


__all__ = ["InstanceStatus", "Peer", "SendResult", "send", "send_files", "send_to_node"]
