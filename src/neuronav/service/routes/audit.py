"""The audit log for administrators (``/api/audit``): search it, verify its hash chain, export FHIR.

Thin: the queries and the audit of each read are :mod:`neuronav.workflow.audit_trail`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DateTime, DbDep, Offset, requires
from neuronav.workflow import audit_trail
from neuronav.workflow.audit_trail import EventPage, VerifyOut

router = APIRouter(prefix="/api/audit", tags=["audit"], route_class=AuthFirstRoute)

Auditor = Annotated[Actor, Depends(requires(Permission.AUDIT_READ))]
OutcomeFilter = Literal["success", "failure", "denied"]


Since = Annotated[DateTime | None, Query(description="From this time (inclusive, ISO 8601; UTC if no zone).")]
Until = Annotated[DateTime | None, Query(description="Before this time (exclusive, ISO 8601; UTC if no zone).")]


@router.get("", response_model=EventPage)
def search_route(
    db: DbDep,
    user: Auditor,
    actor: Annotated[str | None, Query(max_length=32, description="Actor's user id.")] = None,
    action: Annotated[str | None, Query(max_length=61, description="Action, e.g. login, or a prefix: user.*")] = None,
    outcome: Annotated[OutcomeFilter | None, Query()] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
    order: Annotated[Literal["newest", "oldest"], Query()] = "newest",
) -> EventPage:
    """Search the audit log (administrators): who did what, when, from where, with what outcome."""
    return audit_trail.search(
        db,
        user,
        limit=limit,
        offset=offset,
        newest_first=order == "newest",
        actor_id=actor,
        action=action,
        outcome=outcome,
        target_id=target_id,
        since=since,
        until=until,
    )


@router.get("/verify", response_model=VerifyOut)
def verify_route(db: DbDep, user: Auditor) -> VerifyOut:
    """Verify the audit log's hash chain from the first event; reports the first broken event."""
    return audit_trail.verify_chain(db, user)


@router.get("/fhir", response_class=JSONResponse, responses={200: {"content": {"application/fhir+json": {}}}})
def fhir_route(
    db: DbDep,
    user: Auditor,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Offset = 0,
) -> JSONResponse:
    """The audit events of a time range as a FHIR R5 Bundle of AuditEvent resources."""
    bundle = audit_trail.fhir_bundle(db, user, since=since, until=until, limit=limit, offset=offset)
    return JSONResponse(bundle, media_type="application/fhir+json")


__all__ = ["router"]
