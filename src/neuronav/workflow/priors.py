"""The patient's prior study: found, retrieved, analysed, and used by the analysis and the viewer.

When the service analyses a study (:func:`neuronav.workflow.jobs.run_analysis`, whatever edge brought
it: upload, DICOM, PACS pull, DICOMweb), :func:`prior_for_analysis` picks its prior, before the models
run:

1. **Held** (:func:`held_priors`): earlier studies NeuroNav holds of the same patient — the same
   pseudonym (keyed HMAC of the PatientID) and no conflicting IssuerOfPatientID (both decrypted and
   compared; an MRN from another issuer is another patient) — earlier by study date (by upload when a
   date is missing), newest first.
2. **At the PACS** (``NEURONAV_PACS_NODE``, :mod:`neuronav.workflow.pacs`): a C-FIND, Study Root, by the
   exact PatientID, ModalitiesInStudy MR, StudyDate before this study's. An answer counts only with the
   same PatientID exactly, no conflicting issuer, MR among its modalities and an earlier date. When the
   newest such study is more recent than the newest held prior it is retrieved (C-MOVE to the listener,
   completed at once, received as the PACS node's service account); when it turns out not to be an
   analysable brain MR (kept, with the reason) the next is tried (at most :data:`MAX_RETRIEVALS`).
3. The chosen prior is **analysed** if it has no finished analysis: that job runs here, inline (the
   worker is one thread; its own dispatch later finds it done). A prior analysed this way looks for no
   prior of its own at the PACS (no chain of retrievals), only among the held, analysed studies.
4. Its ``findings.json`` is handed to :func:`neuronav.analysis.pipeline.analyze` as ``prior`` — the
   exact path of the CLI's ``neuronav analyze --prior``: the findings carry the change per region and
   the RANO category, and so does every report output. The study row records it (``prior_study_id``)
   and the viewer offers that prior first (:func:`neuronav.workflow.viewer.viewer_manifest`).

Best effort: a PACS that cannot be reached, a move that fails, a prior whose analysis fails — the
analysis goes on without a comparison and records why (``result["prior"]["note"]``). Nothing here
raises into the job. No patient data reaches a log line (study ids only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from neuronav.config import Settings
from neuronav.db.models import AnalysisRow, StudyRow
from neuronav.db.session import session_scope
from neuronav.integrations.dimse import qr
from neuronav.storage import decrypt_field
from neuronav.storage.store import ObjectStore

log = logging.getLogger(__name__)

MAX_RETRIEVALS = 2
PRIOR_WAIT_S = 900.0  # a prior analysed by another worker meanwhile: waited for at most this long
_local = threading.local()


@contextmanager
def _nested() -> Iterator[None]:
    before = getattr(_local, "nested", False)
    _local.nested = True
    try:
        yield
    finally:
        _local.nested = before


def _issuer(store: ObjectStore, study: StudyRow) -> str:
    value = study.patient_id_issuer_enc
    return (decrypt_field(value, store.field_key(), "studies.patient_id_issuer") or "").strip() if value else ""


def _patient_id(store: ObjectStore, study: StudyRow) -> str:
    value = study.patient_id_enc
    return (decrypt_field(value, store.field_key(), "studies.patient_id") or "").strip() if value else ""


def issuers_agree(a: str, b: str) -> bool:
    """Two IssuerOfPatientID values name the same issuer, or one of them is not given."""
    return not a.strip() or not b.strip() or a.strip().upper() == b.strip().upper()


def same_patient(store: ObjectStore, a: StudyRow, b: StudyRow) -> bool:
    """The same pseudonym (PatientID) and no conflicting issuer of that id."""
    if not a.patient_pseudonym or a.patient_pseudonym != b.patient_pseudonym:
        return False
    return issuers_agree(_issuer(store, a), _issuer(store, b))


def _earlier(other: StudyRow, study: StudyRow) -> bool:
    if other.study_date and study.study_date:
        return other.study_date < study.study_date
    return other.uploaded_at < study.uploaded_at


def held_priors(db: Session, store: ObjectStore, study: StudyRow, *, analysed_only: bool = True) -> list[StudyRow]:
    """Earlier studies NeuroNav holds of the same patient (:func:`same_patient`), newest first (by study
    date when both have one: a historical study may be uploaded later; else by upload); with
    ``analysed_only`` only those with a finished analysis."""
    if not study.patient_pseudonym:
        return []
    stmt = select(StudyRow).where(StudyRow.patient_pseudonym == study.patient_pseudonym, StudyRow.id != study.id)
    if analysed_only:
        stmt = stmt.where(StudyRow.state == "done")
    rows = db.scalars(stmt.order_by(StudyRow.study_date.desc(), StudyRow.uploaded_at.desc())).all()
    return [s for s in rows if _earlier(s, study) and same_patient(store, s, study)]


@dataclass(frozen=True)
class PriorUsed:
    """The prior an analysis compared with (``findings``: its findings.json, decrypted in the job's folder),
    or none and why (``note``)."""

    study_id: str | None = None
    analysis_id: str | None = None
    source: str | None = None  # held | pacs
    findings: Path | None = None
    note: str | None = None

    def record(self) -> dict[str, str]:
        out = {"study_id": self.study_id, "analysis_id": self.analysis_id, "source": self.source, "note": self.note}
        return {k: v for k, v in out.items() if v}


def _day_before(yyyymmdd: str) -> str | None:
    try:
        d = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except (ValueError, IndexError):
        return None
    return (d - timedelta(days=1)).strftime("%Y%m%d")


def pacs_candidates(settings: Settings, store: ObjectStore, study_id: str) -> list[qr.FoundStudy]:
    """The prior brain MR studies of this study's patient the PACS holds and NeuroNav does not, newest
    first (C-FIND by the exact PatientID; answers checked as the module docstring says)."""
    from neuronav.workflow.pacs import held_study, pacs_node

    with session_scope(settings.database) as db:
        study = db.get(StudyRow, study_id)
        if study is None:
            return []
        node = pacs_node(db, settings)
        patient_id, issuer, current_date = _patient_id(store, study), _issuer(store, study), study.study_date
    if not patient_id or any(c in patient_id for c in "*?\\"):
        return []  # no id, or one that a C-FIND would read as a wildcard: nothing safe to ask
    before = _day_before(current_date) if current_date else None
    query = qr.StudyQuery(patient_id=patient_id, modality="MR", study_date=f"-{before}" if before else "")
    found = qr.find_at_node(settings, node, query).studies
    out = []
    with session_scope(settings.database) as db:
        for s in found:
            if s.patient_id != patient_id or not issuers_agree(s.issuer_of_patient_id, issuer):
                continue
            if s.modalities and "MR" not in s.modalities:
                continue
            if current_date and not (s.study_date and s.study_date < current_date):
                continue
            if not s.study_instance_uid or held_study(db, settings, s.study_instance_uid) is not None:
                continue
            out.append(s)
    return sorted(out, key=lambda s: (s.study_date, s.study_time), reverse=True)


def _latest_done(db: Session, study_id: str) -> AnalysisRow | None:
    return db.scalars(
        select(AnalysisRow)
        .where(AnalysisRow.study_id == study_id, AnalysisRow.state == "done")
        .order_by(AnalysisRow.created_at.desc())
    ).first()


def _ensure_analysed(settings: Settings, prior_id: str) -> str | None:
    """The id of a finished analysis of the prior, running it here when there is none; None when it failed."""
    from neuronav.workflow import jobs

    with session_scope(settings.database) as db:
        done = _latest_done(db, prior_id)
        if done is not None:
            return done.id
        prior = db.get(StudyRow, prior_id)
        if prior is None:
            return None
        analysis, _queued = jobs.start_analysis(db, settings, prior, user_id=None)
        analysis_id = analysis.id
    with _nested():
        outcome = jobs.run_analysis(analysis_id, settings)
    deadline = time.monotonic() + PRIOR_WAIT_S
    while outcome in ("skipped", "retry"):  # running elsewhere (its lease alive), or to be retried
        with session_scope(settings.database) as db:
            a = db.get(AnalysisRow, analysis_id)
            state = a.state if a is not None else "failed"
        if state == "done":
            return analysis_id
        if state == "failed" or time.monotonic() > deadline:
            return None
        if state == "queued":
            with _nested():
                outcome = jobs.run_analysis(analysis_id, settings)
            continue
        time.sleep(2)
    return analysis_id if outcome == "done" else None


def prior_for_analysis(settings: Settings, study_id: str, folder: Path) -> PriorUsed:
    """The prior the analysis of ``study_id`` compares with (module docstring), its findings decrypted into
    ``folder``; never raises (a failure is the note of a :class:`PriorUsed` without a prior)."""
    try:
        return _prior_for_analysis(settings, study_id, folder)
    except Exception as exc:
        log.warning("analysis of study %s: no prior comparison (%s)", study_id, type(exc).__name__)
        return PriorUsed(note=f"prior not available: {exc}"[:500])


def _prior_for_analysis(settings: Settings, study_id: str, folder: Path) -> PriorUsed:
    from neuronav.workflow import jobs
    from neuronav.workflow.pacs import fetch_study, pacs_node

    if not settings.prior_fetch:
        return PriorUsed()
    nested = getattr(_local, "nested", False)
    store = jobs.store_for(settings)
    with session_scope(settings.database) as db:
        study = db.get(StudyRow, study_id)
        if study is None or not study.patient_pseudonym:
            return PriorUsed()
        held = [s for s in held_priors(db, store, study, analysed_only=nested) if s.state != "failed"]
        best_held = (held[0].id, held[0].study_date) if held else None
    source, chosen, notes = "held", best_held[0] if best_held else None, []
    if settings.pacs_node and not nested:
        try:
            candidates = pacs_candidates(settings, store, study_id)
        except Exception as exc:
            candidates = []
            notes.append(f"the PACS was not searched: {exc}")
            log.warning("analysis of study %s: PACS search for priors failed (%s)", study_id, type(exc).__name__)
        newer = [c for c in candidates if best_held is None or (c.study_date or "") > (best_held[1] or "")]
        if newer:
            with session_scope(settings.database) as db:
                node = pacs_node(db, settings)
        for c in newer[:MAX_RETRIEVALS]:
            try:
                fetched = fetch_study(settings, store, node, c.study_instance_uid, via="prior")
            except Exception as exc:
                notes.append(f"retrieving a prior from the PACS failed: {exc}")
                log.warning("analysis of study %s: prior retrieval failed (%s)", study_id, type(exc).__name__)
                continue
            if fetched.state != "received" or not fetched.study_id:
                notes.append(f"a prior at the PACS is not analysable: {fetched.reason or fetched.state}")
                continue
            with session_scope(settings.database) as db:
                current, prior = db.get(StudyRow, study_id), db.get(StudyRow, fetched.study_id)
                if current is None or prior is None or not same_patient(store, prior, current):
                    notes.append("a study retrieved from the PACS is not the same patient's; not used")
                    continue
            source, chosen = "pacs", fetched.study_id
            log.info("analysis of study %s: prior study %s retrieved from the PACS", study_id, chosen)
            break
    note = "; ".join(notes)[:500] or None
    if chosen is None:
        return PriorUsed(note=note)
    analysis_id = _ensure_analysed(settings, chosen) if not nested else None
    with session_scope(settings.database) as db:
        done = db.get(AnalysisRow, analysis_id) if analysis_id else _latest_done(db, chosen)
        if done is None or done.state != "done":
            return PriorUsed(
                study_id=chosen, source=source, note=((note + "; ") if note else "") + "its analysis failed"
            )
        (folder / "prior").mkdir(exist_ok=True)
        path = jobs.result_path(settings, db, done, "findings.json", folder / "prior")
        return PriorUsed(study_id=chosen, analysis_id=done.id, source=source, findings=path, note=note)


__all__ = ["PriorUsed", "held_priors", "issuers_agree", "pacs_candidates", "prior_for_analysis", "same_patient"]
