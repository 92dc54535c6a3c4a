"""C-STORE receive throughput: NeuroNav's DICOM listener vs Orthanc, same sender, same study, same run.

The 576-instance phantom study (seed 7, 4 series) is sent by dcmtk's ``storescu`` (one association,
every file) to each receiver in turn, ``--rounds`` times, alternating; each receiver starts empty
each round (a fresh NeuroNav data folder, Orthanc's patients deleted). NeuroNav stores each instance
encrypted and commits its rows before answering Success (SQLite, the embedded default); Orthanc
(Debian's, default storage settings, its SQLite index) on loopback ports with its own configuration.
Printed: the median seconds for the study and instances/s of each, and the throughput ratio
(NeuroNav / Orthanc; target ≥ 0.5, goal ≥ 1.0).

    .venv/bin/python bench/dicom_receive.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench._common import machine  # noqa: E402


def _storescu(port: int, aec: str, folder: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        ["storescu", "-aet", "STORESCU", "-aec", aec, "+sd", "+r", "-nh", "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"storescu to {aec} failed: {done.stderr[-1000:]}")
    return elapsed


def _neuronav_round(work: Path, folder: Path, n: int) -> float:
    from neuronav.config import get_settings, load_settings
    from neuronav.db.models import DicomInstanceRow
    from neuronav.db.session import migrate, session_scope
    from neuronav.integrations.dimse.listener import Listener
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.nodes import NodeIn, add_node

    data = work / f"neuronav-{time.monotonic_ns()}"
    os.environ.update(
        {"NEURONAV_DATA_DIR": str(data), "NEURONAV_ENV": "development", "NEURONAV_DICOM_STABLE_AGE": "3600"}
    )
    get_settings.cache_clear()
    settings = load_settings()
    migrate(settings.database)
    with session_scope(settings.database) as db:
        add_node(db, None, NodeIn(name="bench", ae_title="STORESCU", host="127.0.0.1", port=104, incoming=True))
    listener = Listener(settings, ObjectStore.from_settings(settings), host="127.0.0.1", port=0).start()
    try:
        seconds = _storescu(listener.address[1], "NEURONAV", folder)
    finally:
        listener.stop()
    with session_scope(settings.database) as db:
        held = db.query(DicomInstanceRow).count()
    if held != n:
        raise SystemExit(f"NeuroNav holds {held} instances, not {n}")
    shutil.rmtree(data, ignore_errors=True)
    return seconds


def _orthanc_round(orthanc: object, folder: Path, n: int) -> float:
    orthanc.clear()  # type: ignore[attr-defined]
    seconds = _storescu(orthanc.dicom_port, orthanc.aet, folder)  # type: ignore[attr-defined]
    held = len(orthanc.rest("GET", "/instances"))  # type: ignore[attr-defined]
    if held != n:
        raise SystemExit(f"Orthanc holds {held} instances, not {n}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests.peers import _start_orthanc

    from neuronav.phantom import generate_study

    work = Path(tempfile.mkdtemp(prefix="neuronav-bench-dimse-"))
    try:
        generate_study(work / "study", seed=7, fmt="dicom", profile="clinical")
        folder = work / "study" / "dicom"
        n = sum(1 for p in folder.rglob("*") if p.is_file())
        (work / "orthanc").mkdir()
        orthanc = _start_orthanc(work / "orthanc")
        try:
            _orthanc_round(orthanc, folder, n)  # warm-up: page cache, both sides
            _neuronav_round(work, folder, n)
            ours, peer = [], []
            for _ in range(args.rounds):
                peer.append(_orthanc_round(orthanc, folder, n))
                ours.append(_neuronav_round(work, folder, n))
        finally:
            orthanc.process.terminate()
            orthanc.process.wait(20)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    o, p = statistics.median(ours), statistics.median(peer)
    print(f"C-STORE receive, {n} instances, storescu one association · {machine()}")
    print(
        f"  NeuroNav listener   {o:7.2f} s  {n / o:7.1f} instances/s   (rounds: {', '.join(f'{t:.2f}' for t in ours)})"
    )
    print(
        f"  Orthanc             {p:7.2f} s  {n / p:7.1f} instances/s   (rounds: {', '.join(f'{t:.2f}' for t in peer)})"
    )
    print(f"  throughput ratio (NeuroNav / Orthanc) = {p / o:.2f}   (target >= 0.5, goal >= 1.0)")


if __name__ == "__main__":
    main()
