"""Health and metrics: ``/healthz`` (liveness), ``/readyz`` (database and storage), ``/metrics`` (Prometheus;
outside development it needs the scrape token ``NEURONAV_METRICS_TOKEN`` or an administrator's session).

Metrics (one registry per app, so several apps in one process do not collide)::

    neuronav_http_requests_total{method, route, status}        counter
    neuronav_http_request_duration_seconds{method, route}       histogram
    neuronav_jobs{state}                                         gauge, from the function given to
                                                                 :func:`set_jobs_source` (none: no samples)

``route`` is the route's path template (``/api/studies/{study_id}``), never the URL, so ids do not
multiply the series; requests that match no route count as ``<unmatched>``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import text

from neuronav.db.session import session_factory
from neuronav.service.deps import AuthFirstRoute, SettingsDep, metrics_access
from neuronav.storage.store import ObjectStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"], route_class=AuthFirstRoute)

JobsSource = Callable[[], Mapping[str, float]]


class Metrics:
    """The Prometheus metrics of one app (``app.state.metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "neuronav_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "neuronav_http_request_duration_seconds",
            "HTTP request duration in seconds by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs_source: JobsSource | None = None
        self.registry.register(_JobsCollector(self))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _JobsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("neuronav_jobs", "Analysis jobs by state.", labels=["state"])
        source = self._metrics.jobs_source
        if source is not None:
            try:
                counts = dict(source())
            except Exception:  # a failing source must not break the scrape
                log.warning("the jobs metrics source failed", exc_info=True)
                counts = {}
            for state, count in sorted(counts.items()):
                family.add_metric([state], float(count))
        yield family


def set_jobs_source(app: FastAPI, source: JobsSource | None) -> None:
    """Feed the ``neuronav_jobs{state}`` gauge: ``source()`` returns ``{state: count}`` at each scrape."""
    metrics: Metrics = app.state.metrics
    metrics.jobs_source = source


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def check_database(url: str) -> str:
    """``ok``, or why the database cannot answer (the exception's class only)."""
    try:
        with session_factory(url)() as session:
            session.execute(text("SELECT 1"))
            session.rollback()
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


def check_storage(store: ObjectStore | None) -> str:
    """``ok`` when a file can be created, written and removed in the store's temporary folder."""
    if store is None:
        return "unavailable (not opened)"
    try:
        folder = store.root / "tmp"
        fd, name = tempfile.mkstemp(prefix=".ready-", suffix=".partial", dir=folder)
        try:
            os.write(fd, b"ready")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


def readiness(settings_url: str, store: ObjectStore | None) -> Readiness:
    checks = {"database": check_database(settings_url), "storage": check_storage(store)}
    ok = all(value == "ok" for value in checks.values())
    return Readiness(status="ready" if ok else "unavailable", checks=checks)


@router.get("/healthz", response_model=Liveness)
def healthz() -> Liveness:
    """Liveness: the process answers. Checks nothing else (use /readyz for dependencies)."""
    return Liveness(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request, settings: SettingsDep) -> Any:
    """Readiness: the database answers a query and the object store is writable; 503 when either is not."""
    store = getattr(request.app.state, "store", None)
    result = readiness(settings.database, store if isinstance(store, ObjectStore) else None)
    if result.status != "ready":
        return JSONResponse(result.model_dump(), status_code=503)
    return result


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    dependencies=[Depends(metrics_access)],
)
def metrics_route(metrics: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    """Prometheus metrics in the text format: request counts and latency by route template and status,
    and analysis jobs by state. Outside development: ``Authorization: Bearer <NEURONAV_METRICS_TOKEN>``
    (a scraper) or an administrator's session."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


__all__ = ["Metrics", "check_database", "check_storage", "router", "set_jobs_source"]
