"""Search the PACS and pull a study from it (``/api/pacs``): the worklist's "Search PACS" panel.

Thin: :mod:`neuronav.workflow.pacs` queries (C-FIND) and retrieves (C-MOVE → the listener → the same
path as an upload) and audits both. For technicians (``study:upload``: a pull is an upload from the
PACS) and radiologists (``analysis:start``). 409 when no PACS is configured (``NEURONAV_PACS_NODE``);
400 naming the problem when the PACS refuses, cannot be reached or answers a failure status.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from neuronav.security.access import Actor
from neuronav.security.permissions import Permission
from neuronav.service.deps import AuthFirstRoute, DbDep, SettingsDep, StoreDep, requires_any
from neuronav.workflow import pacs
from neuronav.workflow.pacs import PacsRetrieveIn, PacsRetrieveOut, PacsSearchIn, PacsSearchOut

router = APIRouter(prefix="/api/pacs", tags=["studies"], route_class=AuthFirstRoute)  # a pull is an upload

Puller = Annotated[Actor, Depends(requires_any(Permission.STUDY_UPLOAD, Permission.ANALYSIS_START))]


@router.get("/studies", response_model=PacsSearchOut)
def search_route(
    query: Annotated[PacsSearchIn, Query()], db: DbDep, settings: SettingsDep, user: Puller
) -> PacsSearchOut:
    """Studies at the configured PACS (C-FIND, Study Root) by patient id, name (prefix), accession number,
    date or date range, study UID and modality, newest first; each says whether NeuroNav holds it. Audited."""
    return pacs.search(db, settings, user, query)


@router.post("/retrieve", response_model=PacsRetrieveOut)
def retrieve_route(
    body: PacsRetrieveIn, db: DbDep, settings: SettingsDep, store: StoreDep, user: Puller
) -> PacsRetrieveOut:
    """Pull one study from the PACS (C-MOVE to NeuroNav's listener); it is received as an upload by the
    caller and its analysis starts when it is an analysable brain MR (else ``kept`` with the reason). Audited."""
    return pacs.retrieve(db, settings, store, user, body)


__all__ = ["router"]
