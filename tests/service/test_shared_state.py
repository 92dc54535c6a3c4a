"""Throttles and break-glass grants live in the database: two server processes (two apps on one
database) share them, concurrent failures are all counted, and both expire. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from neuronav.config import Settings
from neuronav.db.models import BreakGlassGrantRow, ThrottleRow
from neuronav.db.session import migrate, session_scope
from neuronav.security import throttle
from neuronav.service import create_app
from neuronav.workflow import throttles
from tests.service.conftest import PASSWORD, People, audit_events


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Overrides the conftest fixture: each test of this module runs on both databases."""
    if request.param == "sqlite":
        tmp_path = request.getfixturevalue("tmp_path")
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def other(settings: Settings, client: TestClient) -> Iterator[TestClient]:
    """A second app on the same database: another server process."""
    with TestClient(create_app(settings)) as second:
        yield second


def fail_login(client: TestClient, email: str) -> int:
    response = client.post("/api/auth/login", json={"email": email, "password": "wrong password, surely"})
    client.cookies.clear()
    return response.status_code


def expire_lock(settings: Settings, scope: throttles.Scope, key: str) -> None:
    """Move a lock's end into the past, as if its time had run out."""
    with session_scope(settings.database) as db:
        row = db.get(ThrottleRow, (scope, throttles.key_digest(scope, key)))
        assert row is not None and row.locked_until is not None
        row.locked_until = datetime.now(UTC) - timedelta(seconds=1)


def test_a_lockout_made_through_one_process_holds_in_the_other(
    client: TestClient, other: TestClient, settings: Settings
) -> None:
    name = "nobody@hospital.example"  # no such account: its counter is in the throttles table
    statuses = [fail_login(client if i % 2 else other, name) for i in range(5)]
    assert statuses == [401] * 5
    for app_client in (client, other):
        locked = app_client.post("/api/auth/login", json={"email": name, "password": "x"})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 800
        assert locked.json()["error"] == "AccountLocked"
    with session_scope(settings.database) as db:
        rows = list(db.scalars(select(ThrottleRow).where(ThrottleRow.scope == "account")))
        assert [r.key_digest for r in rows] == [throttles.key_digest("account", name)]  # a digest, not the name
        assert rows[0].lockouts == 1

    expire_lock(settings, "account", name)
    assert fail_login(other, name) == 401  # the lockout has ended: a plain wrong password again


def test_the_address_throttle_is_shared_and_expires(
    client: TestClient, other: TestClient, people: People, settings: Settings
) -> None:
    person = people.create("radiologist")
    for i in range(throttle.ADDRESS_POLICY.max_failures):  # a new name each time: only the address counts up
        assert fail_login(client if i % 2 else other, f"guess{i}@hospital.example") == 401
    body = {"email": person.email, "password": PASSWORD}
    for app_client in (client, other):
        refused = app_client.post("/api/auth/login", json=body)
        assert refused.status_code == 429, refused.text  # even the right password, from this address
    assert audit_events(settings, "login")[-1].detail["reason"] == "locked (address locked)"

    expire_lock(settings, "address", "testclient")
    assert other.post("/api/auth/login", json=body).status_code == 200


def test_concurrent_failures_are_all_counted(settings: Settings) -> None:
    migrate(settings.database)
    n = 8
    now = datetime.now(UTC)
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one_failure() -> None:
        try:
            barrier.wait()
            with session_scope(settings.database) as db:
                throttles.update(
                    db,
                    "address",
                    "10.0.0.7",
                    lambda s: throttle.record_failure(s, throttle.ADDRESS_POLICY, now=now),
                    now=now,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_failure) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with session_scope(settings.database) as db:
        assert throttles.load(db, "address", "10.0.0.7").failures == n


def test_stale_throttle_rows_are_pruned(settings: Settings) -> None:
    migrate(settings.database)
    old = datetime.now(UTC) - timedelta(days=2)
    with session_scope(settings.database) as db:
        throttles.update(
            db,
            "account",
            "old@x.example",
            lambda s: throttle.record_failure(s, throttle.ACCOUNT_POLICY, now=old),
            now=old,
        )
    with session_scope(settings.database) as db:
        assert throttles.load(db, "account", "old@x.example").failures == 1
        throttles.update(db, "address", "10.0.0.8", lambda s: throttle.record_failure(s, throttle.ADDRESS_POLICY))
    with session_scope(settings.database) as db:
        assert throttles.load(db, "account", "old@x.example") == throttle.ThrottleState()
        assert throttles.load(db, "address", "10.0.0.8").failures == 1


def test_registration_is_rate_limited_per_address_across_processes(
    client: TestClient, other: TestClient, settings: Settings
) -> None:
    def register(app_client: TestClient, n: int, password: str = PASSWORD) -> int:
        body = {
            "email": f"new{n}@hospital.example",
            "password": password,
            "display_name": "Dr N",
            "role": "neurologist",
        }
        return app_client.post("/api/auth/register", json=body).status_code

    limit = throttle.REGISTRATION_POLICY.max_failures
    assert register(client, 0, password="short") == 422  # refused attempts count too
    statuses = [register(client if n % 2 else other, n) for n in range(1, limit)]
    assert statuses == [202] * (limit - 1)
    for app_client in (client, other):
        body = {"email": "late@hospital.example", "password": PASSWORD, "display_name": "Dr L", "role": "neurologist"}
        refused = app_client.post("/api/auth/register", json=body)
        assert refused.status_code == 429 and refused.json()["error"] == "RateLimited"
        assert "registrations" in refused.json()["detail"]
        assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    denied = [e for e in audit_events(settings, "user.register") if e.outcome == "denied"]
    assert len(denied) == 2 and denied[0].detail["reason"] == "rate limited" and denied[0].actor_id is None
    with session_scope(settings.database) as db:
        assert db.scalar(select(ThrottleRow).where(ThrottleRow.scope == "registration")) is not None

    expire_lock(settings, "registration", "testclient")
    assert register(other, 99) == 202


def test_a_break_glass_opened_through_one_process_holds_in_the_other_until_it_expires(
    client: TestClient, other: TestClient, people: People, settings: Settings
) -> None:
    admin = people.create("admin")
    headers = people.login(admin)
    assert other.get("/api/studies", headers=headers).status_code == 403
    opened = client.post("/api/admin/breakglass", json={"reason": "Emergency: on-call review"}, headers=headers)
    assert opened.status_code == 201
    grant_id = opened.json()["breakglass_id"]
    assert other.get("/api/admin/breakglass", headers=headers).json()["breakglass_id"] == grant_id
    assert other.get("/api/studies", headers=headers).status_code == 200  # read through the grant
    assert other.get("/api/auth/me", headers=headers).json()["breakglass"]["breakglass_id"] == grant_id
    access = audit_events(settings, "breakglass.access")
    assert access and access[-1].detail["breakglass_id"] == grant_id

    # closed through the second process: the first one knows at once
    assert other.delete("/api/admin/breakglass", headers=headers).json() == {"closed": True}
    assert client.get("/api/studies", headers=headers).status_code == 403

    # a new grant, then its hour runs out
    again = client.post("/api/admin/breakglass", json={"reason": "Emergency: second look"}, headers=headers)
    assert again.status_code == 201
    with session_scope(settings.database) as db:
        db.execute(update(BreakGlassGrantRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    for app_client in (client, other):
        assert app_client.get("/api/studies", headers=headers).status_code == 403
        assert app_client.get("/api/admin/breakglass", headers=headers).json() is None
        assert app_client.get("/api/auth/me", headers=headers).json()["breakglass"] is None
    assert other.delete("/api/admin/breakglass", headers=headers).json() == {"closed": False}


def test_signing_out_closes_the_sessions_break_glass(
    client: TestClient, other: TestClient, people: People, settings: Settings
) -> None:
    admin = people.create("admin")
    headers = people.login(admin)
    assert (
        client.post("/api/admin/breakglass", json={"reason": "Emergency: on-call review"}, headers=headers).status_code
        == 201
    )
    assert other.post("/api/auth/logout", headers=headers).status_code == 200
    with session_scope(settings.database) as db:
        assert db.scalars(select(BreakGlassGrantRow)).all() == []
