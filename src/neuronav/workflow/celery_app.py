"""Celery: the broker-backed worker (``NEURONAV_BROKER_URL``, e.g. redis://127.0.0.1:6379/0).

Run a worker on any machine that has the same database URL, broker URL and shared storage folder:
``neuronav worker`` (or ``celery -A neuronav.workflow.celery_app worker -c 1``). The task calls the
same :func:`neuronav.workflow.jobs.run_analysis` as the embedded worker; transient failures are
retried by Celery with back-off. Tasks are acknowledged late and prefetched one at a time, so a
worker that dies mid-job leaves it for another worker.
"""

from __future__ import annotations

from celery import Celery

from neuronav.config import get_settings


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
