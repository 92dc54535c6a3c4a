"""The patient's identity of a stored study, decrypted for a clinical output (PHI).

Callers authorise first (a role allowed to read the study); this module only decrypts. The CLI path,
straight from the DICOM headers, is :func:`neuronav.report.identity.patient_from`.
"""

from __future__ import annotations

from neuronav.config import Settings
from neuronav.db.models import StudyRow
from neuronav.report.identity import make_patient
from neuronav.report.model import Patient
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore


def patient_of(store: ObjectStore, study: StudyRow, settings: Settings) -> Patient | None:
    """``study``'s patient as stored (encrypted columns), with the configured assigning authority as the
    MRN's issuer when the DICOM named none; None when the study carried no identity."""
    key = store.field_key()

    def dec(value: str | None, column: str) -> str | None:
        return decrypt_field(value, key, column) if value else None

    return make_patient(
        name=dec(study.patient_name_enc, "studies.patient_name"),
        mrn=dec(study.patient_id_enc, "studies.patient_id"),
        issuer=dec(study.patient_id_issuer_enc, "studies.patient_id_issuer"),
        birth_date=dec(study.patient_birth_date_enc, "studies.patient_birth_date"),
        sex=dec(study.patient_sex_enc, "studies.patient_sex"),
        accession_number=dec(study.accession_enc, "studies.accession"),
        referring_physician=dec(study.referring_physician_enc, "studies.referring_physician"),
        assigning_authority=settings.assigning_authority,
    )
