"""One-time passwords (CLI, demo, an administrator's reset) must be changed at the first sign-in:
until then only the password change, sign-out and /me answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from neuronav.config import Settings, get_settings
from neuronav.db.models import UserRow
from neuronav.db.session import session_scope
from tests.service.conftest import NEW_PASSWORD, PASSWORD, People, Person, audit_events


def must_change(settings: Settings, person: Person) -> bool:
    with session_scope(settings.database) as db:
        row = db.get(UserRow, person.id)
        assert row is not None
        return row.password_must_change


def one_time(people: People, settings: Settings, role: str) -> Person:
    person = people.create(role)
    with session_scope(settings.database) as db:
        row = db.get(UserRow, person.id)
        assert row is not None
        row.password_must_change = True
    return person


def test_sign_in_with_a_one_time_password_then_change_it(
    client: TestClient, people: People, settings: Settings
) -> None:
    person = one_time(people, settings, "radiologist")
    signed = people.login_response(person)
    assert signed["password_change_required"] is True
    user = signed["user"]
    assert isinstance(user, dict) and user["password_change_required"] is True
    headers = {"Authorization": f"Bearer {signed['access_token']}"}
    client.cookies.clear()

    refused = client.get("/api/studies", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "PasswordChangeRequired"
    assert "one-time password" in refused.json()["detail"] and "/api/auth/password" in refused.json()["detail"]
    denied = audit_events(settings, "access.denied")[-1]
    assert denied.outcome == "denied" and denied.actor_id == person.id
    assert denied.detail == {"reason": "password_change_required", "route": "/api/studies", "method": "GET"}
    assert client.post("/api/auth/refresh", headers=headers).status_code == 403
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["password_change_required"] is True

    same = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": PASSWORD}, headers=headers
    )
    assert same.status_code == 422 and "differ" in same.json()["detail"]
    weak = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "abc"}, headers=headers
    )
    assert weak.status_code == 422 and weak.json()["error"] == "PasswordPolicyError"
    assert must_change(settings, person)

    changed = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert not must_change(settings, person)
    assert client.get("/api/studies", headers=headers).status_code == 200  # the same session goes on
    assert audit_events(settings, "password.change")[-1].detail["one_time_password_replaced"] is True
    person.password = NEW_PASSWORD
    assert people.login_response(person)["password_change_required"] is False


def test_sign_out_works_before_the_change(client: TestClient, people: People, settings: Settings) -> None:
    person = one_time(people, settings, "technician")
    headers = people.login(person)
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_an_admin_resets_a_forgotten_password(client: TestClient, people: People, settings: Settings) -> None:
    admin, person = people.create("admin"), people.create("neurologist")
    admin_headers, old_session = people.login(admin), people.login(person)
    for _ in range(5):  # the user has locked themselves out meanwhile
        client.post("/api/auth/login", json={"email": person.email, "password": "not my password at all"})
    assert client.post("/api/auth/login", json={"email": person.email, "password": PASSWORD}).status_code == 429

    reset = client.post(f"/api/admin/users/{person.id}/password/reset", headers=admin_headers)
    assert reset.status_code == 200, reset.text
    body = reset.json()
    temporary = body["one_time_password"]
    assert len(temporary) >= 12 and body["sessions_revoked"] == 1
    assert body["user"]["password_change_required"] is True
    assert client.get("/api/auth/me", headers=old_session).status_code == 401  # sessions revoked
    event = audit_events(settings, "user.password_reset")[-1]
    assert (event.actor_id, event.target_id, event.outcome) == (admin.id, person.id, "success")
    assert temporary not in str(event.detail)

    assert client.post("/api/auth/login", json={"email": person.email, "password": PASSWORD}).status_code == 401
    person.password = temporary  # and the lockout is cleared
    signed = people.login_response(person)
    assert signed["password_change_required"] is True

    own = client.post(f"/api/admin/users/{admin.id}/password/reset", headers=admin_headers)
    assert own.status_code == 403
    assert audit_events(settings, "user.password_reset")[-1].outcome == "denied"
    radiologist = people.create("radiologist")
    refused = client.post(f"/api/admin/users/{person.id}/password/reset", headers=people.login(radiologist))
    assert refused.status_code == 403 and refused.json()["error"] == "PermissionDenied"


def test_the_cli_gives_a_one_time_password(settings: Settings) -> None:
    from neuronav.cli import app as cli_app

    get_settings.cache_clear()
    create = ["users", "create", "cli.made@hospital.example", "--role", "radiologist", "--name", "Dr Cli"]
    try:
        refused = CliRunner().invoke(cli_app, create)  # a new database: its tables are made explicitly
        upgraded = CliRunner().invoke(cli_app, ["db", "upgrade"])
        result = CliRunner().invoke(cli_app, create)
    finally:
        get_settings.cache_clear()
    assert refused.exit_code != 0 and "neuronav db upgrade" in str(refused.exception)
    assert upgraded.exit_code == 0, upgraded.output
    assert result.exit_code == 0, result.output
    assert "one-time password" in result.output and "changed at the first sign-in" in result.output
    with session_scope(settings.database) as db:
        row = db.query(UserRow).filter(UserRow.email == "cli.made@hospital.example").one()
        assert row.password_must_change is True


def test_the_demo_accounts_get_one_time_passwords(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronav.workflow import operations

    made: list[dict[str, Any]] = []

    class StopError(Exception):
        pass

    def create_account(*args: Any, **kwargs: Any) -> str:
        made.append(kwargs)
        if len(made) == 4:
            raise StopError  # the four accounts are what this test is about, not the phantom analysis
        return "u"

    monkeypatch.setattr(operations, "create_account", create_account)
    with pytest.raises(StopError):
        operations.demo_setup(settings)
    assert len(made) == 4 and all(kwargs["must_change_password"] is True for kwargs in made)
