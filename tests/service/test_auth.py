"""Sign-in, sessions and tokens over HTTP — every test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from neuronav.config import Settings
from neuronav.db.models import UserRow
from neuronav.db.session import session_scope
from neuronav.security import tokens, totp
from neuronav.security.login import BAD_CREDENTIALS
from tests.service.conftest import NEW_PASSWORD, PASSWORD, People, Person, audit_events


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Overrides the conftest fixture: each test of this module runs on both databases."""
    if request.param == "sqlite":
        tmp_path = request.getfixturevalue("tmp_path")
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def register(client: TestClient, email: str, password: str = PASSWORD, role: str = "radiologist") -> int:
    body = {"email": email, "password": password, "display_name": "Dr New", "role": role, "licence_number": "x 12"}
    return client.post("/api/auth/register", json=body).status_code


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: object) -> tuple[int, dict[str, object]]:
    response = client.post("/api/auth/login", json={"email": email, "password": password, **extra})
    client.cookies.clear()
    return response.status_code, response.json()


def user_row(settings: Settings, email: str) -> UserRow:
    with session_scope(settings.database) as db:
        user = db.query(UserRow).filter(UserRow.email == email).one()
        db.expunge(user)
        return user


# -- registration and verification ---------------------------------------------------------------


def test_registered_account_is_pending_and_cannot_sign_in_until_an_admin_verifies_it(
    client: TestClient, settings: Settings, people: People
) -> None:
    assert register(client, "New.Doctor@Hospital.example") == 202
    user = user_row(settings, "new.doctor@hospital.example")  # stored lower-cased
    assert (user.state, user.role, user.verified_at) == ("pending", "radiologist", None)

    status, body = login(client, "new.doctor@hospital.example")
    assert status == 403 and body["error"] == "PermissionDenied"
    assert "waiting for an administrator" in str(body["detail"])

    admin = people.create("admin")
    headers = people.login(admin)
    verified = client.post(
        f"/api/admin/users/{user.id}/verify",
        json={"licence_number": " gmc  7654321 ", "role": "neurologist"},
        headers=headers,
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["state"] == "active"
    assert verified.json()["user"]["licence_number"] == "GMC 7654321"

    status, body = login(client, "new.doctor@hospital.example")
    assert status == 200
    assert body["user"]["role"] == "neurologist"  # type: ignore[index]
    event = audit_events(settings, "user.verify")[-1]
    assert (event.actor_id, event.target_id, event.outcome) == (admin.id, user.id, "success")
    assert event.detail["role"] == "neurologist" and event.detail["requested_role"] == "radiologist"


def test_registration_does_not_reveal_existing_accounts(client: TestClient, people: People) -> None:
    existing = people.create("radiologist")
    first = client.post(
        "/api/auth/register",
        json={"email": existing.email, "password": PASSWORD, "display_name": "X", "role": "technician"},
    )
    second = client.post(
        "/api/auth/register",
        json={"email": "nobody-yet@hospital.example", "password": PASSWORD, "display_name": "X", "role": "technician"},
    )
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()


def test_registration_enforces_the_password_policy(client: TestClient) -> None:
    response = client.post(
        "/api/auth/register",
        json={"email": "short@hospital.example", "password": "short", "display_name": "X", "role": "technician"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "PasswordPolicyError"
    assert any("at least 12" in p for p in response.json()["problems"])
    assert "short" not in json.dumps(response.json()["problems"]).replace("short@", "")


# -- sign-in -------------------------------------------------------------------------------------


def test_login_returns_tokens_and_sets_a_strict_httponly_cookie(client: TestClient, people: People) -> None:
    person = people.create("radiologist")
    response = client.post("/api/auth/login", json={"email": person.email.upper(), "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
    assert body["csrf_token"] and body["user"]["email"] == person.email and body["user"]["role"] == "radiologist"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{tokens.DEV_SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["id"] == person.id
    assert "study:read" in me.json()["permissions"] and me.json()["authenticated_by"] == "bearer"


def test_unknown_email_and_wrong_password_get_the_identical_answer(client: TestClient, people: People) -> None:
    person = people.create("technician")
    wrong = client.post("/api/auth/login", json={"email": person.email, "password": "not the password at all"})
    unknown = client.post("/api/auth/login", json={"email": "ghost@hospital.example", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": BAD_CREDENTIALS, "error": "AuthError"}
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate") == "Bearer"
    assert "set-cookie" not in wrong.headers


def test_repeated_failures_lock_the_account_with_retry_after(
    client: TestClient, people: People, settings: Settings
) -> None:
    person = people.create("radiologist")
    for _ in range(5):
        assert login(client, person.email, "wrong password, again")[0] == 401
    response = client.post("/api/auth/login", json={"email": person.email, "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"] == "AccountLocked"
    assert 800 <= int(response.headers["retry-after"]) <= 900
    # the lock is stored with the account, so it holds in every worker process
    assert user_row(settings, person.email).throttle["locked_until"]
    events = audit_events(settings, "login")
    assert [e.outcome for e in events[-6:]] == ["failure"] * 6
    assert events[-1].detail["reason"].startswith("locked") and events[-1].detail["retry_after_s"] > 0


def test_a_name_without_account_locks_exactly_like_a_real_one(client: TestClient) -> None:
    for _ in range(5):
        assert login(client, "ghost@hospital.example", "wrong password, again")[0] == 401
    status, body = login(client, "ghost@hospital.example", "anything at all")
    assert status == 429 and body["error"] == "AccountLocked"


def test_an_admin_signs_in_only_with_the_second_factor(client: TestClient, people: People, settings: Settings) -> None:
    admin = people.create("admin")
    assert admin.totp_secret is not None
    status, body = login(client, admin.email)
    assert status == 401 and body["error"] == "SecondFactorRequired"
    status, body = login(client, admin.email, totp_code="000000")
    assert status == 401 and body["error"] == "AuthError"
    code = people.code(admin)
    assert login(client, admin.email, totp_code=code)[0] == 200
    status, body = login(client, admin.email, totp_code=code)  # the same code again: replay
    assert status == 401
    assert [e.detail["reason"] for e in audit_events(settings, "login")[-4:]] == [
        "second factor required",
        "bad code",
        "ok",
        "bad code",
    ]


def test_an_admin_without_a_second_factor_cannot_sign_in(client: TestClient, people: People) -> None:
    with pytest.raises(Exception, match="TOTP"):
        people.create("admin", totp_enrolled=False)  # the bootstrap refuses it already
    # an account that became admin otherwise (demoted factor) is refused after the password
    person = people.create("radiologist")
    with session_scope(people.settings.database) as db:
        user = db.get(UserRow, person.id)
        assert user is not None
        user.role = "admin"
    status, body = login(client, person.email)
    assert status == 403 and "second factor" in str(body["detail"])


def test_login_success_and_failure_are_audited_without_the_password(
    client: TestClient, people: People, settings: Settings
) -> None:
    person = people.create("neurologist")
    assert login(client, person.email, "a wrong password here")[0] == 401
    assert login(client, "ghost@hospital.example", "a wrong password here")[0] == 401
    assert login(client, person.email)[0] == 200
    failure, unknown, success = audit_events(settings, "login")[-3:]
    assert (failure.outcome, failure.target_id, failure.detail["reason"]) == ("failure", person.id, "bad password")
    assert (unknown.outcome, unknown.actor_id, unknown.detail["reason"]) == ("failure", None, "unknown account")
    assert "ghost" not in json.dumps(unknown.detail)  # only a digest of the name typed
    assert (success.outcome, success.actor_id, success.actor_role) == ("success", person.id, "neurologist")
    assert all(e.client == "testclient" for e in (failure, unknown, success))
    assert success.target_type == "session" and success.target_id
    dump = json.dumps([e.detail for e in audit_events(settings)])
    assert PASSWORD not in dump and "a wrong password here" not in dump


# -- tokens and sessions -------------------------------------------------------------------------


def test_requests_without_valid_credentials_get_401(client: TestClient, people: People, settings: Settings) -> None:
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me").headers["www-authenticate"] == "Bearer"
    assert client.get("/api/auth/me", headers={"Authorization": "Bearer v1.forged.token"}).status_code == 401
    person = people.create("radiologist")
    headers = people.login(person)
    token = headers["Authorization"].split()[1]
    version, body, mac = token.split(".")
    tampered = f"{version}.{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    signed_elsewhere = tokens.issue_access_token(
        user_id=person.id, session_id="0" * 32, role="radiologist", secret="another secret key, 32 chars long!!"
    )
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {signed_elsewhere}"}).status_code == 401


def test_an_expired_access_token_is_refused(client: TestClient, people: People, settings: Settings) -> None:
    person = people.create("radiologist")
    people.login(person)
    me = client.get("/api/auth/me", headers=person.headers).json()
    expired = tokens.issue_access_token(
        user_id=person.id,
        session_id=me["session_id"],
        role="radiologist",
        secret=settings.secret_key,
        minutes=15,
        now=datetime.now(UTC) - timedelta(minutes=16),
    )
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and response.json()["error"] == "InvalidToken"


def test_logout_revokes_the_session_at_once(client: TestClient, people: People) -> None:
    person = people.create("technician")
    headers = people.login(person)
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert client.post("/api/auth/refresh", headers=headers).status_code == 401


def test_refresh_gives_a_new_access_token_for_the_live_session(client: TestClient, people: People) -> None:
    person = people.create("radiologist")
    headers = people.login(person)
    response = client.post("/api/auth/refresh", headers=headers)
    assert response.status_code == 200
    fresh = {"Authorization": f"Bearer {response.json()['access_token']}"}
    old_session = client.get("/api/auth/me", headers=headers).json()["session_id"]
    assert client.get("/api/auth/me", headers=fresh).json()["session_id"] == old_session


def test_a_password_change_revokes_every_other_session(client: TestClient, people: People, settings: Settings) -> None:
    person = people.create("radiologist")
    first = people.login(person)
    second = people.login(person)
    wrong = client.post(
        "/api/auth/password", json={"current_password": "not my password!", "new_password": NEW_PASSWORD}, headers=first
    )
    assert wrong.status_code == 403
    weak = client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "x"}, headers=first)
    assert weak.status_code == 422 and weak.json()["error"] == "PasswordPolicyError"
    changed = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=first
    )
    assert changed.status_code == 200 and changed.json()["sessions_revoked"] == 1
    assert client.get("/api/auth/me", headers=first).status_code == 200
    assert client.get("/api/auth/me", headers=second).status_code == 401
    assert login(client, person.email, PASSWORD)[0] == 401
    assert login(client, person.email, NEW_PASSWORD)[0] == 200
    outcomes = [e.outcome for e in audit_events(settings, "password.change")]
    assert outcomes == ["failure", "success"]


def test_a_role_change_revokes_the_users_sessions(client: TestClient, people: People, settings: Settings) -> None:
    admin = people.create("admin")
    person = people.create("radiologist")
    admin_headers = people.login(admin)
    headers = people.login(person)
    response = client.post(f"/api/admin/users/{person.id}/role", json={"role": "neurologist"}, headers=admin_headers)
    assert response.status_code == 200 and response.json()["sessions_revoked"] == 1
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    person.role = "neurologist"
    assert client.get("/api/auth/me", headers=people.login(person)).json()["role"] == "neurologist"


def test_a_disabled_account_loses_its_sessions_and_cannot_sign_in(client: TestClient, people: People) -> None:
    admin = people.create("admin")
    person = people.create("technician")
    admin_headers = people.login(admin)
    headers = people.login(person)
    response = client.post(f"/api/admin/users/{person.id}/disable", json={"reason": "left"}, headers=admin_headers)
    assert response.status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    status, body = login(client, person.email)
    assert status == 403 and "disabled" in str(body["detail"])
    assert client.post(f"/api/admin/users/{person.id}/enable", headers=admin_headers).status_code == 200
    assert login(client, person.email)[0] == 200


def test_a_cookie_session_needs_the_csrf_token_for_unsafe_requests(client: TestClient, people: People) -> None:
    person = people.create("radiologist")
    csrf = people.login_response(person)["csrf_token"]
    assert client.cookies.get(tokens.DEV_SESSION_COOKIE)
    me = client.get("/api/auth/me")  # a safe method: the cookie alone is enough
    assert me.status_code == 200 and me.json()["authenticated_by"] == "cookie" and me.json()["csrf_token"] == csrf
    refused = client.post("/api/auth/logout")
    assert refused.status_code == 403 and refused.json()["error"] == "CsrfError"
    assert client.post("/api/auth/logout", headers={tokens.CSRF_HEADER: "forged"}).status_code == 403
    assert client.get("/api/auth/me").status_code == 200  # still signed in
    done = client.post("/api/auth/logout", headers={tokens.CSRF_HEADER: str(csrf)})
    assert done.status_code == 200
    assert client.get("/api/auth/me").status_code == 401


def test_the_cookie_of_a_revoked_session_is_refused(client: TestClient, people: People) -> None:
    person = people.create("radiologist")
    people.login_response(person)
    cookie = client.cookies.get(tokens.DEV_SESSION_COOKIE)
    assert cookie
    with session_scope(people.settings.database) as db:
        from neuronav.db.models import SessionRow

        row = db.query(SessionRow).filter(SessionRow.token_digest == tokens.token_digest(cookie)).one()
        row.revoked_at = datetime.now(UTC)
    assert client.get("/api/auth/me").status_code == 401


# -- second factor enrolment ---------------------------------------------------------------------


def test_totp_enrolment_then_every_sign_in_needs_a_code(client: TestClient, people: People, settings: Settings) -> None:
    person = people.create("radiologist")
    headers = people.login(person)
    started = client.post("/api/auth/totp/enrol", headers=headers)
    assert started.status_code == 200
    secret = started.json()["secret"]
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/")
    wrong = client.post(
        "/api/auth/totp/confirm",
        json={"enrolment_token": started.json()["enrolment_token"], "code": "000000"},
        headers=headers,
    )
    assert wrong.status_code == 400
    other = people.login(Person("radiologist", person.email, person.id))  # another session: token not valid there
    stolen = client.post(
        "/api/auth/totp/confirm",
        json={"enrolment_token": started.json()["enrolment_token"], "code": totp.code_at(secret, totp.current_step())},
        headers=other,
    )
    assert stolen.status_code == 400
    confirmed = client.post(
        "/api/auth/totp/confirm",
        json={"enrolment_token": started.json()["enrolment_token"], "code": totp.code_at(secret, totp.current_step())},
        headers=headers,
    )
    assert confirmed.status_code == 200
    assert user_row(settings, person.email).totp_secret_enc.startswith("nnf1:")  # type: ignore[union-attr]
    assert secret not in (user_row(settings, person.email).totp_secret_enc or "")
    assert client.post("/api/auth/totp/enrol", headers=headers).status_code == 409
    status, body = login(client, person.email)
    assert status == 401 and body["error"] == "SecondFactorRequired"
    person.totp_secret = secret
    assert people.login_response(person)["user"]["totp_enrolled"] is True  # type: ignore[index]
