"""The HTTP service: FastAPI app, dependencies, routes, and the command-line bootstrap helpers.

==========================  ====================================================================
app.create_app(settings)    the ASGI app (migrations and object store at start-up, error mapping)
deps                        SettingsDep, DbDep, StoreDep, CurrentUserDep, requires(permission), audit_event
routes                      ROUTERS: health, auth, users, admin, audit (+ the study/analysis/report routers)
bootstrap.create_user       accounts made from the command line (the first admin, demo users)
throttles                   sign-in and registration counters in the database (shared by all processes)
docs                        /docs and /redoc with their assets, served by the app (no CDN)
server                      uvicorn options: a deadline for request headers, keep-alive, a connection limit
==========================  ====================================================================
"""

from __future__ import annotations

from neuronav.service.app import create_app

__all__ = ["create_app"]
