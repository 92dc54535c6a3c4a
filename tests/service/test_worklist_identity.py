"""The worklist's identity: readers see the name, MRN, birth date and accession of each row and find a
study by MRN, accession or name (word prefixes, case- and accent-insensitive) through the keyed blind
index, without decrypting every row; technicians see and search none of it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from neuronav.config import Settings
from neuronav.db.models import StudyRow, StudySearchTokenRow
from neuronav.db.session import session_scope
from neuronav.storage import encrypt_field
from neuronav.storage.store import ObjectStore
from neuronav.workflow import operations, search_index, worklist
from tests.service.conftest import People

PATIENTS = (
    # name (DICOM PN), MRN, birth date, accession
    ("MÜLLER^Anna^Maria", "MRN-0042", "19700312", "ACC 7781"),
    ("O'BRIEN^Seán", "4410023", "19851130", "A-2024-0001"),
    ("MULLINS^Mark", "MRN-0043", "19601201", "ACC 7782"),
    ("NGUYEN^Thi Mai", "X99", "20010704", "B17"),
)


def _add(settings: Settings, store: ObjectStore, uploaded_by: str, patient: tuple[str, str, str, str]) -> str:
    name, mrn, born, acc = patient
    key = store.field_key()
    with session_scope(settings.database) as db:
        study = StudyRow(
            content_sha256=uuid.uuid4().hex * 2,
            patient_pseudonym=f"NNP-{uuid.uuid4().hex[:20]}",
            patient_name_enc=encrypt_field(name, key, "studies.patient_name"),
            patient_id_enc=encrypt_field(mrn, key, "studies.patient_id"),
            patient_birth_date_enc=encrypt_field(born, key, "studies.patient_birth_date"),
            accession_enc=encrypt_field(acc, key, "studies.accession"),
            description="MR HEAD",
            sequences={},
            state="done",
            uploaded_by=uploaded_by,
        )
        db.add(study)
        db.flush()
        search_index.index_identity(db, store, study.id, name=name, mrn=mrn, accession=acc)
        return study.id


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return ObjectStore.from_settings(settings)


def _found(client: TestClient, headers: dict[str, str], q: str) -> set[str]:
    response = client.get("/api/studies", headers=headers, params={"q": q})
    assert response.status_code == 200, response.text
    return {i["id"] for i in response.json()["items"]}


def test_readers_find_a_study_by_mrn_accession_or_name_and_see_the_identity(
    settings: Settings, client: TestClient, people: People, store: ObjectStore
) -> None:
    rad = people.create("radiologist")
    headers = people.login(rad)
    muller, obrien, mullins, nguyen = (_add(settings, store, rad.id, p) for p in PATIENTS)

    assert _found(client, headers, "MRN-0042") == {muller}  # the MRN, as typed
    assert _found(client, headers, "mrn0042") == {muller}  # case and punctuation do not matter
    assert _found(client, headers, "ACC 7781") == {muller}  # the accession number
    assert _found(client, headers, "a-2024-0001") == {obrien}
    assert _found(client, headers, "müller") == {muller} == _found(client, headers, "MULLER")  # accents
    assert _found(client, headers, "mul") == {muller, mullins}  # a prefix of the family name
    assert _found(client, headers, "anna") == {muller}  # the given name
    assert _found(client, headers, "mül an") == {muller}  # every word must match
    assert _found(client, headers, "obrien") == {obrien} == _found(client, headers, "O'Brien")
    assert _found(client, headers, "sean") == {obrien}
    assert _found(client, headers, "mai nguy") == {nguyen}
    assert _found(client, headers, "ller") == set()  # prefixes only, not any substring
    assert _found(client, headers, "0042") == set()  # an MRN matches whole
    assert _found(client, headers, "anna mullins") == set()

    rows = {i["id"]: i for i in client.get("/api/studies", headers=headers).json()["items"]}
    assert (
        rows[muller]["patient_name"],
        rows[muller]["patient_id"],
        rows[muller]["patient_birth_date"],
        rows[muller]["accession_number"],
    ) == PATIENTS[0]


def test_technicians_see_and_search_no_identity(
    settings: Settings, client: TestClient, people: People, store: ObjectStore
) -> None:
    tech = people.create("technician")
    mine = _add(settings, store, tech.id, PATIENTS[0])
    headers = people.login(tech)
    (row,) = client.get("/api/studies", headers=headers).json()["items"]
    assert row["id"] == mine
    assert all(row[k] is None for k in ("patient_name", "patient_id", "patient_birth_date", "accession_number"))
    assert _found(client, headers, "muller") == set() and _found(client, headers, "MRN-0042") == set()


def test_the_index_holds_tokens_only(settings: Settings, store: ObjectStore, people: People) -> None:
    rad = people.create("radiologist")
    study = _add(settings, store, rad.id, PATIENTS[0])
    with session_scope(settings.database) as db:
        tokens = list(db.scalars(select(StudySearchTokenRow.token).where(StudySearchTokenRow.study_id == study)))
    assert tokens and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)
    plain = {"muller", "anna", "mrn0042", "acc7781", "mu", "mul"}
    assert not plain & set(tokens)
    with session_scope(settings.database) as db:  # the backfill rebuilds the same tokens
        assert search_index.reindex_all(db, store) == 1
        again = set(db.scalars(select(StudySearchTokenRow.token).where(StudySearchTokenRow.study_id == study)))
    assert again == set(tokens)
    with session_scope(settings.database) as db:  # a study received before the index (migration 0011)
        db.execute(delete(StudySearchTokenRow))
    assert operations.index_unsearchable(settings, store) == 1
    assert operations.index_unsearchable(settings, store) == 0  # idempotent
    with session_scope(settings.database) as db:
        assert set(db.scalars(select(StudySearchTokenRow.token))) == set(tokens)


def test_a_search_decrypts_only_the_rows_of_the_page(
    settings: Settings, client: TestClient, people: People, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rad = people.create("radiologist")
    headers = people.login(rad)
    for n in range(12):
        _add(settings, store, rad.id, (f"MUSTER^Nr{n}", f"M{n}", "19900101", f"ACC{n}"))
    calls: list[Any] = []
    real = worklist.decrypt_field

    def counting(*args: Any) -> str:
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(worklist, "decrypt_field", counting)
    page = client.get("/api/studies", headers=headers, params={"q": "muster", "limit": 3}).json()
    assert page["total"] == 12 and len(page["items"]) == 3
    assert len(calls) == 3 * 4  # four identity columns of the three rows shown, nothing to search
