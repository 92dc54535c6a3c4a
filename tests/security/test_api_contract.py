"""The OpenAPI document is the contract: a property-based run (schemathesis) over every operation of the
real app, for every role, finds no server error, no status code or content type the document does not
declare, no invalid request accepted and no valid request refused.

How the run is bounded and what it touches:

* The real app (:func:`neuronav.service.create_app`, development settings, SQLite in a temporary data
  folder); schemathesis calls it in-process (ASGI) and runs its lifespan, stopped when the test ends.
* One run per role: a technician, a radiologist, a neurologist and an administrator (each a bearer
  token of a fresh session, minted again for every request so a generated ``POST /api/auth/logout``
  does not sign the rest of the run out), and anonymous (no token).
* One study, uploaded before the run, is the ``study_id`` of every study route, so the routes past
  their 404 are walked too (its analysis included). Analysis work is never queued:
  :func:`neuronav.workflow.jobs.dispatch` is replaced by a function that only counts, so the
  analysis-start route (``force=true`` included) writes its rows and starts nothing.
* Phases: coverage (boundary and invalid values of every parameter, the ``since=0.5`` kind) and
  fuzzing (positive and negative data), at most :data:`MAX_EXAMPLES` examples per operation, no
  shrinking, a fixed seed (the same cases every run).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.engine import events
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema

from neuronav.config import Settings
from neuronav.service import create_app
from tests.service.conftest import People

MAX_EXAMPLES = 10
ROLES = ("anonymous", "technician", "radiologist", "neurologist", "admin")

def _accepting(status: int) -> dict[str, Any]:
    statuses = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", str(status)]
    return {"positive_data_acceptance": {"expected-statuses": statuses}}


CONFIG: dict[str, Any] = {
    "seed": 17,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "no-shrink": True, "deterministic": True},
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "suppress-health-check": ["all"],
    # Valid by the schema and still refused, by rules no JSON Schema can state: the upload's content (a DICOM
    # study: 400), an enrolment token and code (signed and time-based: 400), a password's strength (zxcvbn:
    # 422 PasswordPolicyError). Everything else a valid request may meet is 401, 403, 404, 409 or 429.
    "operations": [
        {"include-name": "POST /api/studies", "checks": _accepting(400)},
        {"include-name": "POST /api/auth/totp/confirm", "checks": _accepting(400)},
        {"include-name": ["POST /api/auth/register", "POST /api/auth/password"], "checks": _accepting(422)},
    ],
}


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
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.append(f"{failure.operation}: {failure.title}: {failure.message}\n{check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"error: {event!r}")
    return sorted(set(found))


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_the_api_keeps_its_contract(settings: Settings, dispatched: list[str], role: str) -> None:
    app = create_app(settings)
    config = schemathesis.Config.from_dict(CONFIG)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)  # starts the lifespan
        if role != "anonymous":
            people = People(settings, TestClient(app))  # only the database is used (the lifespan migrated it)
            person = people.create(role)

            @schema.auth(refresh_interval=None)
            class FreshSession:  # a new session for each request: a generated logout signs out only itself
                def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> dict[str, str]:
                    return people.direct_headers(person)

                def set(self, case: schemathesis.Case, data: dict[str, str], context: schemathesis.AuthContext) -> None:
                    case.headers = {**(case.headers or {}), **data}

        failures = run(schema)
    finally:
        asgi.shutdown_lifespans()
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
