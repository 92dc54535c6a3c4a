"""Service fixtures: settings in a temporary data folder, the app, a TestClient, and people of every role.

``database_url`` is a fresh SQLite file; a test module overrides it (``params`` with the
``postgres`` mark) to run on a fresh PostgreSQL database as well, made by ``postgres_url`` in ``tests/conftest.py``
(it (it fails, never skips, when the server is not reachable).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from neuronav.config import Settings, load_settings
from neuronav.db.models import AuditEventRow, SessionRow, UserRow
from neuronav.db.session import session_scope
from neuronav.security import tokens, totp
from neuronav.service import create_app
from neuronav.workflow.operations import create_account

PASSWORD = "quiet river stone lantern"
NEW_PASSWORD = "amber meadow copper kettle"
ROLES = ("technician", "radiologist", "neurologist", "admin")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Settings:
    monkeypatch.setenv("NEURONAV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NEURONAV_ENV", "development")
    monkeypatch.setenv("NEURONAV_DATABASE_URL", database_url)
    monkeypatch.setenv("NEURONAV_MAX_UPLOAD_BYTES", "100000")
    for name in ("NEURONAV_STORAGE_DIR", "NEURONAV_MASTER_KEY", "NEURONAV_SECRET_KEY", "NEURONAV_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    return load_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@dataclass
class Person:
    role: str
    email: str
    id: str
    password: str = PASSWORD
    totp_secret: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class People:
    """Makes accounts (through the bootstrap) and signs them in (through the API)."""

    def __init__(self, settings: Settings, client: TestClient) -> None:
        self.settings = settings
        self.client = client

    def create(
        self,
        role: str,
        *,
        email: str | None = None,
        active: bool = True,
        totp_enrolled: bool | None = None,
        password: str = PASSWORD,
    ) -> Person:
        """An account; active ones are verified, and admins (by default) have TOTP enrolled."""
        email = email or f"{role}-{uuid.uuid4().hex[:6]}@hospital.example"
        enrol = role == "admin" if totp_enrolled is None else totp_enrolled
        secret = totp.new_secret() if enrol else None
        user_id = create_account(
            self.settings,
            email,
            password,
            role,
            display_name=f"Dr {role.title()}",
            active=active,
            licence="GMC 1234567" if active else None,
            totp_secret=secret,
        )
        return Person(role=role, email=email, id=user_id, password=password, totp_secret=secret)

    def code(self, person: Person) -> str:
        """A TOTP code that is accepted now (the replay guard is reset: tests sign in many times a step)."""
        assert person.totp_secret is not None
        with session_scope(self.settings.database) as db:
            user = db.get(UserRow, person.id)
            assert user is not None
            user.totp_last_step = None
        return totp.code_at(person.totp_secret, totp.current_step())

    def login_response(self, person: Person, **extra: object) -> dict[str, object]:
        body: dict[str, object] = {"email": person.email, "password": person.password, **extra}
        if person.totp_secret is not None and "totp_code" not in extra:
            body["totp_code"] = self.code(person)
        response = self.client.post("/api/auth/login", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    def login(self, person: Person, *, keep_cookie: bool = False) -> dict[str, str]:
        """Sign in through the API; the bearer headers (the cookie is dropped unless ``keep_cookie``)."""
        token = self.login_response(person)["access_token"]
        if not keep_cookie:
            self.client.cookies.clear()
        person.headers = {"Authorization": f"Bearer {token}"}
        return person.headers

    def direct_headers(self, person: Person) -> dict[str, str]:
        """Bearer headers of a new session made in the database (fast; skips the password check)."""
        now = datetime.now(UTC)
        with session_scope(self.settings.database) as db:
            row = SessionRow(
                user_id=person.id,
                token_digest=tokens.token_digest(tokens.new_session_token()),
                created_at=now,
                expires_at=tokens.session_expiry(now, hours=1),
                client="testclient",
                mfa=person.totp_secret is not None,
            )
            db.add(row)
            db.flush()
            session_id = row.id
        token = tokens.issue_access_token(
            user_id=person.id, session_id=session_id, role=person.role, secret=self.settings.secret_key
        )
        return {"Authorization": f"Bearer {token}"}

    def staff(self) -> dict[str, Person]:
        """One signed-in person of each role (headers set)."""
        people = {role: self.create(role) for role in ROLES}
        for person in people.values():
            self.login(person)
        return people


@pytest.fixture
def people(settings: Settings, client: TestClient) -> People:
    return People(settings, client)


@pytest.fixture
def staff(people: People) -> dict[str, Person]:
    return people.staff()


def audit_events(settings: Settings, action: str | None = None) -> list[AuditEventRow]:
    """The stored audit events (oldest first), optionally of one action."""
    with session_scope(settings.database) as db:
        stmt = select(AuditEventRow).order_by(AuditEventRow.seq)
        if action is not None:
            stmt = stmt.where(AuditEventRow.action == action)
        events = list(db.scalars(stmt))
        db.expunge_all()
        return events
