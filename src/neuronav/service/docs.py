"""The API documentation pages, served by the app itself: no CDN, no third-party host, no inline script.

Hospitals often run without internet access, and FastAPI's own ``/docs`` and ``/redoc`` load
Swagger UI and ReDoc from a CDN and start them with an inline script. Here instead:

* ``GET /openapi.json`` — the OpenAPI document the two pages read;
* ``GET /docs``  — Swagger UI (interactive: "Try it out" with a bearer token);
* ``GET /redoc`` — ReDoc (reading);
* ``GET /docs/assets/{name}`` — their files: ``swagger-ui-bundle.js``, ``swagger-ui.css``,
  ``redoc.standalone.js`` and ``favicon.png`` as the ``fastapi-offline`` package ships them (Swagger UI
  5, Apache-2.0; ReDoc 2, MIT; a PyPI dependency, nothing fetched at run time), plus the two start-up
  scripts of this module (``swagger-init.js``, ``redoc-init.js``). Only these names are served.

Outside development (``NEURONAV_ENV=production``) every one of these needs an administrator's session
(:func:`neuronav.service.deps.operator_access`): the bearer token, or the session cookie a browser
sends; in development they are open.

The OpenAPI document is the contract (checked by ``tests/security/test_api_contract.py``, a schemathesis
run over every operation for every role): :func:`install_contract` completes FastAPI's document with the
error answers of every operation, derived in one place from what the route depends on (the statuses of
:func:`neuronav.service.app.error_status`, the body ``{"detail", "error"}``: :data:`ERROR_SCHEMA`):

* every operation: 400 (input refused beyond the schema, an invalid ``Content-Length``), 500;
* parameters or a body: 422 (the body of FastAPI's validation errors as this app answers them);
* a path parameter or a body (which may name an object): 404; a body: 413, 415;
* an unsafe method or a path parameter (the object's state): 409;
* a signed-in user (``get_current_user`` among its dependencies) or a body: 429 (``Retry-After``);
* a signed-in user or an operator page: 401 (``WWW-Authenticate: Bearer``), 403;
* beyond its dependencies (:data:`EXTRA_STATUSES`): sign-in answers 401 and 403 itself; STOW-RS, which
  reads its body itself, 413 and 415.

In development ``/metrics`` is open: its security is then declared optional. Routes answering files
declare their media types themselves (``responses=``: zip, gzip, DICOM, FHIR, PDF, HL7 v2).

The pages are static HTML that name their scripts and styles by relative URL (so they work under
a proxy prefix too) and hold no inline script, which lets :data:`DOCS_CSP` say ``script-src 'self'``.
Styles need ``'unsafe-inline'`` (ReDoc writes its styles into ``<style>`` elements at run time);
Swagger UI's icons are ``data:`` images and ReDoc's search runs in a ``blob:`` worker. The OAuth2
redirect page is not served: the API authenticates with bearer tokens, not OAuth2 flows. ReDoc's
"API docs by Redocly" logo is an image on cdn.redoc.ly: the policy blocks it (the link text stays),
which is the only request either page would make to another host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts

from neuronav.errors import NotFoundError
from neuronav.service.deps import get_current_user, metrics_access, operator_access

DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'; object-src 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
ASSET_CACHE = "public, max-age=86400"

_VENDOR = {  # file name → media type, from the fastapi-offline package's static folder
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

SWAGGER_INIT = """\
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""

REDOC_INIT = """\
"use strict";
window.addEventListener("load", function () {
  Redoc.init(new URL("openapi.json", document.baseURI).href, {}, document.getElementById("redoc"));
});
"""

_OWN = {"swagger-init.js": SWAGGER_INIT, "redoc-init.js": REDOC_INIT}

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="docs/assets/favicon.png">
{head}
</head>
<body>
<div id="{root}"></div>
{scripts}
</body>
</html>
"""


def _scripts(*names: str) -> str:
    return "\n".join(f'<script src="docs/assets/{name}"></script>' for name in names)


SWAGGER_PAGE = _PAGE.format(
    title="NeuroNav API — Swagger UI",
    head='<link rel="stylesheet" href="docs/assets/swagger-ui.css">',
    root="swagger-ui",
    scripts=_scripts("swagger-ui-bundle.js", "swagger-init.js"),
)
REDOC_PAGE = _PAGE.format(
    title="NeuroNav API — ReDoc",
    head="",
    root="redoc",
    scripts=_scripts("redoc.standalone.js", "redoc-init.js"),
)

# outside development only an admin's session opens them (neuronav.service.deps.operator_access)
router = APIRouter(include_in_schema=False, dependencies=[Depends(operator_access)])


def vendor_folder() -> Path:
    """The folder of the packaged Swagger UI and ReDoc files."""
    return Path(str(resources.files("fastapi_offline") / "static"))


@router.get("/openapi.json")
def openapi_document(request: Request) -> JSONResponse:
    """The OpenAPI document of the app (FastAPI's own route is turned off: it could not be protected)."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", response_class=HTMLResponse)
def swagger_page() -> HTMLResponse:
    """Swagger UI, self-hosted."""
    return HTMLResponse(SWAGGER_PAGE)


@router.get("/redoc", response_class=HTMLResponse)
def redoc_page() -> HTMLResponse:
    """ReDoc, self-hosted."""
    return HTMLResponse(REDOC_PAGE)


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    """One file of the documentation pages (only the names listed in the module docstring)."""
    if name in _OWN:
        return Response(_OWN[name], media_type="text/javascript; charset=utf-8", headers={"Cache-Control": ASSET_CACHE})
    media = _VENDOR.get(name)
    if media is None:
        raise NotFoundError(f"no documentation asset {name!r}")
    return FileResponse(vendor_folder() / name, media_type=media, headers={"Cache-Control": ASSET_CACHE})


# -- the contract: every operation's error answers ----------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail", "error"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ValidationProblem"}},
            ],
            "description": "What went wrong; for a request that does not match the schema, where and what.",
        },
        "error": {"type": "string", "description": "The kind of error: RequestValidationError, PermissionDenied, …"},
        "error_id": {"type": "string", "description": "A 500 only: quote it to the administrator."},
        "problems": {
            "type": "array",
            "items": {"type": "string"},
            "description": "PasswordPolicyError only: what the password lacks.",
        },
    },
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "type": "object",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
}
STATUS_TEXT = {
    400: "Bad request: input refused beyond the schema (not a study, an unknown field of a report, a wrong "
    "code or token), or an invalid Content-Length.",
    401: "Not signed in: no token, or an expired, revoked or forged one (WWW-Authenticate: Bearer).",
    403: "Not allowed: the role's permissions, the object's access rules, an open break-glass's limits, or a "
    "one-time password to change first (PasswordChangeRequired).",
    404: "No such object.",
    409: "Conflicts with the object's state: a signed report, an account's state, a second factor enrolled.",
    406: "None of the media types the Accept header names can be answered (a rendered image: JPEG or PNG).",
    413: "The request body is larger than its limit.",
    415: "The request body is not of the content type this operation takes.",
    422: "The request does not match the schema (detail: where and what), or a password the policy refuses (problems).",
    429: "Too many requests: a sign-in lockout, the registration limit or a rate limit. Retry after "
    "Retry-After seconds.",
    500: "Internal error: a generic message and an error_id to quote to the administrator.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
}
# what a route answers beyond what its dependencies say: sign-in checks the credentials itself
EXTRA_STATUSES: dict[tuple[str, str], frozenset[int]] = {
    ("POST", "/api/auth/login"): frozenset({401, 403}),
    # STOW-RS reads its multipart/related body itself (no body field FastAPI could see)
    ("POST", "/dicomweb/studies"): frozenset({413, 415}),
    ("POST", "/dicomweb/studies/{study}"): frozenset({413, 415}),
    # the service's state, not the request: no PACS configured (NEURONAV_PACS_NODE)
    ("GET", "/api/pacs/studies"): frozenset({409}),
    # WADO-RS rendered: an Accept header without JPEG or PNG
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"): frozenset({406}),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered"): frozenset({406}),
}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _parameters(dependant: Dependant) -> Iterator[str]:
    for param in (*dependant.path_params, *dependant.query_params, *dependant.header_params):
        yield param.name
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def error_statuses(route: Any, method: str) -> set[int]:
    """The error statuses ``method`` on ``route`` can answer, from what it depends on (module docstring)."""
    calls = set(_calls(route.dependant))
    user = get_current_user in calls
    operator = bool(calls & {operator_access, metrics_access})
    body = route.body_field is not None
    statuses = {400, 500}
    if body or any(True for _ in _parameters(route.dependant)):
        statuses.add(422)
    named = bool(route.dependant.path_params) or "{" in route.path_format
    if body or named:
        statuses.add(404)  # an object named in the path, or in the body (a break-glass's study_id)
    if body:
        statuses |= {413, 415}
    if method in UNSAFE or named:
        statuses.add(409)  # a change, or an object not in the state asked of it (an analysis not done)
    if user or body:
        statuses.add(429)
    if user or operator:
        statuses |= {401, 403}
    return statuses | EXTRA_STATUSES.get((method, route.path_format), frozenset())


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": STATUS_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def declare_errors(app: FastAPI, document: dict[str, Any], *, development: bool) -> None:
    """Complete ``document`` (FastAPI's OpenAPI document of ``app``) with every operation's error answers."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 body: this app answers ERROR_SCHEMA instead
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for route in iter_route_contexts(app.routes):  # each route as included: prefixes, router dependencies
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(error_statuses(route, method)):
                if status == 422 or str(status) not in responses:
                    responses[str(status)] = _error_response(status)
            if development and metrics_access in set(_calls(route.dependant)):
                operation["security"] = [{}, *operation.get("security", [])]  # open in development


def install_contract(app: FastAPI, *, development: bool) -> None:
    """Make ``app.openapi()`` return FastAPI's document completed by :func:`declare_errors` (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_errors(app, build(), development=development)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "DOCS_CSP",
    "DOCS_PATHS",
    "ERROR_SCHEMA",
    "REDOC_PAGE",
    "SWAGGER_PAGE",
    "declare_errors",
    "error_statuses",
    "install_contract",
    "router",
    "vendor_folder",
]
