"""Helpers shared by the benchmarks: timing, one-core pinning, printing a side-by-side ratio."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def pin_to_one_core() -> int:
    """Run this process on one CPU core; return the core number."""
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return core


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median and all wall times (s) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} · {cpu} · {os.cpu_count()} CPUs · Python {platform.python_version()}"


def print_ratio(title: str, ours_label: str, ours: float, peer_label: str, peer: float, goal: str) -> float:
    ratio = ours / peer
    print(f"\n{title}")
    print(f"  {ours_label:45s} {ours * 1000:10.1f} ms")
    print(f"  {peer_label:45s} {peer * 1000:10.1f} ms")
    print(f"  ratio (ours / peer) = {ratio:.2f}   ({goal})")
    return ratio
