"""The web UI: ``/`` (its one page) and ``/assets/*`` (its scripts, styles and fonts).

The UI's source is ``web/`` (an npm project: NiiVue, Vite); ``scripts/setup.sh`` builds it into
``src/neuronav/service/webui/`` (not committed). When that folder is missing ``/`` answers 503 with
the command that builds it; the API works either way.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from neuronav.errors import NotFoundError

router = APIRouter(include_in_schema=False)
WEBUI = Path(__file__).resolve().parents[1] / "webui"
NOT_BUILT = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>NeuroNav</title>"
    "<p>The NeuroNav web interface is not built. Run <code>bash scripts/setup.sh</code> "
    "(it needs Node.js and npm), then reload. The API is at <a href=/docs>/docs</a>.</p></html>"
)
MEDIA = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".wasm": "application/wasm",
}


@router.get("/", response_model=None)
def index() -> Response:
    page = WEBUI / "index.html"
    if not page.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503)
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/assets/{name}")
def asset(name: str) -> FileResponse:
    folder = (WEBUI / "assets").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        raise NotFoundError(f"no web asset {name!r}")
    # file names carry a content hash (Vite): safe to cache for long
    return FileResponse(
        path,
        media_type=MEDIA.get(path.suffix, "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
