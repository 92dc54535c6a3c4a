"""The routers of the service, in the order :func:`neuronav.service.app.create_app` includes them.

To add a router: import its module on the import line and append ``<module>.router,`` to
:data:`ROUTERS` (one line each). Every route needs a docstring (its OpenAPI description) and an
entry in the route x role table of ``tests/service/test_admin.py``.
"""

from __future__ import annotations

from fastapi import APIRouter

from neuronav.service.routes import (
    admin,
    annotation,
    audit,
    auth,
    destinations,
    dicom_nodes,
    dicomweb,
    health,
    pacs,
    reports,
    segmentations,
    studies,
    users,
    web,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    users.router,
    admin.router,
    dicom_nodes.router,
    destinations.router,
    audit.router,
    studies.router,
    pacs.router,
    reports.router,
    annotation.router,
    segmentations.router,
    dicomweb.router,
    web.router,  # last: the web UI's pages and assets
]

__all__ = ["ROUTERS"]
