"""Alembic migrations build the same schema as the models on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, select

from neuronav.db.models import Base, StudyRow, UserRow
from neuronav.db.session import make_engine, migrate, session_scope


def test_migrations_create_every_table_and_column(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # idempotent
    engine = make_engine(db_url)
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in insp.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_migrations_leave_no_model_change_unmigrated(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:

        def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
            return not (type_ == "index" and (name or "").endswith("_trgm"))  # PostgreSQL-only, migration-made

        context = MigrationContext.configure(conn, opts={"include_object": include})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models changed without a migration: {diff}"


def test_rows_round_trip(db_url: str) -> None:
    migrate(db_url)
    with session_scope(db_url) as s:
        user = UserRow(email="tech@example.org", display_name="T", role="technician", password_hash="x")
        s.add(user)
        s.flush()
        s.add(StudyRow(content_sha256="a" * 64, uploaded_by=user.id, sequences={"T1c": {"n": 192}}))
    with session_scope(db_url) as s:
        study = s.scalars(select(StudyRow)).one()
        assert study.sequences == {"T1c": {"n": 192}} and study.state == "received"
        assert study.uploaded_at.tzinfo is not None or db_url.startswith("sqlite")
