"""Analysis jobs: queued → running (progress %) → done | failed (with the reason).

:func:`run_analysis` is THE job: the embedded worker (a thread in the server process, the default)
and Celery (``NEURONAV_BROKER_URL`` set; :mod:`.celery_app`) both call it with an analysis id, so
they cannot behave differently. Workers on other machines need only the same database URL, broker
URL and shared storage folder.

* Idempotent: :func:`start_analysis` returns the finished analysis of the same content and model
  versions (``cache_key``) unless ``force`` is given, and the running one when there is one.
* Transient faults (database or storage unavailable, an OS error) are retried up to
  :data:`MAX_ATTEMPTS` times with back-off; bad input fails at once with its message.
* Atomic: results are stored (encrypted) and the analysis, report and study rows are updated in
  one transaction at the end; a job interrupted before that leaves the analysis ``running`` with no
  results, and is picked up again by :func:`requeue_stale`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from neuronav.config import Settings, get_settings
from neuronav.db.models import AnalysisRow, StoredObjectRow, StudyRow, utcnow
from neuronav.db.session import session_scope
from neuronav.errors import InputError, NeuroNavError
from neuronav.storage.errors import StorageError
from neuronav.storage.store import ObjectStore

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
RESULT_FILES = ("findings.json", "segmentation.nii.gz", "probability.nii.gz", "reference.nii.gz")
TRANSIENT = (OperationalError, OSError)
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_stores: dict[str, ObjectStore] = {}


def model_versions() -> str:
    """Names, versions and checksums of every model an analysis uses (part of the cache key; from the
    cards only: nothing is loaded in the web process)."""
    from neuronav.analysis.models import select_models

    return ",".join(
        f"{m.card.name}@{m.card.version}:{m.card.sha256[:12]}"
        for task in ("segmentation", "detection", "classification")
        for m in select_models(None, task)
    )


def model_labels() -> str:
    """The class names each model's card gives its outputs (the classification's labels come from its
    card: an edited card changes the findings without changing the model file)."""
    from neuronav.analysis.models import select_models

    return ",".join(
        f"{m.card.name}@{m.card.version}:{json.dumps(m.card.labels, sort_keys=True)}"
        for task in ("segmentation", "detection", "classification")
        for m in select_models(None, task)
    )


def cache_key(study: StudyRow) -> str:
    """What decides an analysis's result: the study's content, the models (files and card labels), the
    overall-confidence algorithm and NeuroNav's version."""
    from neuronav import __version__
    from neuronav.analysis import confidence

    algorithm = f"{confidence.ALGORITHM}@{confidence.VERSION}"
    parts = (study.content_sha256, model_versions(), model_labels(), algorithm, __version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def store_for(settings: Settings) -> ObjectStore:
    key = str(settings.storage)
    if key not in _stores:
        _stores[key] = ObjectStore.from_settings(settings)
    return _stores[key]


def start_analysis(
    db: Session, settings: Settings, study: StudyRow, *, user_id: str | None, force: bool = False
) -> tuple[AnalysisRow, bool]:
    """(analysis, queued_now). The cached or running analysis is returned unless ``force``."""
    key = cache_key(study)
    if not force:
        found = db.scalars(
            select(AnalysisRow)
            .where(
                AnalysisRow.study_id == study.id,
                AnalysisRow.cache_key == key,
                AnalysisRow.state.in_(("queued", "running", "done")),
            )
            .order_by(AnalysisRow.created_at.desc())
        ).first()
        if found is not None:
            return found, False
    analysis = AnalysisRow(study_id=study.id, cache_key=key, model=model_versions(), requested_by=user_id)
    db.add(analysis)
    study.state = "queued"
    db.flush()
    return analysis, True


def dispatch(settings: Settings, analysis_id: str) -> None:
    """Hand the job to Celery (broker configured) or to this process's embedded worker."""
    if settings.broker_url:
        from neuronav.workflow.celery_app import analyse_task

        analyse_task.delay(analysis_id)
        return
    global _executor
    with _executor_lock:
        if _executor is None:  # one job at a time: an analysis already uses both cores
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuronav-worker")
    _executor.submit(_run_embedded, settings, analysis_id)


def _run_embedded(settings: Settings, analysis_id: str) -> None:
    delay = 2.0
    while True:
        outcome = run_analysis(analysis_id, settings)
        if outcome != "retry":
            return
        time.sleep(delay)
        delay *= 2


def _set(settings: Settings, analysis_id: str, **values: object) -> None:
    with session_scope(settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        if a is not None:
            for k, v in values.items():
                setattr(a, k, v)


def run_analysis(analysis_id: str, settings: Settings | None = None) -> str:
    """Run one analysis job; returns "done", "failed", "retry" or "skipped" (already done / unknown)."""
    from neuronav.analysis.inputs import from_paths
    from neuronav.analysis.pipeline import analyze, sequence_images, summary
    from neuronav.report.build import build_report
    from neuronav.workflow import reports
    from neuronav.workflow.uploads import decrypt_upload, private_tmp, upload_objects

    settings = settings or get_settings()
    with session_scope(settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        if a is None or a.state == "done":
            return "skipped"
        a.state, a.attempts, a.started_at, a.error, a.progress = "running", a.attempts + 1, utcnow(), None, 0.0
        study = db.get(StudyRow, a.study_id)
        assert study is not None
        study.state = "running"
        study_id, uploaded_at, attempts = study.id, study.uploaded_at, a.attempts
    folder = private_tmp(settings)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(stage: str, fraction: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= 0.5 or fraction >= 1.0:
            last[0] = now
            _set(settings, analysis_id, stage=stage, progress=round(0.05 + 0.85 * fraction, 3))

    try:
        store = store_for(settings)
        (folder / "upload").mkdir()
        with session_scope(settings.database) as db:
            uploaded = upload_objects(db, study_id)
        decrypt_upload(store, uploaded, folder / "upload")  # no transaction open meanwhile (below)
        out = folder / "out"
        inputs = from_paths([folder / "upload"])
        findings = analyze(inputs, out, progress=progress)
        report = build_report(findings, analysis_dir=out, received=uploaded_at)
        _set(settings, analysis_id, stage="storing results", progress=0.95)
        stored: dict[str, str] = {}
        rows: list[StoredObjectRow] = []
        try:
            # encrypted before the transaction: on SQLite an open transaction holds the write lock,
            # which every request and upload needs
            for name in (*RESULT_FILES, *sequence_images(inputs)):
                with open(out / name, "rb") as fh:
                    obj = store.put(fh, kind="result")
                stored[name] = obj.key
                rows.append(
                    StoredObjectRow(
                        key=obj.key,
                        study_id=study_id,
                        kind=f"result:{name}",
                        name=name,
                        sha256=obj.sha256,
                        size_bytes=obj.size,
                    )
                )
            with session_scope(settings.database) as db:
                db.add_all(rows)
                reports.save(db, store, report, study_id=study_id, analysis_id=analysis_id, user_id=None)
                a = db.get(AnalysisRow, analysis_id)
                study = db.get(StudyRow, study_id)
                assert a is not None and study is not None
                a.state, a.progress, a.stage, a.finished_at = "done", 1.0, "done", utcnow()
                a.seconds = round(time.perf_counter() - t0, 2)
                a.result = {"summary": summary(findings), "objects": stored, "report_id": report.report_id}
                study.state, study.flagged = "done", bool(findings.detection.tumour_detected)
        except BaseException:
            for key in stored.values():  # not committed: no row refers to them
                store.delete(key, missing_ok=True)
            raise
        return "done"
    except NeuroNavError as exc:
        transient = isinstance(exc, StorageError) and not isinstance(exc, InputError)
        return _fail(settings, analysis_id, study_id, str(exc), retry=transient and attempts < MAX_ATTEMPTS)
    except TRANSIENT as exc:
        log.warning("analysis %s: transient failure (%s), attempt %d", analysis_id, type(exc).__name__, attempts)
        return _fail(settings, analysis_id, study_id, f"{type(exc).__name__}: {exc}", retry=attempts < MAX_ATTEMPTS)
    except Exception as exc:  # a bug: recorded on the analysis with its type, never retried
        log.exception("analysis %s failed unexpectedly", analysis_id)
        return _fail(
            settings,
            analysis_id,
            study_id,
            f"unexpected failure ({type(exc).__name__}); see the server log",
            retry=False,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fail(settings: Settings, analysis_id: str, study_id: str, message: str, *, retry: bool) -> str:
    with session_scope(settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        study = db.get(StudyRow, study_id)
        if a is not None:
            a.state, a.error = ("queued" if retry else "failed"), message[:2000]
            a.finished_at = None if retry else utcnow()
        if study is not None:
            study.state = "queued" if retry else "failed"
    return "retry" if retry else "failed"


def requeue_stale(settings: Settings, *, older_than: timedelta = timedelta(hours=1)) -> list[str]:
    """Analyses left running by a worker that died: back to queued and dispatched again."""
    cutoff = datetime.now(UTC) - older_than
    with session_scope(settings.database) as db:
        stale = db.scalars(select(AnalysisRow).where(AnalysisRow.state.in_(("running", "queued")))).all()
        ids = []
        for a in stale:
            started = a.started_at or a.created_at
            if a.state == "queued" or started < cutoff:
                a.state = "queued"
                ids.append(a.id)
    for analysis_id in ids:
        dispatch(settings, analysis_id)
    return ids


def result_path(settings: Settings, db: Session, analysis: AnalysisRow, name: str, folder: Path) -> Path:
    """Decrypt one stored result file of ``analysis`` into ``folder``."""
    key = (analysis.result.get("objects") or {}).get(name)
    if not key:
        raise InputError(f"analysis {analysis.id} has no {name}")
    target = folder / name
    with store_for(settings).open(key) as reader, open(target, "wb") as out:
        for chunk in reader:
            out.write(chunk)
    return target
