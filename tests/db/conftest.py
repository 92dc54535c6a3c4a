"""Database fixtures: a fresh SQLite file, and a fresh PostgreSQL database on the real server.

The PostgreSQL tests fail (never skip) when the server is not reachable: CI runs them against the
PostgreSQL the machine starts (127.0.0.1:5432, trust auth); NEURONAV_TEST_POSTGRES_URL overrides the
server address (``postgresql+psycopg://user@host:port``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = os.environ.get("NEURONAV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'neuronav.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    import psycopg

    name = f"neuronav_test_{uuid.uuid4().hex[:12]}"
    admin = SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {SERVER} ({exc}); CI starts it on 127.0.0.1:5432")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        from neuronav.db.session import session_factory

        for factory in list(session_factory.cache_info() and [session_factory]):
            factory.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both databases."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url
