"""Which held study is a study's prior (neuronav.workflow.priors.held_priors): the same patient — the same
pseudonym and no conflicting IssuerOfPatientID (decrypted and compared) — and an earlier examination,
newest first; the viewer offers the one the analysis compared with first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from neuronav.db.models import StudyRow
from neuronav.db.session import migrate, session_scope
from neuronav.storage import encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow.operations import create_account
from neuronav.workflow.priors import held_priors, issuers_agree
from neuronav.workflow.viewer import priors_of
from tests.integrations.dimse.conftest import dicom_settings


def test_held_priors_are_the_same_patients_earlier_studies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dicom_settings(tmp_path, monkeypatch)
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    key = store.field_key()
    user = create_account(settings, "t@hospital.example", "quiet river stone lantern", "technician",
                          display_name="T", active=True, licence=None)  # fmt: skip

    def study(name: str, pseudonym: str, date: str, issuer: str, state: str = "done") -> StudyRow:
        return StudyRow(
            id=name, content_sha256=name.ljust(64, "0"), patient_pseudonym=pseudonym, study_date=date, state=state,
            patient_id_issuer_enc=encrypt_field(issuer, key, "studies.patient_id_issuer") if issuer else None,
            uploaded_by=user, uploaded_at=datetime(2025, 1, 1, tzinfo=UTC),
        )  # fmt: skip

    with session_scope(settings.database) as db:
        db.add_all(
            [
                study("current", "NNP-1", "20240301", "HOSP-A", state="running"),
                study("same-issuer", "NNP-1", "20230101", "hosp-a"),  # the same issuer, in other case
                study("other-issuer", "NNP-1", "20231201", "HOSP-B"),  # the same MRN from another hospital
                study("no-issuer", "NNP-1", "20220101", ""),
                study("later", "NNP-1", "20240401", "HOSP-A"),
                study("not-analysed", "NNP-1", "20231101", "HOSP-A", state="failed"),
                study("other-patient", "NNP-2", "20230601", "HOSP-A"),
            ]
        )
    with session_scope(settings.database) as db:
        current = db.get(StudyRow, "current")
        assert current is not None
        assert [s.id for s in held_priors(db, store, current)] == ["same-issuer", "no-issuer"]
        everything = [s.id for s in held_priors(db, store, current, analysed_only=False)]
        assert everything == ["not-analysed", "same-issuer", "no-issuer"]
        # the viewer: the prior the analysis compared with comes first
        current.prior_study_id = "no-issuer"
        assert [s.id for s in priors_of(db, current, settings)] == ["no-issuer", "same-issuer"]
    assert issuers_agree("A", "a ") and issuers_agree("", "B") and not issuers_agree("A", "B")
