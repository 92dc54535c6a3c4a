"""worklist search: trigram indexes on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

The worklist search is a case-insensitive substring match (ILIKE '%q%') on the pseudonym and the
description. On PostgreSQL, pg_trgm GIN indexes serve it; where the extension cannot be created
(no privilege), the search still works, unindexed. SQLite needs nothing (its scans are fast at this size).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql("SAVEPOINT trgm")
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception:  # no privilege: keep the unindexed search
        bind.exec_driver_sql("ROLLBACK TO SAVEPOINT trgm")
        return
    bind.exec_driver_sql("RELEASE SAVEPOINT trgm")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_studies_pseudonym_trgm ON studies USING gin (patient_pseudonym gin_trgm_ops)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ix_studies_description_trgm ON studies USING gin (description gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_studies_description_trgm")
    op.execute("DROP INDEX IF EXISTS ix_studies_pseudonym_trgm")
