"""PACS round trip: study complete (last instance acknowledged) → SEG, SR and PDF stored in Orthanc, next to
``neuronav analyze`` alone on the same study, in the same run.

Orthanc (Debian's, with its DICOMweb plugin; ``tests/peers.py`` starts it on loopback ports) holds the
576-instance phantom study (seed 7) and sends it to NeuroNav's DICOM listener by C-STORE (its REST
``/modalities/neuronav/store``, synchronous: it returns once the last instance is acknowledged). Then the
service path runs as ``neuronav serve`` runs it: the listener completes the study after the stable age
(``--stable-age``, seconds), the embedded worker analyses it, the analysis queues the preliminary
deliveries of the node the study came from (``default_route``: SEG, SR, Encapsulated PDF), and the
outbox thread C-STOREs them to Orthanc. The clock stops when Orthanc's REST API lists the three result
instances in the study. The peer: ``neuronav analyze <study> --out <dir>`` in a child process, the same
study. Printed: both, and the ratio (round trip − stable age) / analyze (target ≤ 1.3).

    .venv/bin/python bench/pacs_round_trip.py [--stable-age 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench._common import machine  # noqa: E402


def _analyze_alone(work: Path, folder: Path) -> float:
    out = work / f"analyze-{time.monotonic_ns()}"
    neuronav = Path(sys.executable).with_name("neuronav")
    command = [str(neuronav)] if neuronav.exists() else [sys.executable, "-m", "neuronav.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    done = subprocess.run([*command, "analyze", str(folder), "--out", str(out)], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    if done.returncode != 0 or not (out / "findings.json").exists():
        raise SystemExit(f"neuronav analyze failed: {done.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def _round_trip(work: Path, orthanc: object, study: str, stable_age: float, n: int) -> tuple[float, dict[str, float]]:
    from neuronav.config import get_settings, load_settings
    from neuronav.db.session import migrate, session_scope
    from neuronav.integrations.dimse.listener import Listener
    from neuronav.integrations.outbox import start_outbox
    from neuronav.storage.store import ObjectStore
    from neuronav.workflow.nodes import NodeIn, add_node

    o: object = orthanc
    data = work / f"neuronav-{time.monotonic_ns()}"
    os.environ.update(
        {
            "NEURONAV_DATA_DIR": str(data),
            "NEURONAV_ENV": "development",
            "NEURONAV_DICOM_STABLE_AGE": str(stable_age),
            "NEURONAV_OUTBOX_INTERVAL_S": "1",
        }
    )
    for name in ("NEURONAV_DATABASE_URL", "NEURONAV_BROKER_URL"):
        os.environ.pop(name, None)
    get_settings.cache_clear()
    settings = load_settings()
    migrate(settings.database)
    store = ObjectStore.from_settings(settings)
    with session_scope(settings.database) as db:
        add_node(db, None, NodeIn(
            name="orthanc", ae_title=o.aet, host="127.0.0.1", port=o.dicom_port, incoming=True,  # type: ignore[attr-defined]
            send=["seg", "sr", "epdf"], send_on=["preliminary"], default_route=True,
        ))  # fmt: skip
    listener = Listener(settings, store, host="127.0.0.1", port=0).start()
    outbox = start_outbox(settings, store)
    try:
        o.set_modality("neuronav", "NEURONAV", "127.0.0.1", listener.address[1])  # type: ignore[attr-defined]
        before = len(o.rest("GET", f"/studies/{study}/instances"))  # type: ignore[attr-defined]
        t_send = time.perf_counter()
        job = o.rest("POST", "/modalities/neuronav/store", {"Resources": [study], "Synchronous": True})  # type: ignore[attr-defined]
        t_last = time.perf_counter()  # the last instance was acknowledged
        if job.get("FailedInstancesCount") or job.get("InstancesCount") != n:
            raise SystemExit(f"Orthanc's C-STORE to NeuroNav: {job}")
        deadline = t_last + 1800
        while len(o.rest("GET", f"/studies/{study}/instances")) < before + 3:  # type: ignore[attr-defined]
            if time.perf_counter() > deadline:
                raise SystemExit("the results did not arrive in Orthanc within 30 minutes")
            time.sleep(0.2)
        t_done = time.perf_counter()
        modalities = sorted(
            s["MainDicomTags"]["Modality"]
            for s in o.rest("GET", f"/studies/{study}/series")  # type: ignore[attr-defined]
        )
        if not {"SEG", "SR", "DOC"} <= set(modalities):
            raise SystemExit(f"Orthanc's study holds {modalities}, not SEG, SR and DOC")
    finally:
        outbox.stop()
        listener.stop()
    # leave Orthanc's study as it was (the results removed) for the next round
    for series in o.rest("GET", f"/studies/{study}/series"):  # type: ignore[attr-defined]
        if series["MainDicomTags"]["Modality"] in ("SEG", "SR", "DOC"):
            o.rest("DELETE", f"/series/{series['ID']}")  # type: ignore[attr-defined]
    shutil.rmtree(data, ignore_errors=True)
    return t_done - t_last, {"C-STORE of the study": t_last - t_send}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stable-age", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from tests.peers import _start_orthanc

    from neuronav.phantom import generate_study

    work = Path(tempfile.mkdtemp(prefix="neuronav-bench-pacs-"))
    trips: list[float] = []
    alone: list[float] = []
    extra: dict[str, float] = {}
    try:
        generate_study(work / "study", seed=7, fmt="dicom", profile="clinical")
        folder = work / "study" / "dicom"
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        (work / "orthanc").mkdir()
        orthanc = _start_orthanc(work / "orthanc")
        try:
            ids = orthanc.upload(files)
            study = orthanc.rest("GET", f"/instances/{ids[0]}/study")["ID"]
            for _ in range(args.rounds):  # alternating, the peer first (page cache warm for both)
                alone.append(_analyze_alone(work, folder))
                trip, extra = _round_trip(work, orthanc, study, args.stable_age, len(files))
                trips.append(trip)
        finally:
            orthanc.process.terminate()
            orthanc.process.wait(20)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    trip, peer = min(trips), min(alone)
    ratio = (trip - args.stable_age) / peer
    print(f"PACS round trip, phantom seed 7 ({len(files)} instances) · {machine()}")
    print(
        f"  study complete → SEG, SR, PDF in Orthanc   {trip:7.1f} s   (rounds: {', '.join(f'{t:.1f}' for t in trips)})"
    )
    print(f"    of which the stable age                  {args.stable_age:7.1f} s")
    for label, value in extra.items():
        print(f"  ({label}, before the clock starts        {value:7.1f} s)")
    print(
        f"  neuronav analyze alone, same study         {peer:7.1f} s   (rounds: {', '.join(f'{t:.1f}' for t in alone)})"
    )
    print(f"  ratio (round trip - stable age) / analyze = {ratio:.2f}   (target <= 1.3)")


if __name__ == "__main__":
    main()
