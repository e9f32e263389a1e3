"""Running ``nogil`` compiled loops over chunks of slices on a few threads."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def num_threads() -> int:
    """Threads for compiled loops (and distance transforms): the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_chunks(kernel: Callable[..., Any], n: int, *args: Any) -> None:
    """Run ``kernel(*args, start, stop)`` over ``range(n)`` in chunks on threads.

    ``kernel`` must release the GIL (``nogil=True``) and write only to its own
    part of the outputs. A few chunks per thread balance uneven work.
    """
    threads = num_threads()
    bounds = np.linspace(0, n, min(n, 4 * threads) + 1).astype(int)
    spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if threads == 1 or len(spans) == 1:
        kernel(*args, 0, n)
        return
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(kernel, *args, a, b) for a, b in spans]:
            future.result()
