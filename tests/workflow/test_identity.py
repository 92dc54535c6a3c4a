"""The patient's identity: read from the DICOM, stored encrypted, decrypted for clinical outputs, and never
kept in a stored report version."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest

from neuronav.db.session import session_scope
from neuronav.ingest.model import PatientIdentity
from neuronav.report.identity import patient_from
from neuronav.workflow.identity import patient_of
from neuronav.workflow.uploads import Upload, receive_upload
from tests.workflow.conftest import Env


def first_header(phantom_zip: Path) -> pydicom.Dataset:
    with zipfile.ZipFile(phantom_zip) as zf:
        return pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])), stop_before_pixels=True)


def test_an_uploaded_study_carries_the_identity_the_hospital_matches_on(env: Env, phantom_zip: Path) -> None:
    ds = first_header(phantom_zip)
    with session_scope(env.settings.database) as db:
        study = receive_upload(
            db,
            env.store,
            env.settings,
            user_id=env.user_id,
            uploads=[Upload("s.zip", io.BytesIO(phantom_zip.read_bytes()))],
        ).study
        for column in (study.accession_enc, study.referring_physician_enc, study.patient_sex_enc):
            assert column and str(ds.AccessionNumber) not in column  # stored encrypted
        patient = patient_of(env.store, study, env.settings)
    assert patient is not None
    assert patient.name == str(ds.PatientName)
    assert patient.mrn == ds.PatientID and patient.mrn_issuer == ds.IssuerOfPatientID
    assert patient.birth_date == ds.PatientBirthDate and patient.sex == ds.PatientSex
    assert patient.accession_number == ds.AccessionNumber
    assert patient.referring_physician == str(ds.ReferringPhysicianName)
    assert str(ds.PatientName) not in repr(patient)  # PHI stays out of tracebacks


def test_the_assigning_authority_is_the_issuer_only_when_the_dicom_names_none() -> None:
    named = PatientIdentity(patient_id="123", issuer_of_patient_id="HOSP-A")
    assert patient_from(named, "FALLBACK").mrn_issuer == "HOSP-A"  # type: ignore[union-attr]
    assert patient_from(PatientIdentity(patient_id="123"), "FALLBACK").mrn_issuer == "FALLBACK"  # type: ignore[union-attr]
    assert patient_from(PatientIdentity(patient_name="A^B"), "FALLBACK").mrn_issuer is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (PatientIdentity(patient_sex="f", patient_birth_date="19800101"), {"sex": "F", "birth_date": "19800101"}),
        (
            PatientIdentity(patient_id="1", patient_sex="X", patient_birth_date="1980"),
            {"sex": None, "birth_date": None},
        ),
        (PatientIdentity(patient_name="  ", accession_number=" A1 "), {"name": None, "accession_number": "A1"}),
    ],
)
def test_identity_values_are_normalised(identity: PatientIdentity, expected: dict[str, str | None]) -> None:
    patient = patient_from(identity)
    assert patient is not None
    assert {k: getattr(patient, k) for k in expected} == expected


def test_a_study_without_identity_has_no_patient() -> None:
    assert patient_from(PatientIdentity()) is None
    assert patient_from(None) is None
