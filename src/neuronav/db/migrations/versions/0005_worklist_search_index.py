"""worklist search: one trigram index on the searched text (PostgreSQL)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

The worklist search (``GET /api/studies?q=``) now matches ``lower(pseudonym ␟ description)`` with a
plain LIKE (:func:`neuronav.service.routes.studies._search_text`) instead of two ILIKEs joined by OR:
one GIN trigram index on that expression serves it, and the recheck of the rows it finds is one LIKE
instead of two ILIKEs. The two per-column indexes of 0003 served only the old search and are dropped
(they are recreated by the downgrade). The expression here must stay the one the route writes: the
planner uses an expression index only for the same expression. Where pg_trgm is not installed
(0003 could not create it), nothing changes and the search stays unindexed. SQLite needs nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEARCH_TEXT = "lower(coalesce(patient_pseudonym, '') || chr(31) || coalesce(description, ''))"


def _has_trgm() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(
        bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first()
    )


def upgrade() -> None:
    if not _has_trgm():
        return
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_studies_search_trgm ON studies "
        f"USING gin (({SEARCH_TEXT}) gin_trgm_ops) WITH (fastupdate = off)"
    )
    op.execute("DROP INDEX IF EXISTS ix_studies_pseudonym_trgm")
    op.execute("DROP INDEX IF EXISTS ix_studies_description_trgm")


def downgrade() -> None:
    if not _has_trgm():
        return
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_studies_pseudonym_trgm ON studies USING gin (patient_pseudonym gin_trgm_ops)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS ix_studies_description_trgm ON studies USING gin (description gin_trgm_ops)")
    op.execute("DROP INDEX IF EXISTS ix_studies_search_trgm")
