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
  results.
* Leased: :func:`run_analysis` claims the analysis with one conditional UPDATE (only a queued or
  failed analysis, or a running one whose lease expired, can be claimed: a second delivery of the same
  task while it runs is ``"skipped"``), writes its lease owner (host, pid, a random token) and renews
  ``heartbeat_at`` every ``NEURONAV_JOB_HEARTBEAT_S`` seconds from a heartbeat thread. A job that lost
  its lease (re-queued meanwhile) commits nothing.
* Recovered: an analysis ``running`` without a heartbeat for ``NEURONAV_JOB_LEASE_S`` seconds (its
  process was killed, its machine died) is re-queued and dispatched again by :func:`recover_expired`,
  or failed with the reason once it has used :data:`MAX_ATTEMPTS` attempts. Every server runs it every
  ``NEURONAV_MAINTENANCE_INTERVAL_S`` seconds (:func:`maintenance`, a thread of the app's lifespan) and
  so does every Celery worker (:mod:`.celery_app`); :func:`start_analysis` does it for the analysis it
  finds. A conditional UPDATE per analysis makes several servers re-queue it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, Update, and_, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from neuronav.config import Settings, get_settings
from neuronav.db.models import AnalysisRow, StoredObjectRow, StudyRow, utcnow
from neuronav.db.session import session_scope
from neuronav.errors import InputError, LifecycleError, NeuroNavError
from neuronav.storage.errors import StorageError
from neuronav.storage.store import ObjectStore
from neuronav.workflow.background import Periodic

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
        if found is not None and found.state == "running" and _lease_expired(found, settings):
            outcome = _release(found, settings)  # its process died: re-queued now, not returned stuck
            log.info("analysis %s: lease expired, %s", found.id, outcome)
            if outcome == "queued":
                study.state = "queued"
                db.flush()
                return found, True
            found = None
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


# -- leases -------------------------------------------------------------------------------------------------


def new_lease_owner() -> str:
    """Who holds a lease: host, process and a random token (one per run), at most 64 characters."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[-64:]


def _lease_cutoff(settings: Settings) -> datetime:
    return utcnow() - timedelta(seconds=settings.job_lease_s)


def _last_sign_of_life(a: AnalysisRow) -> datetime:
    return a.heartbeat_at or a.started_at or a.created_at


def _lease_expired(a: AnalysisRow, settings: Settings) -> bool:
    return a.state == "running" and _last_sign_of_life(a) < _lease_cutoff(settings)


def _updated(db: Session, statement: Update) -> int:
    """Rows an UPDATE changed (its session's objects are not synchronised: read them again)."""
    result = db.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def _expired_clause(settings: Settings) -> ColumnElement[bool]:
    """SQL: a running analysis with no heartbeat (or start) since the lease time."""
    last = func.coalesce(AnalysisRow.heartbeat_at, AnalysisRow.started_at, AnalysisRow.created_at)
    return and_(AnalysisRow.state == "running", last < _lease_cutoff(settings))


def _release_values(attempts: int, settings: Settings) -> dict[str, object]:
    """The columns of an expired analysis: back to ``queued``, or ``failed`` with the reason after the
    last attempt."""
    silent = round(settings.job_lease_s)
    if attempts >= MAX_ATTEMPTS:
        return {
            "state": "failed",
            "lease_owner": None,
            "finished_at": utcnow(),
            "error": f"the process running it stopped (no heartbeat for more than {silent} s) on each of its "
            f"{attempts} attempts; not retried",
        }
    return {
        "state": "queued",
        "lease_owner": None,
        "error": f"re-queued: the process running it stopped (no heartbeat for more than {silent} s)",
    }


def _release(a: AnalysisRow, settings: Settings) -> str:
    for column, value in _release_values(a.attempts, settings).items():
        setattr(a, column, value)
    return a.state


def recover_expired(settings: Settings, *, dispatch_now: bool = True) -> list[str]:
    """Analyses whose process died (running, lease expired): re-queued and dispatched again, or failed
    with the reason after :data:`MAX_ATTEMPTS`. Safe on any number of servers at once: each analysis is
    taken by one conditional UPDATE. Returns the ids re-queued."""
    with session_scope(settings.database) as db:
        candidates = db.scalars(select(AnalysisRow.id).where(_expired_clause(settings))).all()
    requeued = []
    for analysis_id in candidates:
        with session_scope(settings.database) as db:
            a = db.get(AnalysisRow, analysis_id)
            if a is None or not _lease_expired(a, settings):
                continue
            values = _release_values(a.attempts, settings)
            taken = _updated(
                db, update(AnalysisRow).where(AnalysisRow.id == analysis_id, _expired_clause(settings)).values(**values)
            )
            if taken != 1:  # another server took it first
                continue
            study = db.get(StudyRow, a.study_id)
            if study is not None:
                study.state = str(values["state"])
        log.warning("analysis %s: no heartbeat for %.0f s, %s", analysis_id, settings.job_lease_s, values["state"])
        if values["state"] == "queued":
            requeued.append(analysis_id)
    if dispatch_now:
        for analysis_id in requeued:
            dispatch(settings, analysis_id)
    return requeued


def recover_at_start(settings: Settings) -> list[str]:
    """At a server's start: expired analyses re-queued (:func:`recover_expired`) and, for the embedded
    worker (whose queue died with the process), every queued analysis dispatched again (a claim makes a
    job that another server runs meanwhile a no-op)."""
    ids = recover_expired(settings, dispatch_now=False)
    if not settings.broker_url:
        with session_scope(settings.database) as db:
            ids = sorted(set(ids) | set(db.scalars(select(AnalysisRow.id).where(AnalysisRow.state == "queued"))))
    for analysis_id in ids:
        dispatch(settings, analysis_id)
    return ids


def maintenance(settings: Settings) -> None:
    """The periodic sweep of a server or worker: expired job leases, unused private temporary folders."""
    from neuronav.workflow.uploads import sweep_private_tmp

    recover_expired(settings)
    sweep_private_tmp(settings)


def start_maintenance(settings: Settings) -> Periodic:
    """:func:`maintenance` every ``NEURONAV_MAINTENANCE_INTERVAL_S`` seconds in a daemon thread."""
    return Periodic("maintenance", settings.maintenance_interval_s, lambda: maintenance(settings)).start()


def _claim(settings: Settings, analysis_id: str, owner: str) -> tuple[str, datetime, int] | None:
    """Take the analysis (one conditional UPDATE): (study id, uploaded at, attempts), or None when it is
    unknown, done, or running under a live lease."""
    now = utcnow()
    with session_scope(settings.database) as db:
        taken = _updated(
            db,
            update(AnalysisRow)
            .where(
                AnalysisRow.id == analysis_id,
                AnalysisRow.state != "done",
                or_(AnalysisRow.state != "running", _expired_clause(settings)),
            )
            .values(
                state="running",
                attempts=AnalysisRow.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                lease_owner=owner,
                error=None,
                progress=0.0,
            )
            .execution_options(synchronize_session=False),
        )
        if taken != 1:
            return None
        a = db.get(AnalysisRow, analysis_id)
        assert a is not None
        study = db.get(StudyRow, a.study_id)
        assert study is not None
        study.state = "running"
        return study.id, study.uploaded_at, a.attempts


class _Heartbeat:
    """Renews the lease every ``NEURONAV_JOB_HEARTBEAT_S`` seconds while the job runs; ``lost`` is set
    when the lease was taken away (the analysis re-queued meanwhile)."""

    def __init__(self, settings: Settings, analysis_id: str, owner: str) -> None:
        self.settings, self.analysis_id, self.owner = settings, analysis_id, owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"neuronav-heartbeat-{analysis_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def beat(self) -> bool:
        with session_scope(self.settings.database) as db:
            renewed = _updated(
                db,
                update(AnalysisRow)
                .where(
                    AnalysisRow.id == self.analysis_id,
                    AnalysisRow.lease_owner == self.owner,
                    AnalysisRow.state == "running",
                )
                .values(heartbeat_at=utcnow()),
            )
        return renewed == 1

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.job_heartbeat_s):
            try:
                if not self.beat():
                    log.warning("analysis %s: lease lost (re-queued meanwhile)", self.analysis_id)
                    self.lost.set()
                    return
            except Exception as exc:  # the database away for a moment: the next beat may do
                log.warning("analysis %s: heartbeat failed (%s)", self.analysis_id, type(exc).__name__)


def run_analysis(analysis_id: str, settings: Settings | None = None) -> str:
    """Run one analysis job; returns "done", "failed", "retry" or "skipped" (already done, unknown, running
    elsewhere under a live lease, or re-queued meanwhile: its lease lost)."""
    settings = settings or get_settings()
    owner = new_lease_owner()
    claimed = _claim(settings, analysis_id, owner)
    if claimed is None:
        return "skipped"
    with _Heartbeat(settings, analysis_id, owner) as heartbeat:
        return _run_claimed(settings, analysis_id, owner, claimed, heartbeat)


def _run_claimed(
    settings: Settings, analysis_id: str, owner: str, claimed: tuple[str, datetime, int], heartbeat: _Heartbeat
) -> str:
    from neuronav.analysis.inputs import from_paths
    from neuronav.analysis.pipeline import REGISTRATION_FILE, analyze, sequence_images, summary
    from neuronav.report.build import build_report
    from neuronav.workflow import reports
    from neuronav.workflow.uploads import decrypt_upload, private_tmp, remove_tmp, upload_objects

    study_id, uploaded_at, attempts = claimed
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
        from neuronav.workflow.priors import prior_for_analysis

        _set(settings, analysis_id, stage="prior study", progress=0.03)
        prior = prior_for_analysis(settings, study_id, folder)  # held or retrieved, analysed; never raises
        findings = analyze(inputs, out, prior=prior.findings, progress=progress)
        report = build_report(findings, analysis_dir=out, received=uploaded_at)
        _set(settings, analysis_id, stage="storing results", progress=0.95)
        stored: dict[str, str] = {}
        rows: list[StoredObjectRow] = []
        try:
            # encrypted before the transaction: on SQLite an open transaction holds the write lock,
            # which every request and upload needs
            for name in (*RESULT_FILES, REGISTRATION_FILE, *sequence_images(inputs)):
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
                a = db.get(AnalysisRow, analysis_id)
                if heartbeat.lost.is_set() or a is None or a.lease_owner != owner or a.state != "running":
                    # re-queued while it ran here (lease lost): another run owns the row; nothing committed
                    log.warning("analysis %s: lease lost while running; its results are dropped", analysis_id)
                    for key in stored.values():
                        store.delete(key, missing_ok=True)
                    return "skipped"
                db.add_all(rows)
                reports.save(db, store, report, study_id=study_id, analysis_id=analysis_id, user_id=None)
                from neuronav.workflow.deliveries import enqueue

                enqueue(db, report, study_id=study_id)  # destinations that want preliminary results
                from neuronav.workflow.orders import advance

                advance(db, study_id, "analysed")
                study = db.get(StudyRow, study_id)
                assert study is not None
                a.state, a.progress, a.stage, a.finished_at = "done", 1.0, "done", utcnow()
                a.lease_owner = None
                a.seconds = round(time.perf_counter() - t0, 2)
                a.result = {"summary": summary(findings), "objects": stored, "report_id": report.report_id}
                if prior.study_id or prior.note:
                    a.result["prior"] = prior.record()
                study.state, study.flagged = "done", bool(findings.detection.tumour_detected)
                if findings.change is not None and prior.study_id:
                    study.prior_study_id = prior.study_id  # the viewer offers this prior first
        except BaseException:
            for key in stored.values():  # not committed: no row refers to them
                store.delete(key, missing_ok=True)
            raise
        return "done"
    except NeuroNavError as exc:
        transient = isinstance(exc, StorageError) and not isinstance(exc, InputError)
        return _fail(
            settings, analysis_id, study_id, str(exc), retry=transient and attempts < MAX_ATTEMPTS, owner=owner
        )
    except TRANSIENT as exc:
        log.warning("analysis %s: transient failure (%s), attempt %d", analysis_id, type(exc).__name__, attempts)
        return _fail(
            settings, analysis_id, study_id, f"{type(exc).__name__}: {exc}", retry=attempts < MAX_ATTEMPTS, owner=owner
        )
    except Exception as exc:  # a bug: recorded on the analysis with its type, never retried
        log.exception("analysis %s failed unexpectedly", analysis_id)
        return _fail(
            settings,
            analysis_id,
            study_id,
            f"unexpected failure ({type(exc).__name__}); see the server log",
            retry=False,
            owner=owner,
        )
    finally:
        remove_tmp(folder)


def _fail(settings: Settings, analysis_id: str, study_id: str, message: str, *, retry: bool, owner: str) -> str:
    with session_scope(settings.database) as db:
        a = db.get(AnalysisRow, analysis_id)
        if a is None or a.lease_owner != owner:  # re-queued meanwhile: the row is someone else's now
            return "skipped"
        study = db.get(StudyRow, study_id)
        a.state, a.error, a.lease_owner = ("queued" if retry else "failed"), message[:2000], None
        a.finished_at = None if retry else utcnow()
        if study is not None:
            study.state = "queued" if retry else "failed"
    return "retry" if retry else "failed"


def result_path(settings: Settings, db: Session, analysis: AnalysisRow, name: str, folder: Path) -> Path:
    """Decrypt one stored result file of ``analysis`` into ``folder``."""
    key = (analysis.result.get("objects") or {}).get(name)
    if not key:
        raise LifecycleError(f"analysis {analysis.id} has no {name}")  # 409: a result this analysis did not write
    target = folder / name
    from neuronav.workflow.uploads import create_private

    with store_for(settings).open(key) as reader, create_private(target) as out:
        for chunk in reader:
            out.write(chunk)
    return target
