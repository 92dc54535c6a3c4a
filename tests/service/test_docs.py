"""/docs (Swagger UI) and /redoc (ReDoc) are served by the app: every file from this origin, no inline
script, and a Content-Security-Policy that names no other host."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from neuronav.service.docs import vendor_folder

REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')


def directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-init.js"]),
        ("/redoc", ["redoc.standalone.js", "redoc-init.js"]),
    ],
)
def test_the_pages_load_everything_from_this_server(client: TestClient, page: str, expected: list[str]) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<script>" not in html and "<style" not in html and not re.search(r"\son\w+=", html)  # nothing inline
    references = REFERENCE.findall(html)
    assert all("//" not in ref and ":" not in ref for ref in references), references  # relative: this origin only
    assert [ref.rsplit("/", 1)[-1] for ref in references if not ref.endswith(".png")] == expected
    for ref in references:
        asset = client.get("/" + ref)
        assert asset.status_code == 200, ref
        assert asset.content, ref

    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]  # no inline script, no other host
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    sources = " ".join(word for words in policy.values() for word in words)
    assert "http" not in sources and "*" not in sources and "cdn" not in sources


def test_the_assets_are_the_packaged_swagger_ui_and_redoc(client: TestClient) -> None:
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.content == (vendor_folder() / "swagger-ui-bundle.js").read_bytes()
    assert b"SwaggerUIBundle" in bundle.content
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    redoc = client.get("/docs/assets/redoc.standalone.js")
    assert redoc.content == (vendor_folder() / "redoc.standalone.js").read_bytes()
    init = client.get("/docs/assets/swagger-init.js").text
    assert "openapi.json" in init and "validatorUrl: null" in init  # the validator badge would call out
    assert "cdn.jsdelivr.net" not in client.get("/docs").text + client.get("/redoc").text


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    for name in ("index.html", "..%2F..%2Fpyproject.toml", "core.py", "swagger-ui-bundle.js.map"):
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
    assert client.get("/docs/oauth2-redirect").status_code == 404  # bearer tokens, no OAuth2 flow


def test_the_schema_is_still_served(client: TestClient) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "NeuroNav"
    assert "/docs" not in schema.json()["paths"] and "/docs/assets/{name}" not in schema.json()["paths"]
