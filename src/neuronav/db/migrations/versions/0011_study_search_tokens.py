"""worklist search by identity: the keyed blind index of each study's MRN, accession and name

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

``study_search_tokens`` (token, study_id): HMAC tokens of the normalised MRN, accession number and name
prefixes (:mod:`neuronav.security.blind_index`), so the worklist finds a study by them without
decrypting every row. The tokens need the site's keys, which a migration does not hold: studies
received before this revision are indexed by ``neuronav db reindex-search`` (run it once after the
upgrade; it is idempotent), new studies when they are received.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_search_tokens",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_study_search_tokens_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token", "study_id", name=op.f("pk_study_search_tokens")),
    )
    op.create_index(op.f("ix_study_search_tokens_study_id"), "study_search_tokens", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_study_search_tokens_study_id"), table_name="study_search_tokens")
    op.drop_table("study_search_tokens")
