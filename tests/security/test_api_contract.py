"""The OpenAPI document is the contract: a property-based run (schemathesis) over every operation of the
real app, for every role, finds no server error, no status code or content type the document does not
declare, no invalid request accepted and no valid request refused.

How the run is bounded and what it touches:

* The real app (:func:`neuronav.service.create_app`, development settings, SQLite in a temporary data
  folder); schemathesis (its engine, as its command line runs it: ``schemathesis.engine.from_schema``)
  calls it in-process over ASGI and runs its lifespan, stopped when the test ends.
* One run per role: a technician, a radiologist, a neurologist and an administrator (each a bearer
  token of a fresh session, minted for every request so that a generated ``POST /api/auth/logout``
  signs out only itself), and anonymous (no token; schemathesis' automatic sign-up is off).
* Real records made before the run by the route walk's factory (a study with a finished analysis, its
  preliminary report, an annotation, a user to administer): their ids are half of the values of every
  id path parameter, so the routes past their 404 are walked too. Analysis work is never queued:
  :func:`neuronav.workflow.jobs.dispatch` is replaced by a function that only records the id, so the
  analysis-start route (``force=true`` included) writes its rows and starts nothing.
* Phases: coverage (boundary and invalid values of every parameter, unexpected methods, the
  ``since=0.5`` kind) and fuzzing (positive and negative data), at most :data:`MAX_EXAMPLES` examples
  per operation, no shrinking, a fixed seed (the same cases every run), no example database or cache
  written. About 20 s a role on two cores.
* Checks: schemathesis' defaults: no 5xx, status codes, content types, headers and bodies as
  documented, negative data rejected, positive data accepted (401, 403, 404, 409, 429 allowed; the few
  refusals no schema can state are listed in :data:`CONFIG`, each with its reason), authentication
  not ignored, the ``Allow`` header of a 405.

(schemathesis 4.32's pytest integration, ``schemathesis.pytest.from_fixture``, fails on pytest 9.2:
``Function`` has no ``_nodeid``; the engine is what its command line uses.)
"""

from __future__ import annotations

from typing import Any, get_args

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.engine import events
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema

from neuronav.config import Settings
from neuronav.service import create_app
from neuronav.workflow.reports import MEDIA, ExportFormat
from tests.service.conftest import People, Person
from tests.service.test_route_walk import _objects

MAX_EXAMPLES = 10
ROLES = ("anonymous", "technician", "radiologist", "neurologist", "admin")


def _accepting(status: int) -> dict[str, Any]:
    statuses = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", str(status)]
    return {"positive_data_acceptance": {"expected-statuses": statuses}}


CONFIG: dict[str, Any] = {
    "seed": 17,
    "cache": {"enabled": False},  # no .schemathesis/ folder in the working tree: every run starts afresh
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "no-shrink": True,
        "deterministic": True,
        "database": "none",
    },
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "suppress-health-check": ["all"],
    "auth": {"auto-signup": False},  # anonymous stays anonymous (no sign-up through POST /api/auth/register)
    # Valid by the schema and still refused, by rules no JSON Schema can state: the upload's content (a DICOM
    # study: 400), an enrolment token and code (signed and time-based: 400), a password's strength (zxcvbn:
    # 422 PasswordPolicyError). Everything else a valid request may meet is 401, 403, 404, 409 or 429.
    "operations": [
        {"include-name": "POST /api/studies", "checks": _accepting(400)},
        # a destination's config is free-form by kind (an hl7 one needs host and port, a fhir one its base URL)
        {"include-name": "POST /api/admin/destinations", "checks": _accepting(400)},
        # STOW-RS: the parts of a multipart/related body must be DICOM instances of one study (400 otherwise)
        # (415 without one: schemathesis cannot write a multipart/related body, it sends bytes without that type)
        {
            "include-name": ["POST /dicomweb/studies", "POST /dicomweb/studies/{study}"],
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "415", "429", "5xx"]
                }
            },
        },
        {"include-name": "POST /api/auth/totp/confirm", "checks": _accepting(400)},
        {"include-name": ["POST /api/auth/register", "POST /api/auth/password"], "checks": _accepting(422)},
        # an annotation's points and text, checked against its kind (2 points for a distance or an roi, text
        # for a text annotation) and the image it is drawn on (an roi inside it, with an area)
        {
            "include-name": ["POST /api/studies/{study_id}/annotations", "PATCH /api/annotations/{annotation_id}"],
            "checks": _accepting(400),
        },
        # a corrected label map: base64 of a NIfTI on the segmentation's grid with BraTS labels, lesions that exist
        {"include-name": "POST /api/studies/{study_id}/segmentations", "checks": _accepting(400)},
        # and one no OpenAPI document can state across parameters: an audit range whose until is before since
        {"include-name": ["GET /api/audit", "GET /api/audit/fhir"], "checks": _accepting(400)},
        # and a PACS search needs at least one key (patient id, name, accession number or study UID) of its
        # optional parameters
        {"include-name": "GET /api/pacs/studies", "checks": _accepting(400)},
    ],
}


@schemathesis.serializer("multipart/related")
def _related(ctx: object, value: object) -> bytes:
    """STOW-RS bodies as schemathesis makes them (any bytes): the service must refuse them by name."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Analyses the app would have queued (none runs)."""
    queued: list[str] = []
    monkeypatch.setattr("neuronav.workflow.jobs.dispatch", lambda _settings, analysis_id: queued.append(analysis_id))
    return queued


def run(schema: BaseSchema) -> list[str]:
    """The failures of a schemathesis run, one line each."""
    found: list[str] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                interaction = event.recorder.interactions.get(case_id)
                answer = interaction.response if interaction is not None else None
                got = f"{answer.status_code} {answer.content[:200]!r}" if answer is not None else "no response"
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.append(
                            f"{failure.operation}: {failure.title} (got {got})\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"error: {event!r}")
    return sorted(set(found))


def records(app: FastAPI, settings: Settings, people: People, person: Person | None, role: str) -> dict[str, Any]:
    """Real records (a study with a finished analysis, its preliminary report, an annotation, a user to
    administer), made by the route walk's factory; their ids are half of every id path parameter's values."""
    uploader = person if person is not None and role == "technician" else people.create("technician")
    author = person if person is not None and role in ("radiologist", "neurologist") else people.create("radiologist")
    ids = _objects(app, settings, uploader, author, people.create("technician"))
    return {
        "dictionaries": {name: {"values": [value]} for name, value in ids.items()},
        "parameters": {f"path.{name}": {"dictionary": name, "probability": 0.5} for name in ids},
    }


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_the_api_keeps_its_contract(settings: Settings, dispatched: list[str], role: str) -> None:
    app = create_app(settings)
    with TestClient(app) as client:  # the lifespan once, to make the accounts and records
        people = People(settings, client)
        person = people.create(role) if role != "anonymous" else None
        seeded = records(app, settings, people, person, role)
    config = schemathesis.Config.from_dict({**CONFIG, **seeded})
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)  # the lifespan again
        if person is not None:
            signed_in = person

            @schema.auth(refresh_interval=None)
            class FreshSession:  # a new session for each request: a generated logout signs out only itself
                def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> dict[str, str]:
                    return people.direct_headers(signed_in)

                def set(self, case: schemathesis.Case, data: dict[str, str], context: schemathesis.AuthContext) -> None:
                    case.headers = {**(case.headers or {}), **data}

        failures = run(schema)
    finally:
        asgi.shutdown_lifespans()
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    assert len(dispatched) <= 2 * MAX_EXAMPLES + 50  # analysis starts recorded, none run (bounded by the run)


# -- what the run found, each pinned by a fast test -------------------------------------------------


NOT_DATE_TIMES = [
    "0.5",  # was read as a Unix time: 1970-01-01T00:00:00.5Z
    "1700000000",
    "2026-01-31",  # a bare date was read as midnight
    "yesterday",
    "2026-01-31T25:00:00Z",
    "2026-02-30T00:00",
    "9999-12-31T23:59-01:00",  # past the last date-time in UTC: was an OverflowError, a 500
]
DATE_TIME_ROUTES = ["/api/studies?since=", "/api/audit?since=", "/api/audit?until=", "/api/audit/fhir?until="]


def test_a_date_time_query_parameter_is_iso_8601_never_a_number(client: TestClient, staff: dict[str, Person]) -> None:
    for route in DATE_TIME_ROUTES:
        headers = staff["admin" if "audit" in route else "radiologist"].headers
        for value in NOT_DATE_TIMES:
            response = client.get(route + value, headers=headers)
            assert response.status_code == 422, (route, value, response.text)  # since=0.5 was read as 1970
            assert response.json()["error"] == "RequestValidationError"


def test_iso_8601_date_times_are_accepted(client: TestClient, staff: dict[str, Person]) -> None:
    for value in ["2026-01-31T14:00:00Z", "2026-01-31T14:00", "2026-01-31 14:00:00.123456+01:00", "2028-02-29t00:00z"]:
        studies = client.get("/api/studies", params={"since": value}, headers=staff["radiologist"].headers)
        assert studies.status_code == 200, (value, studies.text)
        audit = client.get("/api/audit", params={"until": value}, headers=staff["admin"].headers)
        assert audit.status_code == 200, (value, audit.text)


def test_every_operation_documents_its_errors_and_files(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "500"} <= set(responses), (method, path)
            if operation.get("security") == [{"HTTPBearer": []}]:
                assert {"401", "403", "429"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= set(responses), (method, path)
                if "multipart/related" not in operation["requestBody"]["content"]:  # STOW-RS reads its body itself
                    assert "422" in responses, (method, path)
            for status, response in responses.items():
                if status[0] in "45" and status != "503":  # /readyz answers its Readiness
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    paths = document["paths"]
    assert set(paths["/api/studies/{study_id}/images/{image}"]["get"]["responses"]["200"]["content"]) == {
        "application/gzip"
    }
    assert set(paths["/api/studies/{study_id}/export/deidentified"]["get"]["responses"]["200"]["content"]) == {
        "application/zip"
    }
    export = paths["/api/reports/{report_id}/export/{fmt}"]["get"]
    assert set(export["responses"]["200"]["content"]) == {media for media, _ in MEDIA.values()}
    fmt = next(p for p in export["parameters"] if p["name"] == "fmt")
    assert set(fmt["schema"]["enum"]) == set(MEDIA) == set(get_args(ExportFormat))
    assert paths["/metrics"]["get"]["security"][0] == {}  # open in development


def test_an_unknown_export_format_is_refused_by_the_schema(client: TestClient, staff: dict[str, Person]) -> None:
    response = client.get("/api/reports/" + "0" * 32 + "/export/docx", headers=staff["radiologist"].headers)
    assert response.status_code == 422 and response.json()["error"] == "RequestValidationError"


def test_a_405_names_every_method_of_the_path(client: TestClient) -> None:
    for path, allowed in [
        ("/api/admin/breakglass", "DELETE, GET, POST"),
        ("/api/studies", "GET, POST"),
        ("/api/annotations/x", "DELETE, PATCH"),
    ]:
        response = client.options(path)
        assert response.status_code == 405 and response.headers["allow"] == allowed, path


def test_what_the_schema_states_is_what_the_route_checks(client: TestClient, staff: dict[str, Person]) -> None:
    admin = staff["admin"].headers
    # a break-glass reason: 10 characters besides white space (was: refused beyond the schema)
    assert client.post("/api/admin/breakglass", json={"reason": "a b c d e f"}, headers=admin).status_code == 422
    # an e-mail address without @: refused by the schema (was: 400 for a request the schema allowed)
    body = {"email": "000", "password": "x" * 12, "display_name": "Dr X", "role": "radiologist"}
    assert client.post("/api/auth/register", json=body).status_code == 422
    # an upload without files: refused by the schema
    empty = client.post("/api/studies", headers=staff["technician"].headers, files={"other": ("a", b"x")})
    assert empty.status_code == 422
