"""Attack: integers past 2^63 in query parameters (``offset``, ``version``) overflowed in the database
driver and answered 500. Every integer query parameter is bounded: a 422 naming the parameter."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from neuronav.service.deps import MAX_QUERY_INT
from tests.service.conftest import Person

HUGE = 2**63
REPORT = "0" * 32


@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("radiologist", "/api/studies"),
        ("admin", "/api/audit"),
        ("admin", "/api/audit/fhir"),
        ("admin", "/api/admin/users"),
    ],
)
@pytest.mark.parametrize("value", [HUGE, 2**64, MAX_QUERY_INT + 1])
def test_huge_offset_is_refused_with_422(
    client: TestClient, staff: dict[str, Person], role: str, url: str, value: int
) -> None:
    response = client.get(url, params={"offset": value}, headers=staff[role].headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


@pytest.mark.parametrize("url", [f"/api/reports/{REPORT}", f"/api/reports/{REPORT}/export/json"])
def test_huge_report_version_is_refused_with_422(client: TestClient, staff: dict[str, Person], url: str) -> None:
    response = client.get(url, params={"version": HUGE}, headers=staff["radiologist"].headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "version"]


def test_the_largest_offset_allowed_answers_an_empty_page(client: TestClient, staff: dict[str, Person]) -> None:
    response = client.get("/api/audit", params={"offset": MAX_QUERY_INT}, headers=staff["admin"].headers)
    assert response.status_code == 200, response.text


def test_every_integer_query_parameter_is_bounded(app: FastAPI) -> None:
    """A new route with an unbounded integer parameter fails here (the OpenAPI document states the bounds)."""
    unbounded = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kinds = [schema, *schema.get("anyOf", [])]
                for kind in kinds:
                    if kind.get("type") == "integer" and ("maximum" not in kind or "minimum" not in kind):
                        unbounded.append(f"{method.upper()} {path} ?{parameter['name']}")
    assert not unbounded, unbounded
