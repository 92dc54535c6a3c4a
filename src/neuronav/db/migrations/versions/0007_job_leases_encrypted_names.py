"""job leases with a heartbeat; upload file names encrypted

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

* ``analyses.lease_owner``, ``analyses.heartbeat_at``: the process running an analysis holds a lease
  it renews every ``NEURONAV_JOB_HEARTBEAT_S`` seconds; an analysis ``running`` whose heartbeat is
  older than ``NEURONAV_JOB_LEASE_S`` is re-queued (or failed with its reason after the last attempt)
  by any server or worker (:func:`neuronav.workflow.jobs.recover_expired`). Existing rows get no lease:
  a running analysis without one counts as expired from its ``started_at``.
* ``stored_objects.name`` becomes ``TEXT``: it now holds the client's file name encrypted
  (``nnf1:…`` tokens, column-bound to ``stored_objects.name``) instead of the name itself, which
  hospitals often make from the patient's name and birth date.

Existing names are NOT encrypted by this migration: that needs the field key, which is wrapped by the
master key and is not available to Alembic. The application does it right after migrating, in Python
and idempotently (:func:`neuronav.workflow.operations.encrypt_stored_names`, called by the server's
start-up and by ``neuronav db upgrade``); ``neuronav verify`` reports any name still in clear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("stored_objects", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("stored_objects", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=True)
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("lease_owner")
