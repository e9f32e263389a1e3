"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any


def best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def report(label: str, ours: float, baseline: float, target: str = "") -> None:
    """Print boneframe's time, the baseline's, their ratio and the target."""
    ratio = baseline / ours if ours > 0 else float("inf")
    line = f"{label}: boneframe {ours:.3f} s | baseline {baseline:.3f} s | ratio {ratio:.1f}x"
    if target:
        line += f" | target {target}"
    print(line, flush=True)


def machine() -> str:
    """A short description of this machine."""
    return f"{os.cpu_count()} cores"
