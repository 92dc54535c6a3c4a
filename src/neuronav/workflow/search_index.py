"""The worklist's blind index of patient identity (:mod:`neuronav.security.blind_index`) in the database:
written when a study is received (:func:`index_identity`), rebuilt for every study by
``neuronav db reindex-search`` (:func:`reindex_all`, after the migration that added it or a key change),
queried by :mod:`neuronav.workflow.worklist`. Tokens only: no plain identity is ever written here."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from neuronav.db.models import StudyRow, StudySearchTokenRow
from neuronav.security import blind_index
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore


def search_key(store: ObjectStore) -> bytes:
    return blind_index.search_key(store.field_key())


def index_identity(
    db: Session, store: ObjectStore, study_id: str, *, name: str | None, mrn: str | None, accession: str | None
) -> int:
    """Replace the search tokens of one study by those of this identity; the number written."""
    tokens = blind_index.study_tokens(search_key(store), name=name, mrn=mrn, accession=accession)
    db.execute(delete(StudySearchTokenRow).where(StudySearchTokenRow.study_id == study_id))
    db.add_all(StudySearchTokenRow(token=t, study_id=study_id) for t in sorted(tokens))
    db.flush()
    return len(tokens)


def index_study(db: Session, store: ObjectStore, study: StudyRow) -> int:
    """The search tokens of a stored study, from its encrypted identity columns."""
    key = store.field_key()

    def dec(value: str | None, column: str) -> str | None:
        return decrypt_field(value, key, column) if value else None

    return index_identity(
        db,
        store,
        study.id,
        name=dec(study.patient_name_enc, "studies.patient_name"),
        mrn=dec(study.patient_id_enc, "studies.patient_id"),
        accession=dec(study.accession_enc, "studies.accession"),
    )


def reindex_all(db: Session, store: ObjectStore, *, batch: int = 500) -> int:
    """Rebuild the tokens of every study (idempotent); the number of studies indexed."""
    done = 0
    last = ""
    while True:
        rows = db.scalars(select(StudyRow).where(StudyRow.id > last).order_by(StudyRow.id).limit(batch)).all()
        if not rows:
            return done
        for study in rows:
            index_study(db, store, study)
        done += len(rows)
        last = rows[-1].id
        db.commit()


__all__ = ["index_identity", "index_study", "reindex_all", "search_key"]
