"""Engines, sessions and migrations.

``migrate(url)`` brings any database to the newest schema with Alembic (the same migrations for SQLite
and PostgreSQL). It is called by ``neuronav db upgrade`` and at the service's start-up, and nowhere
else: every other command first checks, without writing anything, that the database is at the schema
this version needs (:func:`require_current`), and stops with the command that fixes it when it is not.
Read-only commands (``neuronav audit verify``, ``audit head``, ``verify``) therefore never change a
database, not even a new one.

A SQLite database (and its ``-wal`` / ``-shm`` files) is private to the service's account: created
0600, in a folder created 0700; an existing file readable by others is reduced to 0600
(:func:`private_sqlite_file`, from :func:`make_engine`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from neuronav.errors import NotFoundError, SchemaError

RowT = TypeVar("RowT")
MIGRATIONS = Path(__file__).with_name("migrations")


PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_sqlite_file(path: Path) -> None:
    """Make the SQLite database ``path`` readable by its owner only, before SQLite opens it: its folder
    made 0700 when it is new, the file created 0600 (an empty file is a new database to SQLite) or an
    existing one, and its ``-wal``, ``-shm`` and ``-journal`` files, reduced to 0600. SQLite creates
    those companions with the database file's mode, so they stay private too."""
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                os.chmod(file, PRIVATE_FILE)
        except FileNotFoundError:
            continue


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            private_sqlite_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # take the write lock at the start: a transaction that reads, then writes (the audit
            # chain, job claims) never works from a stale snapshot
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (creating it when empty)."""
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite folder
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The schema revision this version of NeuroNav needs (the newest migration)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise SchemaError("no database migrations are installed with this NeuroNav")
    return str(head)


def schema_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None: no NeuroNav tables yet), read without writing:
    a SQLite file that does not exist is not created."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import OperationalError

    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            if not Path(path).is_file():
                return None
            url = f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise SchemaError(f"cannot read the database's schema version ({type(exc.orig).__name__})") from exc
    finally:
        engine.dispose()


def require_current(url: str) -> None:
    """Refuse a database that is not at :func:`head_revision` (:class:`SchemaError` names the fix)."""
    have, want = schema_revision(url), head_revision()
    if have == want:
        return
    if have is None:
        raise SchemaError(
            "the database has no NeuroNav tables yet: run `neuronav db upgrade` (or start `neuronav serve`)"
        )
    raise SchemaError(
        f"the database is at schema {have}, this NeuroNav needs {want}: run `neuronav db upgrade` "
        "(after a backup: `neuronav backup DIR`)"
    )


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=make_engine(url), expire_on_commit=False)


def get_row(db: Session, model: type[RowT], key: Any, what: str) -> RowT:
    """The row of ``model`` with primary key ``key``, or :class:`NotFoundError` ("no <what> <key>")."""
    row = db.get(model, key)
    if row is None:
        raise NotFoundError(f"no {what} {key}")
    return row


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on any error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
