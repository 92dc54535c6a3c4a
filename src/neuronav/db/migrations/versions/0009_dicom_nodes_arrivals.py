"""DICOM node registry and studies arriving by C-STORE

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

* ``dicom_nodes``: the DICOM nodes (AE title, host, port; whether they may send to us; which results
  go to them and when; each node's service account in ``users``).
* ``dicom_arrivals``: a study arriving instance by instance over DICOM, until it has been stable for
  ``NEURONAV_DICOM_STABLE_AGE`` seconds (then handed to the upload workflow, or kept with a reason).
* ``dicom_instances``: one row per instance durably stored (keyed digest of its SOPInstanceUID,
  unique: an instance sent again is counted once), pointing at its encrypted object.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_nodes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("incoming", sa.Boolean(), nullable=False),
        sa.Column("send", sa.JSON(), nullable=False),
        sa.Column("send_on", sa.JSON(), nullable=False),
        sa.Column("default_route", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_dicom_nodes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_nodes")),
        sa.UniqueConstraint("name", name=op.f("uq_dicom_nodes_name")),
    )
    op.create_table(
        "dicom_arrivals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("study_uid_digest", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"], ["dicom_nodes.id"], name=op.f("fk_dicom_arrivals_node_id_dicom_nodes"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_dicom_arrivals_study_id_studies"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_arrivals")),
    )
    op.create_index("ix_dicom_arrivals_state_last", "dicom_arrivals", ["state", "last_at"])
    op.create_index(op.f("ix_dicom_arrivals_study_uid_digest"), "dicom_arrivals", ["study_uid_digest"])
    op.create_table(
        "dicom_instances",
        sa.Column("sop_uid_digest", sa.String(length=64), nullable=False),
        sa.Column("arrival_id", sa.String(length=32), nullable=False),
        sa.Column("object_key", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["arrival_id"],
            ["dicom_arrivals.id"],
            name=op.f("fk_dicom_instances_arrival_id_dicom_arrivals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["object_key"], ["stored_objects.key"], name=op.f("fk_dicom_instances_object_key_stored_objects")
        ),
        sa.PrimaryKeyConstraint("sop_uid_digest", name=op.f("pk_dicom_instances")),
    )
    op.create_index(op.f("ix_dicom_instances_arrival_id"), "dicom_instances", ["arrival_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dicom_instances_arrival_id"), table_name="dicom_instances")
    op.drop_table("dicom_instances")
    op.drop_index(op.f("ix_dicom_arrivals_study_uid_digest"), table_name="dicom_arrivals")
    op.drop_index("ix_dicom_arrivals_state_last", table_name="dicom_arrivals")
    op.drop_table("dicom_arrivals")
    op.drop_table("dicom_nodes")
