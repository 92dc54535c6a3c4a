"""The durable outbox's worker and its senders: every delivery to a hospital system goes through here.

The records and their rules (enqueue, claim, render, record, resend, back-off) are
:mod:`neuronav.workflow.deliveries`; this module runs them: :func:`deliver_due` takes each due delivery
(a conditional UPDATE: one server sends it), renders it, hands it to the sender registered for its
destination's kind and records the outcome. A thread of every server runs it every
``NEURONAV_OUTBOX_INTERVAL_S`` seconds (:func:`start_outbox`, like the maintenance sweep).

Senders are registered by kind (:func:`register_sender`), so DICOM C-STORE and STOW-RS senders plug in
without touching the outbox::

    hl7       neuronav.integrations.hl7.mllp.send        (ORU over MLLP: AA delivered, AE failed, AR /
                                                         no answer retried)
    fhir      neuronav.integrations.fhir.client.send     (transaction: 2xx delivered, 4xx failed with the
                                                         OperationOutcome, 5xx / 408 / 429 / network retried)
    dicom     neuronav.integrations.dimse.scu.send       (C-STORE to a DICOM node: each instance's status;
                                                         Out of Resources / no association retried)
    dicomweb  neuronav.integrations.dicomweb.stow.send   (STOW-RS: 200 / 202 without failures delivered,
                                                         a Failed SOP Sequence or 4xx failed, 5xx retried)

The DICOM outputs (seg, sr, epdf, sc) are rendered as files in a private temporary folder, removed here
once the sender is done with them.

A sender returns a :class:`SendResult` and never raises for what a peer did; an exception from a sender
is recorded as a retryable failure with its class name (messages could quote patient data: never logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from neuronav.config import Settings
from neuronav.errors import NeuroNavError
from neuronav.storage.store import ObjectStore
from neuronav.workflow import deliveries
from neuronav.workflow.background import Periodic
from neuronav.workflow.deliveries import Payload
from neuronav.workflow.jobs import new_lease_owner
from neuronav.workflow.uploads import remove_tmp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """What a peer answered: ``delivered``; else ``retry`` (worth another attempt) or not. ``status`` is
    the peer's code (AA / AE / AR, ``HTTP 201``), ``text`` its words (ACK text, OperationOutcome JSON)."""

    delivered: bool
    retry: bool = False
    status: str | None = None
    text: str | None = None


Sender = Callable[[Payload], SendResult]
_SENDERS: dict[str, Sender] = {}


def register_sender(kind: str, sender: Sender) -> None:
    """Make ``sender`` deliver every destination of ``kind`` (replacing an earlier one: tests, plug-ins)."""
    _SENDERS[kind] = sender


def sender_for(kind: str) -> Sender | None:
    if kind not in _SENDERS:
        _register_builtin()
    return _SENDERS.get(kind)


def _register_builtin() -> None:
    from neuronav.integrations.dicomweb.stow import send as send_stow
    from neuronav.integrations.dimse.scu import send as send_dicom
    from neuronav.integrations.fhir.client import send as send_fhir
    from neuronav.integrations.hl7.mllp import send as send_hl7

    _SENDERS.setdefault("hl7", send_hl7)
    _SENDERS.setdefault("fhir", send_fhir)
    _SENDERS.setdefault("dicom", send_dicom)
    _SENDERS.setdefault("dicomweb", send_stow)


def deliver_one(settings: Settings, store: ObjectStore, delivery_id: str, owner: str | None = None) -> str | None:
    """Claim, render, send and record one delivery; its new state, or None when another server has it."""
    owner = owner or new_lease_owner()
    if not deliveries.claim(settings, delivery_id, owner):
        return None
    try:
        payload = deliveries.render(settings, store, delivery_id)
    except NeuroNavError as exc:  # the output cannot be made (report gone, setting missing): not retried
        return deliveries.record(
            settings, delivery_id, owner, delivered=False, retry=False, status=None, text=None, error=str(exc)
        )
    try:
        return _send(settings, delivery_id, owner, payload)
    finally:
        if payload.extra.get("folder") is not None:
            remove_tmp(payload.extra["folder"])


def _send(settings: Settings, delivery_id: str, owner: str, payload: Payload) -> str:
    sender = sender_for(payload.kind)
    if sender is None:
        return deliveries.record(
            settings,
            delivery_id,
            owner,
            delivered=False,
            retry=True,
            status=None,
            text=None,
            error=f"no sender for {payload.kind} destinations in this NeuroNav",
        )
    try:
        result = sender(payload)
    except Exception as exc:  # a sender's bug or an unexpected network error: retried, class only
        log.warning("delivery %s: sender %s failed (%s)", delivery_id, payload.kind, type(exc).__name__)
        result = SendResult(delivered=False, retry=True, status=None, text=f"sender error ({type(exc).__name__})")
    return deliveries.record(
        settings,
        delivery_id,
        owner,
        delivered=result.delivered,
        retry=result.retry,
        status=result.status,
        text=result.text,
    )


def deliver_due(settings: Settings, store: ObjectStore, *, limit: int = 50) -> dict[str, int]:
    """Every delivery due now (at most ``limit``), one after the other; counts per new state."""
    owner = new_lease_owner()
    counts: dict[str, int] = {}
    for delivery_id in deliveries.due(settings, limit=limit):
        state = deliver_one(settings, store, delivery_id, owner)
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    return counts


def start_outbox(settings: Settings, store: ObjectStore) -> Periodic:
    """:func:`deliver_due` every ``NEURONAV_OUTBOX_INTERVAL_S`` seconds in a daemon thread, and at once
    when a commit of this process queued deliveries (a signature)."""
    worker = Periodic("outbox", settings.outbox_interval_s, lambda: deliver_due(settings, store))
    deliveries.on_queued(worker.wake)
    return worker.start()


__all__ = ["SendResult", "Sender", "deliver_due", "deliver_one", "register_sender", "sender_for", "start_outbox"]
