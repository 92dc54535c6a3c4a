"""segmentation versions: a radiologist's corrections of an analysis's label map

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

``segmentation_versions``: version 2, 3, … of an analysis's label map, edited by a radiologist (lesions
accepted or rejected, brush and eraser in the viewer), with its author, time, parent version, what
changed and the stored (encrypted) NIfTI. Version 1 is the AI's ``segmentation.nii.gz``, kept untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segmentation_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("analysis_id", sa.String(length=32), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("author_role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("report_id", sa.String(length=20), nullable=True),
        sa.Column("report_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analyses.id"],
            name=op.f("fk_segmentation_versions_analysis_id_analyses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_segmentation_versions_author_id_users")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_segmentation_versions_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segmentation_versions")),
        sa.UniqueConstraint("analysis_id", "version", name=op.f("uq_segmentation_versions_analysis_id")),
    )
    op.create_index(
        op.f("ix_segmentation_versions_analysis_id"), "segmentation_versions", ["analysis_id"], unique=False
    )
    op.create_index(op.f("ix_segmentation_versions_study_id"), "segmentation_versions", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_segmentation_versions_study_id"), table_name="segmentation_versions")
    op.drop_index(op.f("ix_segmentation_versions_analysis_id"), table_name="segmentation_versions")
    op.drop_table("segmentation_versions")
