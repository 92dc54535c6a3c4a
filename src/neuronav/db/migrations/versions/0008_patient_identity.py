"""the rest of the patient identity clinical outputs carry

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

``studies.patient_sex_enc``, ``patient_id_issuer_enc`` (DICOM IssuerOfPatientID), ``accession_enc``,
``referring_physician_enc``: encrypted like the name, id and birth date (column-bound field tokens),
read by :func:`neuronav.workflow.identity.patient_of` for the clinical outputs (PDF, HL7 v2, FHIR, the
worklist). Studies received before this revision have them empty: their identity is the name, id and
birth date already stored (the DICOM is re-read when the study is analysed again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("patient_sex_enc", "patient_id_issuer_enc", "accession_enc", "referring_physician_enc")


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
