"""Where reports go, and the durable record of each delivery: the outbox's behaviour, for every edge.

::

    destinations ──< deliveries

    report signed / amended / made ─► enqueue (same transaction as the signature: durable)
        one row per (destination, report, version, output): the idempotency key, so the same version is
        never queued — and so never delivered — twice
    worker (neuronav.integrations.outbox, a thread of every server) ─► claim (conditional UPDATE, lease)
        ─► render (the stored version; the patient's identity for a clinical destination) ─► the sender of
        the destination's kind ─► record: delivered | queued again after a back-off | failed
    admin ─► resend (a failed or delivered row back to queued; audited)

States: ``queued`` (due at ``next_attempt_at``) → ``sending`` (claimed under a lease; a process that died
leaves it to be taken up again after ``NEURONAV_OUTBOX_LEASE_S``) → ``delivered`` | ``failed`` (the peer
refused the content, or ``NEURONAV_OUTBOX_MAX_ATTEMPTS`` attempts were made; the peer's words are kept).
Back-off: ``NEURONAV_OUTBOX_BACKOFF_S`` doubled per attempt, at most an hour.

Destination kinds and their configuration (secrets are kept encrypted, never shown back):

* ``hl7``: ``host``, ``port``, ``tls`` (bool), ``ca_file``, ``timeout_s``, ``receiving_application``,
  ``receiving_facility``, ``pdf`` = ``embed`` (ED parts) | ``reference`` (RP link to this service,
  ``NEURONAV_PUBLIC_URL``) | ``none``; output ``hl7``.
* ``fhir``: ``base_url``, ``version`` (R4 | R4B | R5), ``auth`` = ``none`` | ``bearer`` (secret ``token``)
  | ``client_credentials`` (``token_url``, ``client_id``, ``scope``; secret ``client_secret``),
  ``conditional`` = ``server`` (the server resolves the transaction's conditional entries) | ``client`` (they
  are resolved by searches first: servers that limit conditional transactions), ``mrn_system``,
  ``accession_system``, ``timeout_s``, ``pdf`` = ``embed`` (presentedForm) | ``none``; output ``fhir-r4``
  | ``fhir-r4b`` | ``fhir-r5``.
* ``dicom``: a DICOM node of the registry (:mod:`neuronav.workflow.nodes`) that receives results: the node
  owns this destination row (made and removed with it, :func:`sync_node`; not added or removed here).
  ``config``: ``node_id``, ``default_route``; outputs ``seg`` | ``sr`` | ``epdf`` | ``sc`` (the node's
  ``send``), events from its ``send_on`` (``final`` means final and amendment). With ``default_route`` it
  receives the results of the studies it sent (a :class:`DicomArrivalRow` of that node), else of every
  study. Sent by C-STORE (:mod:`neuronav.integrations.dimse.scu`).
* ``dicomweb``: a STOW-RS endpoint: ``base_url`` (the DICOMweb root; ``/studies`` is posted to), ``auth`` =
  ``none`` | ``basic`` (``username``; secret ``password``) | ``bearer`` (secret ``token``), ``timeout_s``,
  ``ca_file``; outputs ``seg`` | ``sr`` | ``epdf`` | ``sc`` (default seg, sr, epdf).

DICOM outputs carry UIDs stable per report version (:func:`neuronav.report._dicom_common.result_uid`): a
resend or re-export of the same version sends the same SOP Instance UIDs (the PACS keeps one copy); the
signed version and each amendment are new series, and an amendment's SR names the SR of the version it
replaces in its Predecessor Documents Sequence. A delivery is one output of one report version for one
event (its idempotency key): the preliminary and the final of version 1 are two deliveries.

Every change of a destination, every delivery's outcome and every resend is audited (ids, states and
the peer's status code; never patient data, never the peer's text, which could quote it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import (
    DELIVERY_EVENTS,
    DESTINATION_KINDS,
    AnalysisRow,
    DeliveryRow,
    DestinationRow,
    DicomArrivalRow,
    DicomNodeRow,
    ReportRow,
    StudyRow,
    utcnow,
)
from neuronav.db.session import session_scope
from neuronav.errors import ConflictError, InputError, NotFoundError
from neuronav.report.model import Report
from neuronav.security.access import Actor, require
from neuronav.security.permissions import Permission
from neuronav.storage import decrypt_field, encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow.access import audit_event

log = logging.getLogger(__name__)

SECRETS_COLUMN = "destinations.secrets"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SECRET_KEYS = {"hl7": (), "fhir": ("token", "client_secret"), "dicom": (), "dicomweb": ("token", "password")}
DICOM_OUTPUTS = ("seg", "sr", "epdf", "sc")
FHIR_OUTPUTS = {"R4": "fhir-r4", "R4B": "fhir-r4b", "R5": "fhir-r5"}
BACKOFF_CAP_S = 3600.0

_HL7_KEYS = {"host", "port", "tls", "ca_file", "timeout_s", "receiving_application", "receiving_facility", "pdf"}
_FHIR_KEYS = {
    "base_url",
    "version",
    "auth",
    "token_url",
    "client_id",
    "scope",
    "conditional",
    "mrn_system",
    "accession_system",
    "timeout_s",
    "ca_file",
    "pdf",
}
_DICOMWEB_KEYS = {"base_url", "auth", "username", "timeout_s", "ca_file"}


# -- destinations ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationOut:
    """A destination as shown to an administrator (no secrets: only which ones are set)."""

    id: str
    name: str
    kind: str
    config: dict[str, Any]
    secrets_set: list[str]
    outputs: list[str]
    events: list[str]
    identified: bool
    enabled: bool
    created_at: datetime


def _check_config(kind: str, config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The checked configuration of ``kind`` and its default outputs; InputError naming the problem."""
    import re

    cfg = dict(config)
    if kind == "hl7":
        unknown = set(cfg) - _HL7_KEYS
        if unknown:
            raise InputError(f"unknown hl7 setting {', '.join(sorted(unknown))}; known: {', '.join(sorted(_HL7_KEYS))}")
        if not cfg.get("host"):
            raise InputError("an hl7 destination needs --host")
        try:
            port = int(cfg.get("port", 0))
        except (TypeError, ValueError):
            raise InputError(f"hl7 port must be a number, not {cfg.get('port')!r}") from None
        if not 0 < port < 65536:
            raise InputError("an hl7 destination needs --port (1–65535)")
        cfg["port"] = port
        cfg["tls"] = bool(cfg.get("tls", False))
        cfg["pdf"] = str(cfg.get("pdf", "embed"))
        if cfg["pdf"] not in ("embed", "reference", "none"):
            raise InputError(f"hl7 pdf must be embed, reference or none, not {cfg['pdf']!r}")
        cfg["timeout_s"] = float(cfg.get("timeout_s", 30.0))
        return cfg, ["hl7"]
    if kind == "fhir":
        unknown = set(cfg) - _FHIR_KEYS
        if unknown:
            known = ", ".join(sorted(_FHIR_KEYS))
            raise InputError(f"unknown fhir setting {', '.join(sorted(unknown))}; known: {known}")
        base = str(cfg.get("base_url", ""))
        if not re.match(r"^https?://[^\s/]+", base):
            raise InputError(f"a fhir destination needs --base-url http(s)://…, not {base!r}")
        cfg["base_url"] = base.rstrip("/")
        cfg["version"] = str(cfg.get("version", "R4")).upper()
        if cfg["version"] not in FHIR_OUTPUTS:
            raise InputError(f"fhir version must be R4, R4B or R5, not {cfg['version']!r}")
        cfg["auth"] = str(cfg.get("auth", "none"))
        if cfg["auth"] not in ("none", "bearer", "client_credentials"):
            raise InputError(f"fhir auth must be none, bearer or client_credentials, not {cfg['auth']!r}")
        if cfg["auth"] == "client_credentials" and not (cfg.get("token_url") and cfg.get("client_id")):
            raise InputError("fhir auth client_credentials needs --token-url and --client-id")
        cfg["conditional"] = str(cfg.get("conditional", "server"))
        if cfg["conditional"] not in ("server", "client"):
            raise InputError(f"fhir conditional must be server or client, not {cfg['conditional']!r}")
        cfg["timeout_s"] = float(cfg.get("timeout_s", 30.0))
        cfg["pdf"] = str(cfg.get("pdf", "embed"))
        if cfg["pdf"] not in ("embed", "none"):
            raise InputError(f"fhir pdf must be embed or none, not {cfg['pdf']!r}")
        return cfg, [FHIR_OUTPUTS[cfg["version"]]]
    if kind == "dicomweb":
        unknown = set(cfg) - _DICOMWEB_KEYS
        if unknown:
            known = ", ".join(sorted(_DICOMWEB_KEYS))
            raise InputError(f"unknown dicomweb setting {', '.join(sorted(unknown))}; known: {known}")
        base = str(cfg.get("base_url", ""))
        if not re.match(r"^https?://[^\s/]+", base):
            raise InputError(f"a dicomweb destination needs --base-url http(s)://… (the DICOMweb root), not {base!r}")
        cfg["base_url"] = base.rstrip("/")
        cfg["auth"] = str(cfg.get("auth", "none"))
        if cfg["auth"] not in ("none", "basic", "bearer"):
            raise InputError(f"dicomweb auth must be none, basic or bearer, not {cfg['auth']!r}")
        if cfg["auth"] == "basic" and not cfg.get("username"):
            raise InputError("dicomweb auth basic needs --username (and --password-file)")
        try:
            cfg["timeout_s"] = float(cfg.get("timeout_s", 60.0))
        except (TypeError, ValueError):
            raise InputError(f"dicomweb timeout_s must be a number, not {cfg.get('timeout_s')!r}") from None
        return cfg, ["seg", "sr", "epdf"]
    raise InputError(
        "DICOM nodes that receive results are registered with `neuronav nodes add … --send … --on …` "
        "(or /api/admin/dicom-nodes), not as destinations"
    )


def _out(row: DestinationRow, store: ObjectStore) -> DestinationOut:
    return DestinationOut(
        id=row.id,
        name=row.name,
        kind=row.kind,
        config=dict(row.config),
        secrets_set=sorted(_secrets(row, store)),
        outputs=list(row.outputs),
        events=list(row.events),
        identified=row.identified,
        enabled=row.enabled,
        created_at=row.created_at,
    )


def _secrets(row: DestinationRow, store: ObjectStore) -> dict[str, str]:
    if not row.secrets_enc:
        return {}
    data = json.loads(decrypt_field(row.secrets_enc, store.field_key(), SECRETS_COLUMN))
    return {str(k): str(v) for k, v in data.items()}


def add_destination(
    db: Session,
    store: ObjectStore,
    actor: Actor | None,
    name: str,
    kind: str,
    config: dict[str, Any],
    *,
    secrets: dict[str, str] | None = None,
    outputs: list[str] | None = None,
    events: list[str] | None = None,
    identified: bool = True,
) -> DestinationOut:
    """Register a destination (``actor`` None: the CLI, the operator of the machine). Audited."""
    import re

    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
    if not re.match(NAME_PATTERN, name):
        raise InputError(f"destination name {name!r}: letters, digits, '.', '_', '-' (at most 64)")
    if kind not in DESTINATION_KINDS:
        raise InputError(f"destination kind must be one of {', '.join(DESTINATION_KINDS)}, not {kind!r}")
    cfg, default_outputs = _check_config(kind, config)
    wanted_events = list(events) if events else ["final", "amendment"]
    bad = [e for e in wanted_events if e not in DELIVERY_EVENTS]
    if bad:
        raise InputError(f"unknown event {', '.join(bad)}; choose from {', '.join(DELIVERY_EVENTS)}")
    secrets = {k: v for k, v in (secrets or {}).items() if v}
    allowed = SECRET_KEYS.get(kind, ())
    stray = sorted(set(secrets) - set(allowed))
    if stray:
        raise InputError(f"{kind} destinations keep no secret named {', '.join(stray)}")
    if kind != "dicomweb" and outputs and set(outputs) - set(default_outputs):
        raise InputError(f"a {kind} destination sends {', '.join(default_outputs)}; outputs are chosen for dicomweb")
    if kind == "dicomweb":
        needed = {"basic": "password", "bearer": "token"}.get(str(cfg["auth"]))
        if needed and needed not in secrets:
            raise InputError(f"dicomweb auth {cfg['auth']} needs the secret {needed}")
        bad_outputs = [o for o in outputs or () if o not in DICOM_OUTPUTS]
        if bad_outputs:
            known = ", ".join(DICOM_OUTPUTS)
            raise InputError(f"unknown dicomweb output {', '.join(bad_outputs)}; choose from {known}")
    if db.scalars(select(DestinationRow).where(DestinationRow.name == name)).first() is not None:
        raise ConflictError(f"a destination named {name} exists already")
    row = DestinationRow(
        name=name,
        kind=kind,
        config=cfg,
        secrets_enc=encrypt_field(json.dumps(secrets), store.field_key(), SECRETS_COLUMN) if secrets else None,
        outputs=[o for o in DICOM_OUTPUTS if o in outputs]
        if outputs and kind == "dicomweb"
        else (list(outputs) if outputs else default_outputs),
        events=wanted_events,
        identified=identified,
        enabled=True,
        created_by=actor.id if actor is not None else None,
    )
    db.add(row)
    db.flush()
    audit_event(
        db,
        actor,
        "destination.add",
        target_type="destination",
        target_id=row.id,
        detail={"name": name, "kind": kind, "identified": identified, "events": wanted_events, "via": _via(actor)},
    )
    return _out(row, store)


def _via(actor: Actor | None) -> str:
    return "cli" if actor is None else "api"


def list_destinations(db: Session, store: ObjectStore, actor: Actor | None) -> list[DestinationOut]:
    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
    rows = db.scalars(select(DestinationRow).order_by(DestinationRow.name))
    return [_out(r, store) for r in rows]


def _destination(db: Session, name_or_id: str) -> DestinationRow:
    row = (
        db.get(DestinationRow, name_or_id)
        or db.scalars(select(DestinationRow).where(DestinationRow.name == name_or_id)).first()
    )
    if row is None:
        raise NotFoundError(f"no destination {name_or_id}")
    return row


def remove_destination(db: Session, actor: Actor | None, name_or_id: str) -> None:
    """Remove a destination and its delivery records (the audit trail keeps what was delivered). Audited.
    A DICOM node's destination goes with the node (``neuronav nodes remove``)."""
    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
    row = _destination(db, name_or_id)
    if row.kind == "dicom":
        raise ConflictError(f"{row.name} is a DICOM node: remove it with `neuronav nodes remove {row.name}`")
    db.delete(row)
    db.flush()
    audit_event(db, actor, "destination.remove", target_type="destination", target_id=row.id, detail={"name": row.name})


# -- DICOM nodes that receive results --------------------------------------------------------------------


def node_events(send_on: list[str]) -> list[str]:
    """A node's ``send_on`` as delivery events: ``preliminary``; ``final`` is final and amendment."""
    events = ["preliminary"] if "preliminary" in send_on else []
    return events + (["final", "amendment"] if "final" in send_on else [])


def sync_node(db: Session, node: DicomNodeRow, *, removed: bool = False) -> DestinationRow | None:
    """Make the destination row of ``node`` match it: one row of kind ``dicom`` named as the node when it
    receives results (``send`` and ``send_on`` set), none otherwise or once ``removed``. Called by
    :mod:`neuronav.workflow.nodes` when a node is added or removed (in its transaction and audit)."""
    row = db.scalars(
        select(DestinationRow).where(DestinationRow.kind == "dicom", DestinationRow.name == node.name)
    ).first()
    if removed or not (node.send and node.send_on):
        if row is not None:
            db.delete(row)
            db.flush()
        return None
    if row is None:
        taken = db.scalars(select(DestinationRow).where(DestinationRow.name == node.name)).first()
        if taken is not None:
            raise ConflictError(
                f"a {taken.kind} destination is named {node.name} already: give the DICOM node another name"
            )
        row = DestinationRow(name=node.name, kind="dicom", secrets_enc=None, identified=True, enabled=True)
        db.add(row)
    row.config = {"node_id": node.id, "default_route": bool(node.default_route)}
    row.outputs = [o for o in DICOM_OUTPUTS if o in node.send]
    row.events = node_events(list(node.send_on))
    db.flush()
    return row


def _wants(db: Session, dest: DestinationRow, event: str, study_id: str | None) -> bool:
    """Whether ``dest`` takes ``event`` of the report of ``study_id`` (a default-route node: its studies)."""
    if event not in dest.events:
        return False
    if dest.kind == "dicom" and dest.config.get("default_route"):
        if study_id is None:
            return False
        came = select(DicomArrivalRow.id).where(
            DicomArrivalRow.study_id == study_id, DicomArrivalRow.node_id == dest.config.get("node_id")
        )
        return db.scalars(came).first() is not None
    return True


# -- enqueue -----------------------------------------------------------------------------------------------


def event_of(report: Report) -> str | None:
    """The delivery event a stored report version is: final, amendment (a signed one), preliminary."""
    if report.signature is None:
        return "preliminary" if report.status == "preliminary" and report.version == 1 else None
    return "amendment" if report.status == "amended" else "final"


def idempotency_key(destination_id: str, report_id: str, version: int, output: str, event: str) -> str:
    """One output of one report version for one event (version 1 is sent as preliminary, then as final)."""
    return f"{destination_id}:{report_id}:v{version}:{event}:{output}"


_listeners: list[Callable[[], None]] = []


def on_queued(callback: Callable[[], None]) -> None:
    """Call ``callback`` after each commit that queued deliveries (the outbox's worker wakes up at once)."""
    _listeners.append(callback)


def _notify(_session: Session) -> None:
    for callback in list(_listeners):
        callback()


def enqueue(db: Session, report: Report, *, study_id: str | None) -> list[DeliveryRow]:
    """Queue ``report``'s version for every enabled destination that wants its event, in the caller's
    transaction (committed with the signature, or not at all). A version already queued for a destination
    is not queued again. Returns the new rows."""
    event = event_of(report)
    if event is None:
        return []
    made: list[DeliveryRow] = []
    for dest in db.scalars(select(DestinationRow).where(DestinationRow.enabled.is_(True))):
        if not _wants(db, dest, event, study_id):
            continue
        for output in dest.outputs:
            key = idempotency_key(dest.id, report.report_id, report.version, output, event)
            if db.scalars(select(DeliveryRow.id).where(DeliveryRow.idempotency_key == key)).first() is not None:
                continue
            row = DeliveryRow(
                idempotency_key=key,
                destination_id=dest.id,
                report_id=report.report_id,
                report_version=report.version,
                study_id=study_id,
                output=output,
                event=event,
                state="queued",
                attempts=0,
                next_attempt_at=utcnow(),
            )
            db.add(row)
            made.append(row)
    if made:
        db.flush()
        if _listeners:
            sa_event.listen(db, "after_commit", _notify, once=True)
        audit_event(
            db,
            None,
            "delivery.queue",
            target_type="report",
            target_id=report.report_id,
            detail={"version": report.version, "event": event, "deliveries": [r.id for r in made]},
        )
    return made


# -- what the worker does ----------------------------------------------------------------------------------


@dataclass
class Payload:
    """One delivery ready to send: the bytes of the output and where they go."""

    delivery_id: str
    kind: str
    output: str
    destination: str
    config: dict[str, Any]
    secrets: dict[str, str]
    body: bytes
    media_type: str
    report_id: str
    report_version: int
    identified: bool
    extra: dict[str, Any] = field(default_factory=dict)


def backoff_s(attempts: int, settings: Settings) -> float:
    """Seconds before attempt ``attempts + 1``: the base doubled per attempt made, at most an hour."""
    return float(min(BACKOFF_CAP_S, settings.outbox_backoff_s * 2 ** max(0, attempts - 1)))


def _lease_lost(now: datetime) -> Any:
    return and_(DeliveryRow.state == "sending", DeliveryRow.lease_until < now)


def due(settings: Settings, *, limit: int = 50) -> list[str]:
    """Ids of deliveries due now: queued and past their next attempt, or sending under a lost lease."""
    now = utcnow()
    with session_scope(settings.database) as db:
        q = (
            select(DeliveryRow.id)
            .where(or_(and_(DeliveryRow.state == "queued", DeliveryRow.next_attempt_at <= now), _lease_lost(now)))
            .order_by(DeliveryRow.next_attempt_at)
            .limit(limit)
        )
        return list(db.scalars(q))


def claim(settings: Settings, delivery_id: str, owner: str) -> bool:
    """Take a due delivery (one conditional UPDATE: one server sends it); counts the attempt."""
    now = utcnow()
    with session_scope(settings.database) as db:
        result = db.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                or_(and_(DeliveryRow.state == "queued", DeliveryRow.next_attempt_at <= now), _lease_lost(now)),
            )
            .values(
                state="sending",
                lease_owner=owner,
                lease_until=now + timedelta(seconds=settings.outbox_lease_s),
                attempts=DeliveryRow.attempts + 1,
                sent_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1


def render(settings: Settings, store: ObjectStore, delivery_id: str) -> Payload:
    """The output of a claimed delivery, made from the stored report version (the patient's identity
    attached for a clinical destination). NotFoundError / ReportError when it cannot be made."""
    from neuronav.errors import ReportError
    from neuronav.workflow import reports
    from neuronav.workflow.uploads import private_tmp, remove_tmp

    with session_scope(settings.database) as db:
        d = db.get(DeliveryRow, delivery_id)
        if d is None:
            raise NotFoundError(f"no delivery {delivery_id}")
        dest = db.get(DestinationRow, d.destination_id)
        if dest is None:
            raise NotFoundError(f"the destination of delivery {delivery_id} is gone")
        report = reports.load(db, store, d.report_id, d.report_version)
        row = db.get(ReportRow, d.report_id)
        if row is None:
            raise NotFoundError(f"no report {d.report_id}")
        if dest.identified:
            from neuronav.workflow.identity import patient_of

            study = db.get(StudyRow, row.study_id)
            if study is None:
                raise NotFoundError(f"the study of report {d.report_id} is gone")
            report = report.model_copy(update={"patient": patient_of(store, study, settings)})
        cfg, secrets = dict(dest.config), _secrets(dest, store)
        pdf: bytes | None = None
        wants_pdf = d.output in ("hl7", *FHIR_OUTPUTS.values()) and cfg.get("pdf", "embed") == "embed"
        if wants_pdf:
            analysis = db.get(AnalysisRow, row.analysis_id)
            if analysis is None:
                raise NotFoundError(f"the analysis of report {d.report_id} is gone")
            folder = private_tmp(settings, "outbox-")
            try:
                (path,) = reports.export(db, settings, report, analysis, "pdf", folder)
                pdf = Path(path).read_bytes()
            finally:
                remove_tmp(folder)
        payload = Payload(
            delivery_id=d.id,
            kind=dest.kind,
            output=d.output,
            destination=dest.name,
            config=cfg,
            secrets=secrets,
            body=b"",
            media_type="",
            report_id=d.report_id,
            report_version=d.report_version,
            identified=dest.identified,
        )
        if d.output in DICOM_OUTPUTS:
            if dest.kind == "dicom":  # the node as it is now (AE title, host and port)
                node = db.get(DicomNodeRow, str(cfg.get("node_id", "")))
                if node is None:
                    raise NotFoundError(f"the DICOM node of destination {dest.name} is gone")
                cfg.update(
                    ae_title=node.ae_title,
                    host=node.host,
                    port=node.port,
                    calling_ae=settings.dicom_ae_title,
                    acse_timeout=settings.dicom_acse_timeout_s,
                    dimse_timeout=settings.dicom_dimse_timeout_s,
                    network_timeout=settings.dicom_network_timeout_s,
                )
            analysis = db.get(AnalysisRow, row.analysis_id)
            if analysis is None:
                raise NotFoundError(f"the analysis of report {d.report_id} is gone")
            folder = private_tmp(settings, "outbox-")
            try:
                files = reports.export(db, settings, report, analysis, d.output, folder)
            except BaseException:
                remove_tmp(folder)
                raise
            payload.extra.update(files=files, folder=folder, report=report)
            payload.media_type = "application/dicom"
            return payload  # the sender removes ``folder`` (neuronav.integrations.outbox.deliver_one)
    if d.output == "hl7":
        from neuronav.report.hl7v2 import Receiver, make_oru

        pdf_url = None
        if cfg.get("pdf") == "reference":
            if not settings.public_url:
                raise ReportError("hl7 pdf=reference needs NEURONAV_PUBLIC_URL (the address receivers fetch from)")
            base = settings.public_url.rstrip("/")
            pdf_url = f"{base}/api/reports/{report.report_id}/export/pdf?version={report.version}"
        receiver = Receiver(str(cfg.get("receiving_application", "")), str(cfg.get("receiving_facility", "")))
        order = None
        if payload.identified and d.study_id:
            from neuronav.workflow.orders import order_numbers

            with session_scope(settings.database) as db:
                order = order_numbers(db, d.study_id)  # the placer and filler numbers of the order answered
        payload.body = make_oru(report, pdf=pdf, pdf_url=pdf_url, order=order, receiver=receiver).encode("utf-8")
        payload.media_type = "application/hl7-v2"
    elif d.output.startswith("fhir"):
        from neuronav.report.fhir import ACCESSION_SYSTEM, make_bundle

        version = {v: k for k, v in FHIR_OUTPUTS.items()}.get(d.output, "R4")
        bundle = make_bundle(
            report,
            version=version,  # type: ignore[arg-type]
            pdf=pdf,
            mrn_identifier_system=cfg.get("mrn_system") or None,
            accession_system=cfg.get("accession_system") or ACCESSION_SYSTEM,
        )
        payload.body = json.dumps(bundle).encode("utf-8")
        payload.media_type = "application/fhir+json"
    else:
        payload.extra["report"] = report
    return payload


def record(
    settings: Settings,
    delivery_id: str,
    owner: str,
    *,
    delivered: bool,
    retry: bool,
    status: str | None,
    text: str | None,
    error: str | None = None,
) -> str:
    """Record an attempt's outcome (only by the lease's owner): ``delivered``; else queued again after the
    back-off when ``retry`` and attempts remain; else ``failed``. Audited. Returns the new state."""
    now = utcnow()
    with session_scope(settings.database) as db:
        d = db.get(DeliveryRow, delivery_id)
        if d is None or d.state != "sending" or d.lease_owner != owner:
            return d.state if d is not None else "gone"  # taken over meanwhile: the other owner records
        d.peer_status, d.peer_text, d.lease_owner, d.lease_until = status, text, None, None
        if delivered:
            d.state, d.delivered_at, d.error = "delivered", now, None
        elif retry and d.attempts < settings.outbox_max_attempts:
            d.state, d.error = "queued", error or text
            d.next_attempt_at = now + timedelta(seconds=backoff_s(d.attempts, settings))
        else:
            d.state, d.error = "failed", error or text
        audit_event(
            db,
            None,
            {"delivered": "delivery.sent", "queued": "delivery.retry", "failed": "delivery.fail"}[d.state],
            outcome="success" if delivered else "failure",
            target_type="delivery",
            target_id=d.id,
            detail={
                "report": d.report_id,
                "version": d.report_version,
                "output": d.output,
                "destination": d.destination_id,
                "attempt": d.attempts,
                "peer_status": status,
            },
        )
        if not delivered:
            log.info("delivery %s attempt %d: %s (%s)", d.id, d.attempts, d.state, status or "no answer")
        return d.state


# -- what people see and do --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOut:
    id: str
    destination: str
    kind: str
    report_id: str
    report_version: int
    output: str
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    peer_status: str | None
    peer_text: str | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _delivery_out(d: DeliveryRow, dest: DestinationRow | None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        destination=dest.name if dest is not None else d.destination_id,
        kind=dest.kind if dest is not None else "",
        report_id=d.report_id,
        report_version=d.report_version,
        output=d.output,
        event=d.event,
        state=d.state,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.state == "queued" else None,
        peer_status=d.peer_status,
        peer_text=d.peer_text,
        error=d.error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


def deliveries_of_report(db: Session, report_id: str) -> list[DeliveryOut]:
    """Where a report's versions went (the caller has authorised reading the report)."""
    rows = db.scalars(
        select(DeliveryRow)
        .where(DeliveryRow.report_id == report_id)
        .order_by(DeliveryRow.report_version, DeliveryRow.created_at)
    )
    return [_delivery_out(d, db.get(DestinationRow, d.destination_id)) for d in rows]


def list_deliveries(
    db: Session, actor: Actor | None, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[DeliveryOut]:
    """Deliveries for an administrator, newest first (no patient data: ids, states, the peer's words)."""
    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
    q = select(DeliveryRow).order_by(DeliveryRow.created_at.desc()).limit(limit).offset(offset)
    if state is not None:
        q = q.where(DeliveryRow.state == state)
    return [_delivery_out(d, db.get(DestinationRow, d.destination_id)) for d in db.scalars(q)]


def resend(db: Session, actor: Actor | None, delivery_id: str) -> DeliveryOut:
    """Queue a failed (or delivered) delivery again, now (an administrator's decision; audited)."""
    if actor is not None:
        require(actor, Permission.SETTINGS_MANAGE)
    d = db.get(DeliveryRow, delivery_id)
    if d is None:
        raise NotFoundError(f"no delivery {delivery_id}")
    if d.state in ("queued", "sending"):
        raise ConflictError(f"delivery {delivery_id} is {d.state} already")
    before = d.state
    d.state, d.attempts, d.next_attempt_at, d.error = "queued", 0, utcnow(), None
    db.flush()
    audit_event(
        db,
        actor,
        "delivery.resend",
        target_type="delivery",
        target_id=d.id,
        detail={"report": d.report_id, "version": d.report_version, "was": before, "via": _via(actor)},
    )
    return _delivery_out(d, db.get(DestinationRow, d.destination_id))


__all__ = [
    "DeliveryOut",
    "DestinationOut",
    "Payload",
    "add_destination",
    "backoff_s",
    "claim",
    "deliveries_of_report",
    "due",
    "enqueue",
    "event_of",
    "list_deliveries",
    "list_destinations",
    "record",
    "remove_destination",
    "render",
    "resend",
]
