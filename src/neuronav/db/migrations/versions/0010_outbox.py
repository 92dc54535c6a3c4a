"""the outbox (destinations, deliveries) and HL7 orders (orders, rejected messages)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

* ``destinations``: where reports go (kind hl7 | fhir, later dicom | dicomweb), its configuration (no
  secrets), its secrets encrypted (``secrets_enc``, column-bound to ``destinations.secrets``), which outputs,
  on which events (preliminary / final / amendment), clinical or pseudonymous.
* ``deliveries``: one output of one report version to one destination, queued → sending → delivered |
  failed, with attempts, the next attempt (back-off), the peer's status and words, and a unique
  idempotency key (destination, report, version, output) so a version is never delivered twice.
* ``orders``: imaging orders received over HL7 (ORM^O01, OMI^O23), identity encrypted, accession and
  MRN also as keyed digests to match a study to its order; ``hl7_rejected``: refused messages, encrypted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets_enc", sa.Text(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("identified", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
        sa.UniqueConstraint("name", name=op.f("uq_destinations_name")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("destination_id", sa.String(length=32), nullable=False),
        sa.Column("report_id", sa.String(length=20), nullable=False),
        sa.Column("report_version", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=True),
        sa.Column("output", sa.String(length=20), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("peer_status", sa.String(length=40), nullable=True),
        sa.Column("peer_text", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_deliveries_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_deliveries_idempotency_key")),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_deliveries_destination_id"), "deliveries", ["destination_id"], unique=False)
    op.create_index(op.f("ix_deliveries_report_id"), "deliveries", ["report_id"], unique=False)
    op.create_index(op.f("ix_deliveries_study_id"), "deliveries", ["study_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("placer_number", sa.String(length=64), nullable=True),
        sa.Column("placer_authority", sa.String(length=64), nullable=True),
        sa.Column("filler_number", sa.String(length=64), nullable=True),
        sa.Column("filler_authority", sa.String(length=64), nullable=True),
        sa.Column("accession_digest", sa.String(length=64), nullable=True),
        sa.Column("accession_enc", sa.Text(), nullable=True),
        sa.Column("mrn_digest", sa.String(length=64), nullable=True),
        sa.Column("mrn_enc", sa.Text(), nullable=True),
        sa.Column("mrn_issuer", sa.String(length=64), nullable=True),
        sa.Column("patient_name_enc", sa.Text(), nullable=True),
        sa.Column("birth_date_enc", sa.Text(), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("procedure", sa.String(length=200), nullable=True),
        sa.Column("scheduled_date", sa.String(length=8), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=True),
        sa.Column("message_type", sa.String(length=20), nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_orders_study_id_studies"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_placer_number"), "orders", ["placer_number"], unique=False)
    op.create_index(op.f("ix_orders_accession_digest"), "orders", ["accession_digest"], unique=False)
    op.create_index(op.f("ix_orders_mrn_digest"), "orders", ["mrn_digest"], unique=False)
    op.create_index(op.f("ix_orders_study_id"), "orders", ["study_id"], unique=False)
    op.create_table(
        "hl7_rejected",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_enc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_rejected")),
    )
    op.create_index(op.f("ix_hl7_rejected_received_at"), "hl7_rejected", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hl7_rejected_received_at"), table_name="hl7_rejected")
    op.drop_table("hl7_rejected")
    op.drop_index(op.f("ix_orders_study_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_mrn_digest"), table_name="orders")
    op.drop_index(op.f("ix_orders_accession_digest"), table_name="orders")
    op.drop_index(op.f("ix_orders_placer_number"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_deliveries_study_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_report_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_destination_id"), table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("destinations")
