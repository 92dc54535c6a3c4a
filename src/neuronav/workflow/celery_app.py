"""Celery: the broker-backed worker (``NEURONAV_BROKER_URL``, e.g. redis://127.0.0.1:6379/0).

Run a worker on any machine that has the same database URL, broker URL and shared storage folder:
``neuronav worker`` (or ``celery -A neuronav.workflow.celery_app worker -c 1``). The task calls the
same :func:`neuronav.workflow.jobs.run_analysis` as the embedded worker; transient failures are
retried by Celery with back-off. Tasks are acknowledged late and prefetched one at a time, so a
worker that dies mid-job leaves it for another worker; and every worker runs the maintenance sweep
(:func:`neuronav.workflow.jobs.maintenance`: analyses whose lease expired are re-queued, unused private
temporary folders removed) every ``NEURONAV_MAINTENANCE_INTERVAL_S`` seconds, so recovery does not wait
for a server to restart.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from neuronav.config import get_settings
from neuronav.workflow.background import Periodic


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("neuronav", broker=settings.broker_url or "memory://")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        task_default_queue="neuronav-analysis",
    )
    return app


app = make_celery()


@app.task(name="neuronav.analyse", bind=True, max_retries=5)  # type: ignore[untyped-decorator]
def analyse_task(self, analysis_id: str) -> str:  # type: ignore[no-untyped-def]
    from neuronav.workflow.jobs import run_analysis

    outcome = run_analysis(analysis_id)
    if outcome == "retry":
        raise self.retry(countdown=min(60, 2**self.request.retries * 2))
    return outcome


_maintenance: list[Periodic] = []


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_maintenance(**_: Any) -> None:
    from neuronav.workflow.jobs import start_maintenance

    _maintenance.append(start_maintenance(get_settings()))


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_maintenance(**_: Any) -> None:
    while _maintenance:
        _maintenance.pop().stop()
