"""throttles and break-glass grants in the database; forced password change

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

* ``throttles``: the sign-in counters per client address and per login name without an account, and
  the registration counter per client address (before this, they lived in the server process).
* ``breakglass_grants``: the open break-glass of a session, with its expiry (before: in the process).
* ``users.password_must_change``: set for a one-time password (CLI, demo, admin reset); existing
  accounts get false.

Plain tables, columns and indexes: the same on SQLite (batch mode) and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttles",
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key_digest", name=op.f("pk_throttles")),
    )
    with op.batch_alter_table("throttles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_throttles_last_failure"), ["last_failure"], unique=False)

    op.create_table(
        "breakglass_grants",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("breakglass_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_breakglass_grants_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_breakglass_grants_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_breakglass_grants")),
        sa.UniqueConstraint("breakglass_id", name=op.f("uq_breakglass_grants_breakglass_id")),
    )
    with op.batch_alter_table("breakglass_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_breakglass_grants_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_breakglass_grants_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_must_change", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_must_change")

    with op.batch_alter_table("breakglass_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_breakglass_grants_user_id"))
        batch_op.drop_index(batch_op.f("ix_breakglass_grants_expires_at"))
    op.drop_table("breakglass_grants")

    with op.batch_alter_table("throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_throttles_last_failure"))
    op.drop_table("throttles")
