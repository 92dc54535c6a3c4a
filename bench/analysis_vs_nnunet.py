"""End-to-end analysis of one 4-sequence 1 mm study, side by side with nnU-Net v2 3d_fullres inference.

Usage:  bash bench/setup-nnunet.sh                      (once: the peer's own venv, bench/.venv-nnunet)
        .venv/bin/python bench/analysis_vs_nnunet.py [--seed 7] [--only ours|peer] [--keep]

Input: one phantom study, `neuronav.phantom.generate_study(seed, lesion="glioma", profile="iso1mm")`:
T1, T1c, T2 and FLAIR, all 3D 1 mm axial, 240 × 240 × 176 voxels, with a synthetic (not skull-stripped)
head.

OURS, timed as a user runs it: `.venv/bin/neuronav analyze <study>/dicom --out <dir>` in a child
process, from DICOM files to findings.json + segmentation + probability maps (ingest, volumes,
sequence identification, registration, preprocessing, segmentation, measurements, report).

PEER, timed the same way: nnU-Net v2 (the `nnunetv2` package) predicting the same study with the
3d_fullres default architecture as nnU-Net plans BraTS-like 1 mm data — PlainConvUNet, 6 stages,
32…320 features, 3³ kernels, strides 1,2,2,2,2,2, two convs per stage, InstanceNorm + LeakyReLU,
patch 128³, 4 input channels, 4 classes — with random weights (speed does not depend on them), one
fold, no test-time mirroring, Gaussian sliding window with step 0.5, on the CPU with 2 torch threads:
a child process running nnUNetPredictor.predict_from_files, which is what
`nnUNetv2_predict_from_modelfolder -f 0 --disable_tta -device cpu -npp 1 -nps 1` does (reading,
cropping, ZScore normalisation, sliding window, export of the segmentation NIfTI). See
bench/_nnunet_worker.py.

The peer is given a head start, so the ratio is conservative: its input is the same voxels already
converted to uncompressed NIfTI and already on one grid (the T1c's), as nnU-Net requires; that
conversion, any co-registration, and writing the model folder are done beforehand and not timed. It
does no sequence identification, registration, measurement or report.

Both children run with the machine's 2 cores available. For each the script reports wall time,
CPU time (user + sys of the child and its descendants) and peak memory: the peak of the summed PSS
of the child's process tree, sampled every 0.2 s, and the kernel's maxrss of its largest process
(whichever is larger is reported as "peak").

Targets (issue): ours ≤ 60 s wall (goal 20 s) and ≤ 4 GB peak; ours / peer wall ≤ 0.25.
Exit status: 0 when all three hold, 1 when one does not, 2 when a side could not run
("neuronav analyze not available", peer venv missing, a child failing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

ROOT = Path(__file__).resolve().parent.parent
NEURONAV = ROOT / ".venv" / "bin" / "neuronav"
PEER_PYTHON = ROOT / "bench" / ".venv-nnunet" / "bin" / "python"
WORKER = ROOT / "bench" / "_nnunet_worker.py"

TARGET_WALL_S, GOAL_WALL_S = 60.0, 20.0
TARGET_PEAK_MB = 4096.0
TARGET_RATIO = 0.25
THREADS = 2


@dataclass
class Run:
    """What one timed child process cost."""

    wall_s: float
    cpu_s: float
    tree_peak_mb: float
    max_process_mb: float
    returncode: int
    log: Path

    @property
    def peak_mb(self) -> float:
        return max(self.tree_peak_mb, self.max_process_mb)


def _tree_pss_mb(root: int) -> float:
    """Summed PSS (RSS where PSS is unreadable) of ``root`` and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total_kb += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    total_kb += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except OSError:
                pass
    return total_kb / 1024


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` to completion; wall, CPU and memory of it and everything it starts."""
    peak = [0.0]
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _tree_pss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        tree_peak_mb=peak[0],
        max_process_mb=usage.ru_maxrss / 1024,  # kB on Linux
        returncode=proc.returncode,
        log=log,
    )


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def worker_result(log: Path) -> dict:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {}


def analyze_available() -> bool:
    if not NEURONAV.exists():
        return False
    probe = subprocess.run([str(NEURONAV), "analyze", "--help"], capture_output=True, cwd=ROOT)
    return probe.returncode == 0


def run_ours(dicom: Path, out: Path, logs: Path) -> Run | None:
    print(f"ours: {NEURONAV.relative_to(ROOT)} analyze {dicom} --out {out}", flush=True)
    run = run_measured([str(NEURONAV), "analyze", str(dicom), "--out", str(out)], logs / "ours.log")
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if run.returncode != 0 or "findings.json" not in written:
        print(f"ours FAILED (exit {run.returncode}; wrote {written}); log tail:\n{tail(run.log)}", file=sys.stderr)
        return None
    print(f"  wrote {', '.join(written)}")
    return run


def run_peer(nifti: Path, work: Path, logs: Path) -> tuple[Run, dict] | None:
    model, inputs, out = work / "nnunet_model", work / "nnunet_input", work / "nnunet_output"
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "nnUNet_def_n_proc": str(THREADS)}
    print("peer: writing nnU-Net model folder (random weights) and input files (not timed)", flush=True)
    prep = subprocess.run(
        [
            str(PEER_PYTHON),
            str(WORKER),
            "prepare",
            "--nifti",
            str(nifti),
            "--model",
            str(model),
            "--inputs",
            str(inputs),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    (logs / "peer_prepare.log").write_text(prep.stdout + prep.stderr)
    if prep.returncode != 0:
        print(f"peer prepare FAILED:\n{tail(logs / 'peer_prepare.log')}", file=sys.stderr)
        return None
    info = worker_result(logs / "peer_prepare.log")
    print(
        f"  {info.get('parameters', 0) / 1e6:.1f} M parameters; input {info.get('shape')}; "
        f"resampled onto the T1c grid: {info.get('resampled') or 'none (all on one grid)'}"
    )
    print("peer: nnUNetPredictor.predict_from_files (timed; minutes on 2 cores)", flush=True)
    run = run_measured(
        [
            str(PEER_PYTHON),
            str(WORKER),
            "predict",
            "--model",
            str(model),
            "--inputs",
            str(inputs),
            "--out",
            str(out),
            "--threads",
            str(THREADS),
        ],
        logs / "peer_predict.log",
        env=env,
    )
    if run.returncode != 0:
        print(f"peer predict FAILED (exit {run.returncode}); log tail:\n{tail(run.log)}", file=sys.stderr)
        return None
    detail = worker_result(run.log)
    print(
        f"  import {detail.get('import_s')} s, load model {detail.get('init_s')} s, "
        f"preprocess + sliding window + export {detail.get('predict_and_export_s')} s"
    )
    return run, detail


def report(ours: Run | None, peer: Run | None) -> bool:
    """Print the side-by-side figures; True when every target is met."""
    print(f"\nEnd-to-end analysis, 4-sequence 1 mm study — {machine()}")
    print(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  {'':40s} {'wall s':>9s} {'CPU s':>9s} {'peak MB':>9s}")
    for label, run in (
        ("ours: neuronav analyze (DICOM → report)", ours),
        ("peer: nnU-Net v2 3d_fullres, 1 fold, no TTA", peer),
    ):
        if run is None:
            print(f"  {label:40s} {'—':>9s}")
        else:
            print(
                f"  {label:40s} {run.wall_s:9.1f} {run.cpu_s:9.1f} {run.peak_mb:9.0f}"
                f"   (tree PSS {run.tree_peak_mb:.0f}, largest process {run.max_process_mb:.0f})"
            )
    ok = ours is not None and peer is not None
    if ours is not None:
        wall_ok, mem_ok = ours.wall_s <= TARGET_WALL_S, ours.peak_mb <= TARGET_PEAK_MB
        ok = ok and wall_ok and mem_ok
        print(
            f"  ours wall {ours.wall_s:.1f} s   (target ≤ {TARGET_WALL_S:.0f} s, goal {GOAL_WALL_S:.0f} s) "
            f"{'✔' if wall_ok else '✘'}"
        )
        print(f"  ours peak {ours.peak_mb:.0f} MB (target ≤ {TARGET_PEAK_MB:.0f} MB) {'✔' if mem_ok else '✘'}")
    if ours is not None and peer is not None:
        ratio = ours.wall_s / peer.wall_s
        ratio_ok = ratio <= TARGET_RATIO
        ok = ok and ratio_ok
        print(f"  ratio (ours / peer, wall) = {ratio:.3f}   (target ≤ {TARGET_RATIO}) {'✔' if ratio_ok else '✘'}")
        print(f"  ratio (ours / peer, CPU)  = {ours.cpu_s / peer.cpu_s:.3f}   (for reference)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("ours", "peer"), help="run one side only (no ratio)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (inputs, outputs, logs)")
    args = parser.parse_args()

    do_ours, do_peer = args.only in (None, "ours"), args.only in (None, "peer")
    missing = False
    if do_ours and not analyze_available():
        print(
            "neuronav analyze not available: `.venv/bin/neuronav analyze --help` fails "
            "(install the project with scripts/setup.sh, or the command is not merged yet)",
            file=sys.stderr,
        )
        do_ours, missing = False, True
    if do_peer and not PEER_PYTHON.exists():
        print("nnU-Net peer not installed: run `bash bench/setup-nnunet.sh` first", file=sys.stderr)
        do_peer, missing = False, True
    if not (do_ours or do_peer):
        return 2

    from neuronav.phantom import generate_study

    work = Path(tempfile.mkdtemp(prefix="nn-bench-analysis-"))
    logs = work / "logs"
    logs.mkdir()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M} · work folder {work}", flush=True)
    ours = peer = None
    try:
        if do_ours:
            generate_study(work / "study", seed=args.seed, lesion="glioma", fmt="dicom", profile="iso1mm")
            out = run_ours(work / "study" / "dicom", work / "ours_output", logs)
            ours, missing = out, missing or out is None
        if do_peer:
            # The same seed gives the same voxels; NIfTI is the peer's input format.
            generate_study(work / "study_nifti", seed=args.seed, lesion="glioma", fmt="nifti", profile="iso1mm")
            got = run_peer(work / "study_nifti" / "nifti", work, logs)
            peer, missing = (got[0] if got else None), missing or got is None
        ok = report(ours, peer)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if missing:
        return 2
    if args.only:
        return 0 if (ours is None or (ours.wall_s <= TARGET_WALL_S and ours.peak_mb <= TARGET_PEAK_MB)) else 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
