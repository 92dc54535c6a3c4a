"""The DICOM node registry for administrators (``/api/admin/dicom-nodes``) and the studies received
over DICOM (``/api/admin/dicom-arrivals``).

Thin: the registry and its audit are :mod:`neuronav.workflow.nodes`; arrivals
:mod:`neuronav.workflow.dicom`. Needs ``settings:manage`` (administrators).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DbDep, requires
from neuronav.workflow import dicom, nodes
from neuronav.workflow.dicom import ArrivalOut
from neuronav.workflow.nodes import NAME_PATTERN, NodeIn, NodeOut

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=AuthFirstRoute)

Manager = Annotated[Actor, Depends(requires(Permission.SETTINGS_MANAGE))]
NodeName = Annotated[str, Path(pattern=NAME_PATTERN, description="The node's name.")]


@router.get("/dicom-nodes", response_model=list[NodeOut])
def list_route(db: DbDep, user: Manager) -> list[NodeOut]:
    """The registered DICOM nodes: who may send studies, which results go to each and when."""
    return nodes.list_nodes(db)


@router.post("/dicom-nodes", response_model=NodeOut, status_code=201)
def add_route(body: NodeIn, db: DbDep, user: Manager) -> NodeOut:
    """Register a DICOM node (409 when the name is taken). Audited."""
    return nodes.add_node(db, user, body)


@router.delete("/dicom-nodes/{name}", status_code=204)
def remove_route(name: NodeName, db: DbDep, user: Manager) -> None:
    """Remove a DICOM node (404 when unknown): it may no longer send, and receives nothing more. Audited."""
    nodes.remove_node(db, user, name)


@router.get("/dicom-arrivals", response_model=list[ArrivalOut])
def arrivals_route(
    db: DbDep,
    user: Manager,
    state: Annotated[Literal["receiving", "received", "kept", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[ArrivalOut]:
    """Studies received over DICOM: waiting for their stable age, handed to analysis (with the study),
    or kept and not analysed (with the reason). No patient data."""
    return dicom.list_arrivals(db, state=state, limit=limit)


__all__ = ["router"]
