"""Destinations and deliveries (``/api/admin/destinations``, ``/api/admin/deliveries``): where reports
are sent (HL7 over MLLP, FHIR REST, DICOMweb STOW-RS; DICOM nodes own one each), and the outbox's
record of each delivery; the HL7 messages the order listener refused (``/api/admin/hl7/rejected``).

Administrators (``settings:manage``) only; no patient data is shown (ids, states, the peer's answer).
Thin: checks, storage, secrets and audit events are :mod:`neuronav.workflow.deliveries`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DbDep, StoreDep, requires
from neuronav.workflow import deliveries, orders
from neuronav.workflow.deliveries import DeliveryOut, DestinationOut

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=AuthFirstRoute)

Manager = Annotated[Actor, Depends(requires(Permission.SETTINGS_MANAGE))]
Event = Literal["preliminary", "final", "amendment"]
DicomOutput = Literal["seg", "sr", "epdf", "sc"]


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=deliveries.NAME_PATTERN, description="A short name (letters, digits, . _ -).")
    kind: Literal["hl7", "fhir", "dicom", "dicomweb"]
    config: dict[str, Any] = Field(
        default_factory=dict,
        max_length=30,
        description="hl7: host, port, tls, ca_file, timeout_s, receiving_application, receiving_facility, "
        "pdf (embed | reference | none); fhir: base_url, version (R4 | R4B | R5), auth (none | bearer | "
        "client_credentials), token_url, client_id, scope, conditional (server | client), mrn_system, "
        "accession_system, timeout_s; dicomweb: base_url (the DICOMweb root), auth (none | basic | bearer), "
        "username, timeout_s, ca_file. DICOM nodes are added under /api/admin/dicom-nodes",
    )
    secrets: dict[str, str] = Field(
        default_factory=dict,
        max_length=5,
        description="token, client_secret (fhir), token, password (dicomweb): stored encrypted, never shown",
    )
    events: list[Event] = Field(default_factory=lambda: list[Event](["final", "amendment"]))
    outputs: list[DicomOutput] | None = Field(
        default=None, max_length=4, description="dicomweb: seg, sr, epdf, sc (default seg, sr, epdf)"
    )
    identified: bool = Field(default=True, description="clinical (the patient's identity) or pseudonymous")


class RejectedOut(BaseModel):
    id: str
    received_at: datetime
    peer: str | None
    ack_code: str = Field(description="AE or AR, as answered")
    reason: str = Field(description="names the field, never its value (the message itself is not shown here)")


class RemovedOut(BaseModel):
    removed: bool


@router.get("/destinations", response_model=list[DestinationOut])
def list_route(db: DbDep, store: StoreDep, user: Manager) -> list[DestinationOut]:
    """Every destination (secrets are never shown: only which are set)."""
    return deliveries.list_destinations(db, store, user)


@router.post("/destinations", response_model=DestinationOut, status_code=201)
def add_route(body: DestinationIn, db: DbDep, store: StoreDep, user: Manager) -> DestinationOut:
    """Add a destination (audited); its secrets are stored encrypted."""
    made = deliveries.add_destination(
        db,
        store,
        user,
        body.name,
        body.kind,
        body.config,
        secrets=body.secrets,
        events=list(body.events),
        identified=body.identified,
        outputs=list(body.outputs) if body.outputs else None,
    )
    return made


@router.delete("/destinations/{name}", response_model=RemovedOut)
def remove_route(name: str, db: DbDep, user: Manager) -> RemovedOut:
    """Remove a destination and its delivery records (audited)."""
    deliveries.remove_destination(db, user, name)
    return RemovedOut(removed=True)


@router.get("/deliveries", response_model=list[DeliveryOut])
def deliveries_route(
    db: DbDep,
    user: Manager,
    state: Annotated[Literal["queued", "sending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DeliveryOut]:
    """The outbox, newest first: each delivery's state, attempts and the peer's answer."""
    return deliveries.list_deliveries(db, user, state=state, limit=limit, offset=offset)


@router.post("/deliveries/{delivery_id}/resend", response_model=DeliveryOut)
def resend_route(delivery_id: str, db: DbDep, user: Manager) -> DeliveryOut:
    """Send a failed (or delivered) delivery again now (audited)."""
    return deliveries.resend(db, user, delivery_id)


@router.get("/hl7/rejected", response_model=list[RejectedOut])
def rejected_route(db: DbDep, user: Manager, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[RejectedOut]:
    """HL7 messages the order listener refused (AE / AR) and why, newest first."""
    return [
        RejectedOut.model_validate(r, from_attributes=True)
        for r in orders.rejected_messages(db, None, user, limit=limit)
    ]


__all__ = ["router"]
