"""The report helper: one spawned worker process that writes an output beside the caller.

The Secondary Capture series is the largest output (the pixels of every slice, one DICOM file each).
Made by the helper it runs on a second core while the caller makes the PDF, SEG and SR, and its
CPU-bound, GIL-holding work stays out of the calling process (a web server's request threads).

* Spawned, never forked: the callers are multi-threaded (the web server's thread pool, ONNX Runtime,
  the embedded job worker), and a forked child inherits locks other threads held at the fork. A
  spawned worker is a fresh interpreter: its arguments are pickled (the Secondary Capture task pickles
  the report model and the source headers, about 25 MB and 0.1 s for 192 slices) and it reads the
  analysis images itself (0.4 s on its own core, less than pickling the three arrays costs the caller).
* One worker per process (a :class:`~concurrent.futures.ProcessPoolExecutor` of one spawn-context
  worker), started by :func:`warm_up` and kept for the next task. Only a caller that gains from it
  starts it: the web server's export (and ``neuronav analyze --formats … sc``, which starts it while
  the study is analysed). A one-shot command does not: the worker's start-up (imports, about 0.6 s of
  CPU) and the caller compete for the same cores, and the work is done sooner in the caller.
* :func:`submit` returns None when the worker was not started, when ``NEURONAV_REPORT_SERIAL`` is set,
  on one core, and in a daemonic process (which may not have children): callers then do the work.
* :func:`wait` waits at most ``timeout`` seconds (queueing behind another caller's task included); a
  timeout or a worker that died is a :class:`~neuronav.errors.ReportError`, and the worker is stopped
  (the next :func:`warm_up` starts a new one).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from neuronav.errors import ReportError

T = TypeVar("T")
TIMEOUT_S = 300.0  # a series of a thousand slices takes a few seconds

_executor: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def available() -> bool:
    """Whether this process may hand work to the helper (else callers do it themselves)."""
    from neuronav.config import Settings

    if Settings().report_serial:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > 1 and not multiprocessing.current_process().daemon


def _ready() -> None:
    """Run in the worker by :func:`warm_up`: the imports the report tasks need."""
    import neuronav.report.dicom_sc
    import neuronav.report.figures
    import neuronav.report.outputs  # noqa: F401


def warm_up() -> None:
    """Start the worker now (when :func:`available` and not yet started), without waiting for it."""
    global _executor
    if not available():
        return
    with _lock:
        if _executor is None:
            _executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            _executor.submit(_ready)


def submit(fn: Callable[..., T], *args: Any) -> Future[T] | None:
    """``fn(*args)`` in the helper (``fn`` and ``args`` must pickle); None when the worker was not
    started (:func:`warm_up`) or is not :func:`available` (any more)."""
    executor = _executor
    if executor is None or not available():
        return None
    try:
        return executor.submit(fn, *args)
    except (BrokenProcessPool, RuntimeError):  # it died, or was shut down, since it was started
        _discard(executor, kill=False)
        return None


def wait(future: Future[T], what: str, *, timeout: float = TIMEOUT_S) -> T:
    """The result of ``future``; ReportError naming ``what`` when it times out or the worker died."""
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        _discard(_executor, kill=True)
        raise ReportError(f"{what} did not finish within {timeout:g} s and was stopped") from None
    except BrokenProcessPool:
        _discard(_executor, kill=False)
        raise ReportError(f"{what} stopped without a result (its process ended: killed, or out of memory)") from None


def abandon(future: Future[Any], *, kill: bool) -> None:
    """The caller failed: drop ``future``'s task. Queued, it is cancelled; running, it is waited for
    (its files are then removed by the caller) or, with ``kill`` (an interrupt), its worker is stopped."""
    if future.cancel():
        return
    if kill:
        _discard(_executor, kill=True)
        return
    try:
        future.result(timeout=TIMEOUT_S)
    except BaseException:  # its outcome no longer matters; the caller's error is raised
        if not future.done():
            _discard(_executor, kill=True)


def stop() -> None:
    """Stop the worker now (a test, or a server shutting down); without this it ends with the process."""
    _discard(_executor, kill=True)


def _discard(executor: ProcessPoolExecutor | None, *, kill: bool) -> None:
    """Forget ``executor`` (the next :func:`warm_up` starts a new worker); with ``kill``, stop its worker first."""
    global _executor
    if executor is None:
        return
    with _lock:
        if _executor is executor:
            _executor = None
    if kill:
        # ProcessPoolExecutor has no public way to stop a busy worker before Python 3.14
        # (terminate_workers); its _processes maps pid → the worker's Process.
        procs = list((getattr(executor, "_processes", None) or {}).values())
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join(5)
    executor.shutdown(wait=False, cancel_futures=True)
