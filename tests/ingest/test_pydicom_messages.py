"""pydicom's messages are handled per thread: no reader toggles the process-wide warning filters."""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import RLELossless

from neuronav.ingest import scan
from neuronav.ingest.pydicom_messages import collected
from neuronav.volume.dicom import volume_from_series
from tests.ingest.conftest import only_series, write_series

_real_catch_warnings = warnings.catch_warnings


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    if sys._getframe(1).f_globals.get("__name__", "").startswith("neuronav."):
        raise AssertionError("warnings.catch_warnings() swaps the process-wide filters: not thread-safe")
    return _real_catch_warnings(*args, **kwargs)  # pytest's own use


def test_reading_a_study_toggles_no_warning_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = write_series(tmp_path / "s", transfer_syntax=RLELossless)  # type: ignore[arg-type]
    files[0].write_bytes(files[0].read_bytes()[:-300])  # pydicom reports the end of file: found all the same
    monkeypatch.setattr(warnings, "catch_warnings", _forbidden)
    inv = scan([tmp_path])
    assert [str(p.problem) for p in inv.problems] == [
        "file truncated: End of file reached before delimiter (FFFE,E0DD) found"
    ]
    assert volume_from_series(only_series(inv)).data.shape[2] == len(files) - 1


def test_each_thread_collects_only_its_own_messages() -> None:
    log = logging.getLogger("pydicom")
    started, logged = threading.Event(), threading.Event()
    theirs: list[str] = []

    def other() -> None:
        with collected() as messages:
            started.set()
            log.warning("other thread")
            logged.wait(5)
        theirs.extend(messages)

    thread = threading.Thread(target=other)
    with collected() as mine:
        thread.start()
        started.wait(5)
        log.warning("this thread")
        logged.set()
        thread.join(5)
    assert mine == ["this thread"] and theirs == ["other thread"]


def test_nothing_is_collected_outside_a_block() -> None:
    with collected() as messages:
        pass
    logging.getLogger("pydicom").warning("after the block")
    assert messages == []
