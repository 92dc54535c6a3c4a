"""The database: SQLAlchemy 2.0 models (:mod:`.models`), engines and sessions (:mod:`.session`) and
Alembic migrations (``migrations/``), for SQLite (the embedded default) and PostgreSQL."""
