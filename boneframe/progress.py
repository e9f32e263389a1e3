"""Progress of iterative stages: rich bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from boneframe.interfaces import Callback


class Reporter:
    """Reports stages and iterations to stderr.

    Parameters
    ----------
    quiet : bool
        Report nothing.
    rich : bool or None
        Use rich progress bars; default: when stderr is a terminal.
    every : int
        In plain mode, one line every ``every`` iterations (and the last).
    """

    def __init__(self, quiet: bool = False, rich: bool | None = None, every: int = 10):
        self.quiet = quiet
        self.rich = sys.stderr.isatty() if rich is None else rich
        self.every = every

    def message(self, text: str) -> None:
        """A one-line message (stage started, file written, ...)."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, label: str, total: int | None = None) -> Iterator[Callback]:
        """A context giving a solver callback that reports each iteration."""
        start = time.perf_counter()
        if self.quiet:
            yield lambda i, x, record: None
            return
        if self.rich:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed} it"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            ) as bar:
                task = bar.add_task(label, total=total, info="")

                def update(i: int, x: Any, record: dict[str, float]) -> None:
                    bar.update(task, completed=i + 1, info=_summary(record))

                yield update
        else:

            def log(i: int, x: Any, record: dict[str, float]) -> None:
                if (i + 1) % self.every == 0 or i == 0:
                    print(f"{label}: iteration {i + 1} {_summary(record)}", file=sys.stderr)

            self.message(f"{label}: started")
            yield log
        self.message(f"{label}: done in {time.perf_counter() - start:.1f} s")


    @contextmanager
    def tasks(self, label: str, total: int, tag: str, every_s: float = 5.0) -> Iterator[None]:
        """Report the units of work that call :func:`tick` with ``tag`` (e.g. the
        blocks of a block-wise solve) as they finish: done of ``total``, elapsed
        and time left, at most every ``every_s`` seconds.

        Ticks come from the threads of this process (dask's default scheduler);
        work on a ``dask.distributed`` cluster is followed on its dashboard.
        """
        if self.quiet or total <= 0:
            yield
            return
        start = time.perf_counter()
        state = {"done": 0, "shown": start}

        def done() -> None:
            with _LOCK:
                state["done"] += 1
                now = time.perf_counter()
                if now - state["shown"] < every_s and state["done"] < total:
                    return
                state["shown"] = now
                count = state["done"]
            elapsed = now - start
            left = elapsed / count * max(total - count, 0)
            self.message(
                f"{label}: {count}/{total} blocks, {elapsed:.0f} s, about {left:.0f} s left"
            )

        self.message(f"{label}: {total} blocks")
        _LISTENERS.setdefault(tag, []).append(done)
        try:
            yield
        finally:
            _LISTENERS[tag].remove(done)
        self.message(f"{label}: done in {time.perf_counter() - start:.1f} s")


_LOCK = threading.Lock()
_LISTENERS: dict[str, list[Callable[[], None]]] = {}


def tick(tag: str) -> None:
    """One unit of the work ``tag`` is done: tell the :meth:`Reporter.tasks` following it."""
    for listener in list(_LISTENERS.get(tag, ())):
        listener()


def _summary(record: dict[str, float]) -> str:
    keys = ("objective", "psnr", "dice", "relative_change", "rel_change")
    parts = [f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), int | float)]
    return " ".join(parts)
