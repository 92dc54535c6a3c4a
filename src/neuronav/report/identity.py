"""The patient's identity for clinical outputs, from what ingest read in the DICOM (PHI).

The service path (encrypted columns, decrypted for an authorised reader) is
:func:`neuronav.workflow.identity.patient_of`; this is the CLI path, straight from the DICOM headers.
"""

from __future__ import annotations

from neuronav.ingest.model import PatientIdentity
from neuronav.report.model import Patient

SEXES = frozenset({"M", "F", "O"})


def patient_from(identity: PatientIdentity | None, assigning_authority: str | None = None) -> Patient | None:
    """A :class:`Patient` from the DICOM identity; None when the study carries none (e.g. NIfTI input).
    The MRN's issuer is the DICOM IssuerOfPatientID, else ``assigning_authority`` (when the study has an id)."""
    if identity is None:
        return None
    return make_patient(
        name=identity.patient_name,
        mrn=identity.patient_id,
        issuer=identity.issuer_of_patient_id,
        birth_date=identity.patient_birth_date,
        sex=identity.patient_sex,
        accession_number=identity.accession_number,
        referring_physician=identity.referring_physician_name,
        assigning_authority=assigning_authority,
    )


def make_patient(
    *,
    name: str | None,
    mrn: str | None,
    issuer: str | None,
    birth_date: str | None,
    sex: str | None,
    accession_number: str | None,
    referring_physician: str | None,
    assigning_authority: str | None = None,
) -> Patient | None:
    """One normalisation for both paths: blanks are None, the sex is M/F/O or None, the birth date the
    DICOM DA's 8 digits or None, the issuer falls back to ``assigning_authority`` when there is an MRN."""

    def clean(value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    mrn_ = clean(mrn)
    sex_ = (clean(sex) or "").upper()
    birth = clean(birth_date)
    patient = Patient(
        name=clean(name),
        mrn=mrn_,
        mrn_issuer=(clean(issuer) or clean(assigning_authority)) if mrn_ else None,
        birth_date=birth if birth and len(birth) == 8 and birth.isdigit() else None,
        sex=sex_ if sex_ in SEXES else None,
        accession_number=clean(accession_number),
        referring_physician=clean(referring_physician),
    )
    return None if not any(patient.model_dump().values()) else patient
