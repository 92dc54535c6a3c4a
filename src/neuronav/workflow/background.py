"""Periodic background work of a server or worker process: a daemon thread per task, stopped on shutdown.

Used by the app's lifespan (:mod:`neuronav.service.app`) and the Celery worker (:mod:`.celery_app`) for
the job-lease sweep and temporary-folder sweep (:func:`neuronav.workflow.jobs.maintenance`) and for
shipping audit anchors (:func:`neuronav.workflow.anchors.ship`). A failing run is logged (its exception's
class only: messages could quote patient data) and the next one runs on time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Call ``task`` every ``interval_s`` seconds in a daemon thread (first call after one interval, or at
    once with ``immediately``) until :meth:`stop`."""

    def __init__(self, name: str, interval_s: float, task: Callable[[], object], *, immediately: bool = False) -> None:
        self.name = name
        self.interval_s = interval_s
        self._task = task
        self._immediately = immediately
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"neuronav-{name}", daemon=True)
        self.runs = 0

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run the task now instead of at the end of the current interval (e.g. new work was committed)."""
        self._wake.set()

    def _wait(self) -> bool:
        """Wait an interval, or until woken; True when stopped."""
        self._wake.wait(self.interval_s)
        self._wake.clear()
        return self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        if not self._immediately and self._wait():
            return
        while True:
            try:
                self._task()
            except Exception as exc:
                log.warning(
                    "background task %s failed (%s); next run in %.0f s", self.name, type(exc).__name__, self.interval_s
                )
            self.runs += 1
            if self._wait():
                return


__all__ = ["Periodic"]
