"""Imaging orders from the RIS / EHR (HL7 v2), and the studies that answer them, for every edge.

Messages (parsed tolerantly by python-hl7, checked field by field here):

============  ========================================================================================
ORM^O01       ORC-1 NW: a new order (ORC-2 placer, ORC-3 filler, OBR-18 or IPC-1 accession, OBR-4
OMI^O23       procedure, OBR-27 / TQ1-7 / ORC-9 date, PID-3 MRN^^^issuer, PID-5, PID-7, PID-8);
              ORC-1 CA / OC / DC: cancelled (found by placer number, else accession)
ADT^A08       the patient's name, birth date and sex updated on their open orders (by MRN)
ADT^A40       merge: the orders of MRG-1 (the old MRN) move to PID-3 (the surviving one)
============  ========================================================================================

:func:`receive` answers what the listener sends back: ``("AA", "")``, or ``("AE", reason)`` for a message
that names a field wrongly (the reason names the field, never its value), or ``("AR", reason)`` for a
message type it does not take. A refused message is kept encrypted (``hl7_rejected``) for an admin.

Matching (:func:`match_study`): a study that arrives is matched to an open order by its accession number,
else by the patient's MRN (and issuer) and the study date equal to the order's date; the order becomes
``arrived``, then ``analysed`` and ``signed`` as the study's report goes (:func:`advance`), and the ORU
that answers it carries its placer and filler numbers (:func:`order_numbers`). Identity is stored
encrypted; the accession and the MRN also as keyed digests (HMAC with the pseudonym key), so matching
decrypts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import OrderRow, RejectedMessageRow, StudyRow, utcnow
from neuronav.errors import InputError
from neuronav.pseudonym import pseudonym_key
from neuronav.security.access import Actor, require
from neuronav.security.permissions import Permission
from neuronav.storage import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow.access import audit_event

log = logging.getLogger(__name__)

NEW = ("NW",)
CANCEL = ("CA", "OC", "DC")
ORDER_TYPES = ("ORM^O01", "OMI^O23")
ADT_TYPES = ("ADT^A08", "ADT^A40")
OPEN_STATES = ("ordered", "arrived", "analysed")


class MessageError(InputError):
    """A message the listener answers AE (``code``) or AR: ``reason`` names the field, never its value."""

    def __init__(self, reason: str, code: str = "AE", error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        # HL7 table 0357: 101 required field missing, 200 unsupported message type, 201 unsupported event
        # code, 207 application error
        self.error = error or ("101" if "missing" in reason else "200" if code == "AR" else "207")


def digest(settings: Settings, kind: str, *parts: str | None) -> str:
    """A keyed digest (HMAC-SHA256, the pseudonym key) of an identifier, to match without decrypting."""
    text = kind + "\x1f" + "\x1f".join((p or "").strip().upper() for p in parts)
    return hmac.new(pseudonym_key(settings), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _raw(msg: Any, segment: str, index: int) -> str:
    """The ER7 text of field ``index`` of the first ``segment`` ('' when absent)."""
    try:
        seg = msg.segment(segment)
    except KeyError:
        return ""
    if segment == "MSH":  # python-hl7 counts MSH-1 (the separator) as index 1, like the standard
        return str(seg[index]) if len(seg) > index else ""
    return str(seg[index]) if len(seg) > index else ""


def _field(msg: Any, segment: str, index: int, component: int = 0, *, required: str | None = None) -> str:
    """One value (the first repetition; ``component`` from 1, or the whole field), unescaped; MessageError
    naming the field when ``required`` and absent."""
    text = _raw(msg, segment, index).split("~")[0]
    if component:
        parts = text.split("^")
        text = parts[component - 1] if len(parts) >= component else ""
        text = text.split("&")[0]
    text = str(msg.unescape(text)).strip() if text else ""
    if not text and required:
        raise MessageError(f"{segment}-{index}{f'.{component}' if component else ''} ({required}) is missing")
    return text


def _date(text: str) -> str | None:
    digits = text[:8]
    if len(digits) == 8 and digits.isdigit():
        try:
            datetime.strptime(digits, "%Y%m%d")
        except ValueError:
            return None
        return digits
    return None


@dataclass(frozen=True)
class Identity:
    mrn: str
    issuer: str | None
    name: str | None
    birth_date: str | None
    sex: str | None


def _identity(msg: Any) -> Identity:
    reps = [r for r in _raw(msg, "PID", 3).split("~") if r]
    chosen = next((r for r in reps if len(r.split("^")) > 4 and r.split("^")[4] == "MR"), reps[0] if reps else "")
    cx = chosen.split("^")
    mrn = str(msg.unescape(cx[0])).strip() if cx and cx[0] else ""
    issuer = str(msg.unescape(cx[3].split("&")[0])).strip() or None if len(cx) > 3 else None
    if not mrn:
        raise MessageError("PID-3 (patient identifier list) has no MRN")
    pid5 = _raw(msg, "PID", 5).split("~")[0]
    name = "^".join(str(msg.unescape(p)) for p in pid5.split("^")[:5]).rstrip("^") or None if pid5 else None
    birth = _field(msg, "PID", 7)
    if birth and _date(birth) is None:
        raise MessageError("PID-7 (date of birth) is not a date YYYYMMDD")
    sex = _field(msg, "PID", 8)[:1].upper() or None
    return Identity(mrn=mrn, issuer=issuer, name=name, birth_date=_date(birth) if birth else None, sex=sex)


def _enc(store: ObjectStore, value: str | None, column: str) -> str | None:
    return encrypt_field(value, store.field_key(), column) if value else None


def _set_identity(order: OrderRow, who: Identity, store: ObjectStore, settings: Settings) -> None:
    order.mrn_digest = digest(settings, "mrn", who.issuer, who.mrn)
    order.mrn_enc = _enc(store, who.mrn, "orders.mrn")
    order.mrn_issuer = who.issuer
    order.patient_name_enc = _enc(store, who.name, "orders.patient_name")
    order.birth_date_enc = _enc(store, who.birth_date, "orders.birth_date")
    order.sex = who.sex if who.sex in ("M", "F", "O", "U") else None


def _ei(msg: Any, segment: str, index: int) -> tuple[str | None, str | None]:
    parts = _raw(msg, segment, index).split("~")[0].split("^")
    number = str(msg.unescape(parts[0])).strip()[:64] if parts[0] else ""
    authority = str(msg.unescape(parts[1])).strip()[:64] if len(parts) > 1 and parts[1] else ""
    return number or None, authority or None


def _order_message(db: Session, store: ObjectStore, settings: Settings, msg: Any, kind: str) -> OrderRow:
    control = _field(msg, "ORC", 1, required="order control").upper()
    placer, placer_auth = _ei(msg, "ORC", 2)
    filler, filler_auth = _ei(msg, "ORC", 3)
    if not placer:
        placer, placer_auth = _ei(msg, "OBR", 2)
    if not filler:
        filler, filler_auth = _ei(msg, "OBR", 3)
    accession = _field(msg, "OBR", 18) or (_field(msg, "IPC", 1, 1) if _has(msg, "IPC") else "")
    if control in CANCEL:
        order = _find(db, settings, placer=placer, accession=accession)
        if order is None:
            raise MessageError("ORC-2 / OBR-18 name no order known here (nothing to cancel)")
        order.state, order.updated_at = "cancelled", utcnow()
        return order
    if control not in NEW:
        raise MessageError(f"ORC-1 order control {control[:2]!r} is not taken here (NW, CA, OC, DC)", "AR", "201")
    if not placer and not accession:
        raise MessageError("ORC-2 (placer order number) and OBR-18 (accession number) are both missing")
    who = _identity(msg)
    if _find(db, settings, placer=placer, accession=accession) is not None:
        raise MessageError("ORC-2 / OBR-18: this order was received already")
    when = _date(_field(msg, "TQ1", 7)) if _has(msg, "TQ1") else None
    when = when or _date(_field(msg, "OBR", 27, 4)) or _date(_field(msg, "OBR", 7)) or _date(_field(msg, "ORC", 9))
    order = OrderRow(
        placer_number=placer,
        placer_authority=placer_auth,
        filler_number=filler,
        filler_authority=filler_auth,
        accession_digest=digest(settings, "accession", accession) if accession else None,
        accession_enc=_enc(store, accession or None, "orders.accession"),
        procedure=_field(msg, "OBR", 4)[:200] or None,
        scheduled_date=when,
        state="ordered",
        message_type=kind,
        control_id=_field(msg, "MSH", 10)[:64] or None,
    )
    _set_identity(order, who, store, settings)
    db.add(order)
    return order


def _has(msg: Any, segment: str) -> bool:
    try:
        msg.segment(segment)
    except KeyError:
        return False
    return True


def _find(db: Session, settings: Settings, *, placer: str | None, accession: str | None) -> OrderRow | None:
    if placer:
        found = db.scalars(select(OrderRow).where(OrderRow.placer_number == placer)).first()
        if found is not None:
            return found
    if accession:
        return db.scalars(
            select(OrderRow).where(OrderRow.accession_digest == digest(settings, "accession", accession))
        ).first()
    return None


def _adt(db: Session, store: ObjectStore, settings: Settings, msg: Any, kind: str) -> int:
    who = _identity(msg)
    if kind == "ADT^A40":
        mrg = _field(msg, "MRG", 1, required="prior patient identifier")
        parts = mrg.split("^")
        old = digest(settings, "mrn", parts[3] if len(parts) > 3 and parts[3] else who.issuer, parts[0])
        rows = list(db.scalars(select(OrderRow).where(OrderRow.mrn_digest == old)))
    else:
        key = digest(settings, "mrn", who.issuer, who.mrn)
        rows = list(db.scalars(select(OrderRow).where(OrderRow.mrn_digest == key, OrderRow.state.in_(OPEN_STATES))))
    for order in rows:
        _set_identity(order, who, store, settings)
        order.updated_at = utcnow()
    return len(rows)


def receive(db: Session, store: ObjectStore, settings: Settings, er7: str, *, peer: str | None) -> tuple[str, str, str]:
    """Apply one HL7 message; the ACK code, text and HL7 error code (table 0357, '' for AA) the listener
    answers. Audited; a refusal is kept."""
    import hl7

    kind = ""
    try:
        try:
            msg = hl7.parse(er7.replace("\n", "\r").strip("\r"))
            msh9 = _raw(msg, "MSH", 9)
        except (hl7.exceptions.ParseException, KeyError, IndexError, ValueError) as exc:
            raise MessageError(f"not an HL7 v2 message ({type(exc).__name__})") from exc
        kind = "^".join(msh9.split("^")[:2])
        if kind in ORDER_TYPES:
            order = _order_message(db, store, settings, msg, kind)
            db.flush()
            detail: dict[str, Any] = {"type": kind, "order": order.id, "state": order.state}
        elif kind in ADT_TYPES:
            detail = {"type": kind, "orders": _adt(db, store, settings, msg, kind)}
        else:
            raise MessageError(f"MSH-9 message type {kind or '(none)'} is not taken here", "AR")
    except MessageError as exc:
        db.rollback()
        db.add(
            RejectedMessageRow(
                peer=peer,
                ack_code=exc.code,
                reason=exc.reason,
                message_enc=encrypt_field(er7, store.field_key(), "hl7_rejected.message"),
            )
        )
        audit_event(
            db,
            None,
            "hl7.reject",
            outcome="failure",
            client=peer,
            detail={"type": kind, "ack": exc.code, "reason": exc.reason},
        )
        log.info("hl7 message from %s refused (%s): %s", peer, exc.code, exc.reason)
        return exc.code, exc.reason, exc.error
    audit_event(db, None, "hl7.receive", client=peer, detail=detail)
    return "AA", "", ""


# -- studies and their orders ------------------------------------------------------------------------------


def match_study(db: Session, store: ObjectStore, settings: Settings, study: StudyRow) -> OrderRow | None:
    """The open order ``study`` answers (by accession, else by MRN + issuer and date), marked ``arrived``."""
    from neuronav.workflow.identity import patient_of

    p = patient_of(store, study, settings)
    if p is None:
        return None  # no identity in the study (NIfTI, or de-identified): nothing to match on
    order = None
    if p.accession_number:
        key = digest(settings, "accession", p.accession_number)
        order = db.scalars(
            select(OrderRow).where(OrderRow.accession_digest == key, OrderRow.state == "ordered")
        ).first()
    if order is None and p.mrn and study.study_date:
        key = digest(settings, "mrn", p.mrn_issuer, p.mrn)
        order = db.scalars(
            select(OrderRow).where(
                OrderRow.mrn_digest == key, OrderRow.scheduled_date == study.study_date, OrderRow.state == "ordered"
            )
        ).first()
    if order is not None:
        order.study_id, order.state, order.updated_at = study.id, "arrived", utcnow()
        audit_event(db, None, "order.match", target_type="study", target_id=study.id, detail={"order": order.id})
    return order


def advance(db: Session, study_id: str, state: str) -> None:
    """Move the open order of a study on (``analysed``, ``signed``)."""
    for order in db.scalars(select(OrderRow).where(OrderRow.study_id == study_id, OrderRow.state != "cancelled")):
        order.state, order.updated_at = state, utcnow()


def order_of(db: Session, study_id: str) -> OrderRow | None:
    return db.scalars(select(OrderRow).where(OrderRow.study_id == study_id).order_by(OrderRow.received_at)).first()


def order_numbers(db: Session, study_id: str) -> Any:
    """The placer and filler numbers an ORU of ``study_id`` answers (:class:`~neuronav.report.hl7v2.OrderNumbers`)."""
    from neuronav.report.hl7v2 import OrderNumbers

    order = order_of(db, study_id)
    if order is None:
        return None
    return OrderNumbers(
        placer=order.placer_number,
        placer_authority=order.placer_authority,
        filler=order.filler_number,
        filler_authority=order.filler_authority,
    )


@dataclass(frozen=True)
class RejectedOut:
    id: str
    received_at: datetime
    peer: str | None
    ack_code: str
    reason: str  # names the field, never its value
    message: str | None  # decrypted only for the operator of the machine (CLI); None in the API


def rejected_messages(
    db: Session, store: ObjectStore | None, actor: Actor | None, *, limit: int = 100
) -> list[RejectedOut]:
    """Messages the listener refused, newest first: for an administrator (``settings:manage``) without
    their content (it names a patient); with it for the operator (``actor`` None, ``store`` given)."""
    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
        audit_event(db, actor, "hl7.rejected.list", detail={"limit": limit})
    rows = db.scalars(select(RejectedMessageRow).order_by(RejectedMessageRow.received_at.desc()).limit(limit))
    show = actor is None and store is not None
    return [
        RejectedOut(
            r.id,
            r.received_at,
            r.peer,
            r.ack_code,
            r.reason,
            decrypt_field(r.message_enc, store.field_key(), "hl7_rejected.message") if show and store else None,
        )
        for r in rows
    ]


__all__ = ["MessageError", "advance", "digest", "match_study", "order_numbers", "receive", "rejected_messages"]
