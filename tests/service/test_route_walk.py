"""The route walk with real objects: every route naming a record is called, by every role, with a record
of each kind that exists (a study, its analysis, its report, an annotation, a user). Each answer is
either "allowed" (past the permission and object rules: 2xx, or a 4xx about the request itself) or
"refused" (403; 401 without an account). A 404 on a record that exists is a failure, so a route that
loses its object check, or looks the record up the wrong way, cannot pass as "allowed".

Expectations come from the permission matrix and the object rules (neuronav.security.permissions):
a technician sees the status of their own uploads only, a preliminary report is for radiologists,
only an annotation's author changes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, AnnotationRow
from neuronav.db.session import session_scope
from neuronav.report.build import build_report
from neuronav.security.permissions import ROLE_PERMISSIONS, Permission, Role
from neuronav.workflow import reports
from tests.analysis.findings_factory import make_findings
from tests.service.conftest import People, Person
from tests.service.test_admin import EXPECTED, PUBLIC, SIGNED_IN, _routes
from tests.service.test_deid_export import stored_study

P = Permission
IDS = ("study_id", "analysis_id", "report_id", "annotation_id", "user_id")
# who passes the object rules of each record, beyond the route's permission
Rule = Callable[[str], bool]


def _objects(app: FastAPI, settings: Settings, uploader: Person, author: Person, target: Person) -> dict[str, str]:
    """A study uploaded by ``uploader`` with a finished analysis, a preliminary report and an annotation by
    ``author``; ``target`` is the user the admin routes act on."""
    study_id = stored_study(app, settings, uploader, files=1)
    report = build_report(make_findings())
    with session_scope(settings.database) as db:
        analysis = AnalysisRow(study_id=study_id, cache_key="walk", model="walk", state="done", progress=1.0)
        db.add(analysis)
        db.flush()
        analysis.result = {"report_id": report.report_id, "summary": {}, "objects": {}}
        reports.save(db, app.state.store, report, study_id=study_id, analysis_id=analysis.id, user_id=None)
        note = AnnotationRow(study_id=study_id, author_id=author.id, kind="text", geometry={}, text="walk")
        db.add(note)
        db.flush()
        return {
            "study_id": study_id,
            "analysis_id": analysis.id,
            "report_id": report.report_id,
            "annotation_id": note.id,
            "user_id": target.id,
        }


def _object_rule(method: str, path: str) -> dict[str, bool]:
    """Who passes the object rules of the route's record (roles named as in the walk)."""
    everyone = {"technician": True, "other technician": True, "radiologist": True, "neurologist": True, "admin": True}
    if "{study_id}" in path or "{analysis_id}" in path:
        everyone["other technician"] = False  # not the uploader: status of own uploads only
    if "{report_id}" in path:  # a preliminary report: radiologists only
        everyone = {role: role == "radiologist" for role in everyone}
    if path.endswith("/segmentations"):  # the AI's label map of a preliminary report: radiologists only
        everyone = {role: role == "radiologist" for role in everyone}
    if "{annotation_id}" in path and method in ("PATCH", "DELETE"):  # only its author
        everyone = {role: role == "neurologist" for role in everyone}
    return everyone


OBJECT_PERMISSION = {  # what the OBJECT routes of test_admin.EXPECTED check on the record
    ("GET", "/api/studies/{study_id}"): {P.STUDY_READ, P.STUDY_STATUS},
    ("GET", "/api/analyses/{analysis_id}"): {P.STUDY_STATUS},
    ("GET", "/api/reports/{report_id}"): {P.REPORT_READ_PRELIMINARY},
    ("GET", "/api/reports/{report_id}/versions"): {P.REPORT_READ_PRELIMINARY},
    ("GET", "/api/reports/{report_id}/deliveries"): {P.REPORT_READ_PRELIMINARY},
    ("GET", "/api/reports/{report_id}/export/{fmt}"): {P.REPORT_READ_PRELIMINARY},
}


def _allowed(method: str, path: str, role: str | None) -> bool:
    expected = EXPECTED[(method, path)]
    if expected == PUBLIC:
        return True
    if role is None:
        return False
    held = ROLE_PERMISSIONS[Role("technician" if role == "other technician" else role)]
    if expected == SIGNED_IN:
        granted = True
    elif isinstance(expected, Permission):
        granted = expected in held
    elif isinstance(expected, frozenset):
        granted = bool(expected & held)
    else:
        granted = bool(OBJECT_PERMISSION[(method, path)] & held)
    return granted and _object_rule(method, path)[role]


def _order(route: tuple[str, str]) -> tuple[int, str]:
    """Reads first, then changes; deleting and signing last (they change what the others find)."""
    method, path = route
    rank = {"GET": 0, "POST": 1, "PATCH": 1, "DELETE": 2}[method]
    return (3 if path.endswith("/sign") else rank, path)


def test_every_route_with_a_real_record_of_each_kind(
    client: TestClient, app: FastAPI, people: People, settings: Settings
) -> None:
    walkers = {
        "technician": people.create("technician"),
        "other technician": people.create("technician"),
        "radiologist": people.create("radiologist"),
        "neurologist": people.create("neurologist"),
        "admin": people.create("admin"),
    }
    target = people.create("radiologist", active=False)  # a pending account the admin routes act on
    ids = _objects(app, settings, walkers["technician"], walkers["neurologist"], target)
    routes = sorted((r for r in _routes(app) if any("{" + k + "}" in r[1] for k in IDS)), key=_order)
    assert len(routes) >= 25, routes
    failures = []
    for method, path in routes:
        url = path
        for key, value in ids.items():
            url = url.replace("{" + key + "}", value)
        url = url.replace("{image}", "reference").replace("{fmt}", "json")
        assert not re.search(r"\{[^}]+\}", url), url
        for role in (None, *walkers):
            headers = people.direct_headers(walkers[role]) if role else {}
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            response = client.request(method, url, headers=headers, json=body)
            client.cookies.clear()
            status = response.status_code
            if _allowed(method, path, role):
                ok = status not in (401, 403, 404)
            else:
                ok = status == (401 if role is None else 403)
            if not ok:
                want = "allowed" if _allowed(method, path, role) else "refused"
                failures.append(
                    f"{method} {path} as {role or 'anonymous'}: {status} (expected {want}) {response.text[:120]}"
                )
    assert not failures, "\n".join(failures)


def test_the_walk_tells_allowed_from_not_found(client: TestClient, app: FastAPI, people: People) -> None:
    """What the walk above relies on: a record that does not exist answers 404 to a role that may read it,
    which the walk counts as a failure, never as "allowed"."""
    radiologist = people.create("radiologist")
    missing = client.get(f"/api/studies/{'0' * 32}", headers=people.direct_headers(radiologist))
    assert missing.status_code == 404 and missing.json()["error"] == "NotFoundError"
    assert _allowed("GET", "/api/studies/{study_id}", "radiologist")
    assert not _allowed("GET", "/api/studies/{study_id}", "other technician")
    assert not _allowed("GET", "/api/reports/{report_id}", "neurologist")
