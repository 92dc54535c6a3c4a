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

The pages are static HTML that name their scripts and styles by relative URL (so they work under
a proxy prefix too) and hold no inline script, which lets :data:`DOCS_CSP` say ``script-src 'self'``.
Styles need ``'unsafe-inline'`` (ReDoc writes its styles into ``<style>`` elements at run time);
Swagger UI's icons are ``data:`` images and ReDoc's search runs in a ``blob:`` worker. The OAuth2
redirect page is not served: the API authenticates with bearer tokens, not OAuth2 flows. ReDoc's
"API docs by Redocly" logo is an image on cdn.redoc.ly: the policy blocks it (the link text stays),
which is the only request either page would make to another host.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from neuronav.errors import NotFoundError
from neuronav.service.deps import operator_access

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


__all__ = ["DOCS_CSP", "DOCS_PATHS", "REDOC_PAGE", "SWAGGER_PAGE", "router", "vendor_folder"]
