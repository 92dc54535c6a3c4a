"""User administration, break-glass, the route x role matrix, and the OpenAPI description."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.security.access import Actor
from neuronav.security.permissions import ROLE_PERMISSIONS, Permission, Role
from neuronav.service.deps import requires
from tests.service.conftest import ROLES, People, Person, audit_events

P = Permission
PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed in"  # any active account
# any active account passes the door; the route applies object rules (authorize_object) to the record,
# so with this walk's made-up ids every signed-in role gets 404; tests/service/test_route_walk.py walks
# every such route again with real records, where a 404 is a failure
OBJECT = "signed in, object rules"

# Every route of the app and who may call it, written out from the permission matrix
# (neuronav.security.permissions). A route missing here fails test_every_route_answers_each_role_as_the_matrix_says.
EXPECTED: dict[tuple[str, str], str | Permission | frozenset[Permission]] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/api/auth/register"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/refresh"): SIGNED_IN,
    ("POST", "/api/auth/logout"): SIGNED_IN,
    ("POST", "/api/auth/password"): SIGNED_IN,
    ("POST", "/api/auth/totp/enrol"): SIGNED_IN,
    ("POST", "/api/auth/totp/confirm"): SIGNED_IN,
    ("GET", "/api/auth/me"): SIGNED_IN,
    ("GET", "/api/admin/users"): P.USER_MANAGE,
    ("GET", "/api/admin/users/{user_id}"): P.USER_MANAGE,
    ("POST", "/api/admin/users/{user_id}/verify"): P.USER_VERIFY,
    ("POST", "/api/admin/users/{user_id}/role"): P.USER_MANAGE,
    ("POST", "/api/admin/users/{user_id}/disable"): P.USER_MANAGE,
    ("POST", "/api/admin/users/{user_id}/enable"): P.USER_MANAGE,
    ("POST", "/api/admin/users/{user_id}/totp/reset"): P.USER_MANAGE,
    ("POST", "/api/admin/users/{user_id}/password/reset"): P.USER_MANAGE,
    ("POST", "/api/admin/breakglass"): P.BREAKGLASS_USE,
    ("GET", "/api/admin/breakglass"): P.BREAKGLASS_USE,
    ("DELETE", "/api/admin/breakglass"): P.BREAKGLASS_USE,
    # the DICOM node registry and the studies received over DICOM (service/routes/dicom_nodes.py)
    ("GET", "/api/admin/dicom-nodes"): P.SETTINGS_MANAGE,
    ("POST", "/api/admin/dicom-nodes"): P.SETTINGS_MANAGE,
    ("DELETE", "/api/admin/dicom-nodes/{name}"): P.SETTINGS_MANAGE,
    ("GET", "/api/admin/dicom-arrivals"): P.SETTINGS_MANAGE,
    ("GET", "/api/admin/destinations"): P.SETTINGS_MANAGE,
    ("POST", "/api/admin/destinations"): P.SETTINGS_MANAGE,
    ("DELETE", "/api/admin/destinations/{name}"): P.SETTINGS_MANAGE,
    ("GET", "/api/admin/deliveries"): P.SETTINGS_MANAGE,
    ("POST", "/api/admin/deliveries/{delivery_id}/resend"): P.SETTINGS_MANAGE,
    ("GET", "/api/admin/hl7/rejected"): P.SETTINGS_MANAGE,
    ("GET", "/api/audit"): P.AUDIT_READ,
    ("GET", "/api/audit/verify"): P.AUDIT_READ,
    ("GET", "/api/audit/fhir"): P.AUDIT_READ,
    # the lead's routers (studies, analyses, reports), as they stood when this table was written
    ("POST", "/api/studies"): P.STUDY_UPLOAD,
    # the worklist: every study for study:list, a technician's own uploads for study:status
    ("GET", "/api/studies"): frozenset({P.STUDY_LIST, P.STUDY_STATUS}),
    ("GET", "/api/studies/{study_id}"): OBJECT,
    # the PACS from the worklist (service/routes/pacs.py): technicians and radiologists
    ("GET", "/api/pacs/studies"): frozenset({P.STUDY_UPLOAD, P.ANALYSIS_START}),
    ("POST", "/api/pacs/retrieve"): frozenset({P.STUDY_UPLOAD, P.ANALYSIS_START}),
    ("POST", "/api/studies/{study_id}/analyses"): P.ANALYSIS_START,
    ("GET", "/api/analyses/{analysis_id}"): OBJECT,
    ("GET", "/api/analyses/{analysis_id}/result"): P.ANALYSIS_READ,
    ("GET", "/api/studies/{study_id}/images/{image}"): P.STUDY_IMAGES,
    ("GET", "/api/studies/{study_id}/export/deidentified"): P.STUDY_EXPORT_DEIDENTIFIED,
    ("GET", "/api/reports/{report_id}"): OBJECT,
    ("GET", "/api/reports/{report_id}/versions"): OBJECT,
    ("GET", "/api/reports/{report_id}/deliveries"): OBJECT,
    ("GET", "/api/reports/{report_id}/export/{fmt}"): OBJECT,
    ("POST", "/api/reports/{report_id}/edit"): P.REPORT_EDIT,
    ("POST", "/api/reports/{report_id}/review"): P.REPORT_EDIT,
    ("POST", "/api/reports/{report_id}/sign"): P.REPORT_SIGN,
    ("POST", "/api/reports/{report_id}/amend"): P.REPORT_AMEND,
    # the viewer and readers' annotations (service/routes/studies.py, annotation.py)
    ("GET", "/api/studies/{study_id}/viewer"): P.STUDY_IMAGES,
    ("GET", "/api/studies/{study_id}/annotations"): P.ANNOTATION_READ,
    ("POST", "/api/studies/{study_id}/annotations"): P.ANNOTATION_CREATE,
    ("PATCH", "/api/annotations/{annotation_id}"): P.ANNOTATION_CREATE,
    ("DELETE", "/api/annotations/{annotation_id}"): P.ANNOTATION_CREATE,
    ("POST", "/api/annotations/{annotation_id}/include"): P.REPORT_EDIT,
    # segmentation versions: a radiologist's corrections of the AI's label map (routes/segmentations.py)
    ("GET", "/api/studies/{study_id}/segmentations"): P.STUDY_IMAGES,
    ("POST", "/api/studies/{study_id}/segmentations"): P.REPORT_EDIT,
    # DICOMweb (service/routes/dicomweb.py): QIDO-RS and WADO-RS read studies, STOW-RS uploads one
    ("GET", "/dicomweb/studies"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/metadata"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/instances"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/metadata"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered"): P.STUDY_READ,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata"): P.STUDY_READ,
    ("POST", "/dicomweb/studies"): P.STUDY_UPLOAD,
    ("POST", "/dicomweb/studies/{study}"): P.STUDY_UPLOAD,
    # the web UI's page and assets (service/routes/web.py)
    ("GET", "/"): PUBLIC,
    ("GET", "/assets/{name}"): PUBLIC,
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, included routers resolved (FastAPI keeps them nested)."""
    found = []
    for route in iter_route_contexts(app.routes):
        path = route.path_format or route.path
        assert path, route
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((method, path))
    return found


def _allowed(expected: str | Permission | frozenset[Permission], role: str | None) -> bool:
    if expected == PUBLIC:
        return True
    if role is None:
        return False
    if isinstance(expected, frozenset):  # any one of them opens the route
        return bool(expected & ROLE_PERMISSIONS[Role(role)])
    return expected in (SIGNED_IN, OBJECT) or expected in ROLE_PERMISSIONS[Role(role)]


def test_every_route_answers_each_role_as_the_matrix_says(client: TestClient, app: FastAPI, people: People) -> None:
    routes = _routes(app)
    unknown = sorted(set(routes) - set(EXPECTED))
    assert not unknown, f"routes missing from EXPECTED in {__file__} (add who may call them): {unknown}"
    stale = sorted(set(EXPECTED) - set(routes))
    assert not stale, f"EXPECTED lists routes the app does not have: {stale}"
    persons = {role: people.create(role) for role in ROLES}
    failures = []
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "0" * 32, path)
        for role in (None, *ROLES):
            # a fresh session for every call: some routes (logout, password) end the session they run in
            headers = people.direct_headers(persons[role]) if role else {}
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            status = client.request(method, url, headers=headers, json=body).status_code
            client.cookies.clear()
            expected = EXPECTED[(method, path)]
            if _allowed(expected, role):
                ok = status not in (401, 403)
            elif role is None:
                ok = status == 401
            else:
                ok = status == 403
            if not ok:
                failures.append(f"{method} {path} as {role or 'anonymous'}: {status} (expected: {expected})")
    assert not failures, "\n".join(failures)


# The routes an account signed in with a one-time password may call (it must change the password first).
PASSWORD_CHANGE_OPEN = {("POST", "/api/auth/password"), ("POST", "/api/auth/logout"), ("GET", "/api/auth/me")}


def test_a_one_time_password_opens_only_the_password_change(
    client: TestClient, app: FastAPI, people: People, settings: Settings
) -> None:
    from neuronav.db.models import UserRow
    from neuronav.db.session import session_scope

    persons = {role: people.create(role) for role in ROLES}
    with session_scope(settings.database) as db:
        for person in persons.values():
            row = db.get(UserRow, person.id)
            assert row is not None
            row.password_must_change = True
    failures = []
    for method, path in _routes(app):
        if EXPECTED.get((method, path), PUBLIC) == PUBLIC:  # a route missing there fails the test above
            continue
        url = re.sub(r"\{[^}]+\}", "0" * 32, path)
        for role in ROLES:
            headers = people.direct_headers(persons[role])
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            response = client.request(method, url, headers=headers, json=body)
            client.cookies.clear()
            if (method, path) in PASSWORD_CHANGE_OPEN:
                ok = response.status_code not in (401, 403)
            else:
                ok = response.status_code == 403 and response.json()["error"] == "PasswordChangeRequired"
            if not ok:
                failures.append(f"{method} {path} as {role}: {response.status_code} {response.text[:80]}")
    assert not failures, "\n".join(failures)


def test_every_operation_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "NeuroNav"
    tag_names = {t["name"] for t in schema["tags"]}
    undocumented = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if not operation.get("description") or not operation.get("tags"):
                undocumented.append(f"{method.upper()} {path}")
            assert set(operation.get("tags", [])) <= tag_names, (path, operation.get("tags"))
    assert not undocumented, f"operations without a description or tag: {undocumented}"
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# -- user administration -------------------------------------------------------------------------


def test_admin_lists_users_with_filters(client: TestClient, people: People, staff: dict[str, Person]) -> None:
    pending = people.create("neurologist", email="pending.neuro@hospital.example", active=False)
    headers = staff["admin"].headers
    everyone = client.get("/api/admin/users", headers=headers).json()
    assert everyone["total"] == 5
    only_pending = client.get("/api/admin/users", params={"state": "pending"}, headers=headers).json()
    assert [u["id"] for u in only_pending["items"]] == [pending.id]
    radiologists = client.get("/api/admin/users", params={"role": "radiologist"}, headers=headers).json()
    assert [u["id"] for u in radiologists["items"]] == [staff["radiologist"].id]
    found = client.get("/api/admin/users", params={"q": "PENDING.neuro"}, headers=headers).json()
    assert found["total"] == 1
    page = client.get("/api/admin/users", params={"limit": 2, "offset": 4}, headers=headers).json()
    assert (page["total"], len(page["items"])) == (5, 1)
    assert "password_hash" not in everyone["items"][0] and "totp_secret_enc" not in everyone["items"][0]
    assert client.get("/api/admin/users", params={"state": "odd"}, headers=headers).status_code == 422
    one = client.get(f"/api/admin/users/{pending.id}", headers=headers)
    assert one.status_code == 200 and one.json()["state"] == "pending"
    missing = client.get(f"/api/admin/users/{'f' * 32}", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFoundError"


def test_verification_checks_licence_role_and_second_factor(
    client: TestClient, people: People, staff: dict[str, Person], settings: Settings
) -> None:
    headers = staff["admin"].headers
    pending = people.create("radiologist", active=False)
    bad = client.post(
        f"/api/admin/users/{pending.id}/verify", json={"licence_number": "!", "role": "radiologist"}, headers=headers
    )
    assert bad.status_code == 409 and bad.json()["error"] == "AccountStateError"
    admin_role = client.post(
        f"/api/admin/users/{pending.id}/verify", json={"licence_number": "GMC 42424", "role": "admin"}, headers=headers
    )
    assert admin_role.status_code == 409 and "second factor" in admin_role.json()["detail"]
    own = client.post(
        f"/api/admin/users/{staff['admin'].id}/verify",
        json={"licence_number": "GMC 42424", "role": "admin"},
        headers=headers,
    )
    assert own.status_code == 403
    ok = client.post(
        f"/api/admin/users/{pending.id}/verify",
        json={"licence_number": "GMC 42424", "role": "radiologist"},
        headers=headers,
    )
    assert ok.status_code == 200
    again = client.post(
        f"/api/admin/users/{pending.id}/verify",
        json={"licence_number": "GMC 42424", "role": "radiologist"},
        headers=headers,
    )
    assert again.status_code == 409  # only a pending account is verified
    outcomes = [(e.outcome, e.target_id) for e in audit_events(settings, "user.verify")]
    assert outcomes == [
        ("failure", pending.id),
        ("failure", pending.id),
        ("denied", staff["admin"].id),
        ("success", pending.id),
        ("failure", pending.id),
    ]
    radiologist = staff["radiologist"].headers
    refused = client.post(
        f"/api/admin/users/{pending.id}/verify",
        json={"licence_number": "GMC 42424", "role": "radiologist"},
        headers=radiologist,
    )
    assert refused.status_code == 403
    denied = audit_events(settings, "access.denied")[-1]
    assert (denied.actor_id, denied.outcome, denied.detail["permission"]) == (
        staff["radiologist"].id,
        "denied",
        "user:verify",
    )


def test_role_change_is_audited_and_needs_a_second_factor_for_admin(
    client: TestClient, staff: dict[str, Person], settings: Settings
) -> None:
    headers = staff["admin"].headers
    target = staff["technician"]
    to_admin = client.post(f"/api/admin/users/{target.id}/role", json={"role": "admin"}, headers=headers)
    assert to_admin.status_code == 409
    same = client.post(f"/api/admin/users/{target.id}/role", json={"role": "technician"}, headers=headers)
    assert same.status_code == 409
    ok = client.post(f"/api/admin/users/{target.id}/role", json={"role": "radiologist"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["user"]["role"] == "radiologist"
    event = audit_events(settings, "user.role_change")[-1]
    assert (event.actor_id, event.actor_role, event.target_id) == (staff["admin"].id, "admin", target.id)
    assert event.detail == {"from": "technician", "to": "radiologist", "sessions_revoked": 1}
    own = client.post(f"/api/admin/users/{staff['admin'].id}/role", json={"role": "technician"}, headers=headers)
    assert own.status_code == 403


def test_second_factor_reset(client: TestClient, people: People, staff: dict[str, Person]) -> None:
    headers = staff["admin"].headers
    person = people.create("radiologist", totp_enrolled=True)
    session = people.login(person)
    assert client.post(f"/api/admin/users/{person.id}/totp/reset", headers=headers).status_code == 200
    assert client.get("/api/auth/me", headers=session).status_code == 401
    person.totp_secret = None
    assert people.login(person)  # no code needed any more
    assert client.post(f"/api/admin/users/{person.id}/totp/reset", headers=headers).status_code == 409
    other_admin = people.create("admin")
    assert client.post(f"/api/admin/users/{other_admin.id}/totp/reset", headers=headers).status_code == 409


# -- break-glass ---------------------------------------------------------------------------------


@pytest.fixture
def probe_app(app: FastAPI) -> FastAPI:
    """The app plus two tiny routes guarded by patient-data permissions."""
    probe = APIRouter(prefix="/test-probe", tags=["health"])

    @probe.get("/study/{study_id}")
    def read_study(study_id: str, user: Annotated[Actor, Depends(requires(P.STUDY_READ))]) -> dict[str, str]:
        """Test only."""
        return {"study": study_id, "user": user.id}

    @probe.get("/export")
    def export(user: Annotated[Actor, Depends(requires(P.REPORT_EXPORT))]) -> dict[str, str]:
        """Test only."""
        return {"user": user.id}

    app.include_router(probe)
    return app


def test_patient_data_needs_a_break_glass_for_an_admin(
    probe_app: FastAPI, client: TestClient, staff: dict[str, Person], settings: Settings
) -> None:
    admin = staff["admin"].headers
    url = "/test-probe/study/s123"
    assert client.get(url, headers=staff["radiologist"].headers).status_code == 200
    assert client.get(url, headers=staff["neurologist"].headers).status_code == 200
    assert client.get(url, headers=staff["technician"].headers).status_code == 403
    refused = client.get(url, headers=admin)
    assert refused.status_code == 403 and "break-glass" in refused.json()["detail"]
    assert client.get("/api/admin/breakglass", headers=admin).json() is None

    short = client.post("/api/admin/breakglass", json={"reason": "urgent   "}, headers=admin)
    assert short.status_code == 422
    opened = client.post(
        "/api/admin/breakglass", json={"reason": "Emergency: treating clinician unreachable"}, headers=admin
    )
    assert opened.status_code == 201
    grant = opened.json()
    assert "study:read" in grant["permissions"] and "report:export" not in grant["permissions"]

    assert client.get(url, headers=admin).status_code == 200
    assert client.get("/test-probe/export", headers=admin).status_code == 403  # reading only
    assert client.get("/api/admin/breakglass", headers=admin).json()["breakglass_id"] == grant["breakglass_id"]
    me = client.get("/api/auth/me", headers=admin).json()
    assert me["breakglass"]["breakglass_id"] == grant["breakglass_id"] and "study:read" in me["permissions"]

    opened_event = audit_events(settings, "breakglass.open")[-1]
    assert (opened_event.actor_id, opened_event.outcome) == (staff["admin"].id, "success")
    assert opened_event.detail["reason"] == "Emergency: treating clinician unreachable"
    access = audit_events(settings, "breakglass.access")
    assert len(access) == 1
    assert access[0].detail["breakglass_id"] == grant["breakglass_id"]
    assert access[0].detail["params"] == {"study_id": "s123"} and access[0].detail["permission"] == "study:read"

    assert client.delete("/api/admin/breakglass", headers=admin).json() == {"closed": True}
    assert client.get(url, headers=admin).status_code == 403
    assert audit_events(settings, "breakglass.close")[-1].actor_id == staff["admin"].id


def test_break_glass_belongs_to_one_session_and_refuses_unknown_studies(
    probe_app: FastAPI, client: TestClient, people: People, staff: dict[str, Person]
) -> None:
    admin = staff["admin"]
    first_session = admin.headers
    missing = client.post(
        "/api/admin/breakglass",
        json={"reason": "Emergency review of a study", "study_id": "f" * 32},
        headers=first_session,
    )
    assert missing.status_code == 404
    opened = client.post("/api/admin/breakglass", json={"reason": "Emergency review now"}, headers=first_session)
    assert opened.status_code == 201
    other_session = people.login(admin)
    assert client.get("/test-probe/study/s1", headers=other_session).status_code == 403
    assert client.get("/test-probe/study/s1", headers=first_session).status_code == 200
    radiologist = staff["radiologist"].headers
    refused = client.post("/api/admin/breakglass", json={"reason": "I want to see it"}, headers=radiologist)
    assert refused.status_code == 403
