"""pydicom's messages about what it reads, handled without changing global state per call.

pydicom reports problems in a file (an invalid value, a truncated data set) with ``warn_and_log``:
a message to its ``pydicom`` logger, then a ``UserWarning`` with the same text, often quoting the
value (patient data). ``warnings.catch_warnings()`` around each read would swap the process-wide
filter list, which is not thread-safe (a server reads uploads in several threads at once: one
thread's exit can drop another's filter, and a recording block collects other threads' warnings).
So, set up once when this module is imported:

* pydicom's UserWarnings are ignored in the whole process (they would print values to stderr);
* a handler on the ``pydicom`` logger hands each message to :func:`collected` blocks of the thread
  that logged it, so a reader can act on what pydicom reported about its own file (truncation).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class _ThreadCollector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink: list[str] | None = getattr(_local, "sink", None)
        if sink is not None:
            sink.append(record.getMessage())


@contextmanager
def collected() -> Iterator[list[str]]:
    """The messages pydicom logs (warnings and errors) in this thread while the block runs."""
    outer = getattr(_local, "sink", None)
    sink: list[str] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = outer


warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
logging.getLogger("pydicom").addHandler(_ThreadCollector(logging.WARNING))
