"""The registry of DICOM nodes: who may send studies to the listener, and where results go.

A node is a PACS, scanner or workstation on the DICOM network: its AE title, host and port, and

* ``incoming``: it may open associations to send us studies. The listener accepts an association only
  when the calling AE title is a node's with ``incoming`` and the peer's address is one of that node's
  host's addresses, as Orthanc checks its ``DicomModalities`` (:func:`incoming_node`);
* ``send`` (``seg``, ``sr``, ``epdf``, ``sc``) and ``send_on`` (``preliminary``: when the analysis
  finishes; ``final``: on signature and amendment): which results the outbox delivers to it, and when;
* ``default_route``: the results of the studies it sent go back to it (and only those); without it, a
  node that receives results gets those of every study.

A node that receives results (``send`` and ``send_on`` both set) owns a destination row of kind
``dicom`` named as itself (:func:`neuronav.workflow.deliveries.sync_node`): the outbox queues, sends by
C-STORE, retries and records its deliveries like any other destination's, and the report page and the
admin's deliveries list show them. That row is made and removed with the node, nowhere else.

Each node gets a service account (role technician, a random password nobody knows, never signed in
with): the studies it sends are received as that account (:func:`node_actor`), like a technician's
upload. Removing a node disables its account (its studies keep their uploader).

Managed by an administrator (``settings:manage``) through ``/api/admin/dicom-nodes`` and from the CLI
(``neuronav nodes add|list|remove``); every change is audited.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav import audit
from neuronav.config import check_ae_title
from neuronav.db.models import DicomNodeRow, UserRow
from neuronav.errors import ConflictError, NotFoundError
from neuronav.security import passwords
from neuronav.security.access import Actor
from neuronav.security.permissions import Role
from neuronav.workflow import deliveries
from neuronav.workflow.access import audit_event

OUTPUTS = ("seg", "sr", "epdf", "sc")
WHEN = ("preliminary", "final")
Output = Literal["seg", "sr", "epdf", "sc"]
When = Literal["preliminary", "final"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SERVICE_DOMAIN = "dicom-nodes.neuronav.invalid"  # .invalid (RFC 2606): never a deliverable address


class NodeIn(BaseModel):
    """A DICOM node as an administrator enters it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="A short name (letters, digits, . _ -), unique.")
    ae_title: str = Field(
        min_length=1,
        max_length=16,
        pattern=r"^ *[!-\[\]-~][ -\[\]-~]*$",  # printable ASCII but a backslash, not only spaces (PS3.5 AE)
        description="The node's AE title.",
    )
    host: str = Field(
        min_length=1, max_length=255, pattern=r"^ *[A-Za-z0-9.:_-]+ *$", description="Host name or IP address."
    )
    port: int = Field(ge=1, le=65535)
    incoming: StrictBool = Field(default=False, description="May send studies to NeuroNav.")
    send: list[Output] = Field(default_factory=list, description=f"Results delivered to it: {', '.join(OUTPUTS)}.")
    send_on: list[When] = Field(default_factory=list, description=f"When: {', '.join(WHEN)}.")
    default_route: StrictBool = Field(default=False, description="Results of the studies it sent go back to it.")

    # before the schema's pattern, so that a person reads the rule broken rather than a regular expression
    @field_validator("ae_title", mode="before")
    @classmethod
    def _ae(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if len(value) > 16:  # as sent, padding included (the schema's maxLength)
            raise ValueError(f"AE title {value!r} is longer than 16 characters")
        return check_ae_title(value)

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: object) -> object:
        if not isinstance(value, str) or len(value) > 255:
            return value  # the schema's own checks answer (a text of at most 255 characters)
        host = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
            raise ValueError(f"host {value!r} is not a host name or an IP address")
        return host

    @field_validator("send", mode="before")
    @classmethod
    def _send(cls, value: object) -> object:
        return _choices(value, OUTPUTS, "output") if isinstance(value, list) else value

    @field_validator("send_on", mode="before")
    @classmethod
    def _on(cls, value: object) -> object:
        return _choices(value, WHEN, "moment") if isinstance(value, list) else value


def _choices(values: list[object], allowed: tuple[str, ...], what: str) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"each {what} is a text: one of {', '.join(allowed)}")
    chosen = [v.strip().lower() for v in values if isinstance(v, str) and v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}: choose among {', '.join(allowed)}")
    return [v for v in allowed if v in chosen]


class NodeOut(BaseModel):
    name: str
    ae_title: str
    host: str
    port: int
    incoming: bool
    send: list[str]
    send_on: list[str]
    default_route: bool
    created_at: datetime


def node_out(row: DicomNodeRow) -> NodeOut:
    return NodeOut(
        name=row.name,
        ae_title=row.ae_title,
        host=row.host,
        port=row.port,
        incoming=row.incoming,
        send=list(row.send),
        send_on=list(row.send_on),
        default_route=row.default_route,
        created_at=row.created_at,
    )


def _audit(db: Session, actor: Actor | None, action: str, target: str, detail: dict[str, object]) -> None:
    if actor is not None:
        audit_event(db, actor, action, target_type="dicom_node", target_id=target, detail=detail)
    else:  # the command line: whoever runs it on the server
        audit.record(
            db, action, actor_id="system", actor_role="system", client="cli", target_type="dicom_node",
            target_id=target, detail=detail,
        )  # fmt: skip


def _service_account(db: Session, name: str) -> UserRow:
    email = f"{name.lower()}@{SERVICE_DOMAIN}"
    user = db.scalars(select(UserRow).where(UserRow.email == email)).first()
    now = datetime.now(UTC)
    if user is None:
        user = UserRow(
            email=email,
            display_name=f"DICOM node {name}",
            role=str(Role.TECHNICIAN),
            state="active",
            password_hash=passwords.hash_password(secrets.token_urlsafe(32)),  # known to nobody
            verified_at=now,
            throttle={},
            created_at=now,
            password_changed_at=now,
        )
        db.add(user)
        db.flush()
    else:
        user.state = "active"  # a node added again under the same name
    return user


def add_node(db: Session, actor: Actor | None, node: NodeIn) -> NodeOut:
    """Register a node (:class:`ConflictError` when the name is taken); audited ``dicom_node.add``."""
    if db.scalars(select(DicomNodeRow).where(DicomNodeRow.name == node.name)).first() is not None:
        raise ConflictError(f"a DICOM node named {node.name} exists already (remove it first to change it)")
    user = _service_account(db, node.name)
    row = DicomNodeRow(**node.model_dump(), user_id=user.id)
    db.add(row)
    db.flush()
    deliveries.sync_node(db, row)  # a destination of kind dicom when it receives results
    _audit(db, actor, "dicom_node.add", row.name, {**node.model_dump(exclude={"name"}), "user": user.id})
    return node_out(row)


def list_nodes(db: Session) -> list[NodeOut]:
    return [node_out(r) for r in db.scalars(select(DicomNodeRow).order_by(DicomNodeRow.name))]


def get_node(db: Session, name: str) -> DicomNodeRow:
    row = db.scalars(select(DicomNodeRow).where(DicomNodeRow.name == name)).first()
    if row is None:
        raise NotFoundError(f"no DICOM node named {name}")
    return row


def remove_node(db: Session, actor: Actor | None, name: str) -> None:
    """Remove a node (:class:`NotFoundError` when unknown); its service account is disabled. Audited."""
    row = get_node(db, name)
    user = db.get(UserRow, row.user_id)
    if user is not None:
        user.state = "disabled"
    deliveries.sync_node(db, row, removed=True)
    db.delete(row)
    db.flush()
    _audit(db, actor, "dicom_node.remove", name, {"ae_title": row.ae_title})


DEMO_NODE = NodeIn(name="demo-storescu", ae_title="STORESCU", host="127.0.0.1", port=104, incoming=True)


def ensure_demo_node(db: Session) -> bool:
    """`serve --demo`: dcmtk's storescu (calling AE STORESCU) on this machine may send; True when added."""
    if db.scalars(select(DicomNodeRow).where(DicomNodeRow.name == DEMO_NODE.name)).first() is not None:
        return False
    add_node(db, None, DEMO_NODE)
    return True


def _addresses(host: str) -> set[str]:
    """The IP addresses of ``host`` (an address itself, or a name resolved now); empty when unresolvable."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(ipaddress.ip_address(info[4][0])) for info in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return set()


def incoming_node(db: Session, calling_ae: str, address: str) -> tuple[DicomNodeRow | None, str]:
    """The node allowed to send as ``calling_ae`` from ``address``, or None and the reason for refusing."""
    title = calling_ae.strip()
    candidates = db.scalars(select(DicomNodeRow).where(DicomNodeRow.ae_title == title)).all()
    if not candidates:
        return None, f"calling AE title {title!r} is not a registered DICOM node"
    incoming = [n for n in candidates if n.incoming]
    if not incoming:
        return None, f"DICOM node {candidates[0].name} ({title}) may not send studies (not --incoming)"
    try:
        peer = str(ipaddress.ip_address(address))
    except ValueError:
        return None, f"peer address {address!r} is not an IP address"
    for node in incoming:
        if peer in _addresses(node.host):
            return node, ""
    return None, f"calling AE title {title!r} sent from {peer}, not from its registered host"


def node_actor(db: Session, node: DicomNodeRow, *, client: str) -> Actor:
    """The service account of ``node`` as the :class:`Actor` of what it sends (``client``: ae@address)."""
    user = db.get(UserRow, node.user_id)
    if user is None:
        raise NotFoundError(f"DICOM node {node.name} has no service account")
    return Actor(
        id=user.id,
        email=user.email,
        role=Role(user.role),
        display_name=user.display_name,
        session_id=f"dicom:{node.name}",
        breakglass=None,
        client=client[:100],
    )


__all__ = [
    "OUTPUTS",
    "WHEN",
    "NodeIn",
    "NodeOut",
    "add_node",
    "ensure_demo_node",
    "get_node",
    "incoming_node",
    "list_nodes",
    "node_actor",
    "node_out",
    "remove_node",
]
