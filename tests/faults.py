"""Helpers of the fault-injection tests: run the CLI in a forked child that kills
itself (SIGKILL) at its N-th write boundary, and check what it left behind.

A forked child starts in milliseconds (the parent's imports are already done), so
every kill point of every writing command can be tried in a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

KILLED = -signal.SIGKILL


def run_forked(argv: Sequence[str], *, kill_at: int | None = None, log: Path | None = None,
               cwd: Path | None = None) -> int:  # fmt: skip
    """``boneframe ARGV`` in a forked child: its exit code, or ``KILLED``.

    ``kill_at`` sets ``BONEFRAME_KILL_AT`` (the child kills itself at that write
    boundary); ``log`` sets ``BONEFRAME_CHECKPOINT_LOG`` (each boundary's label
    appended, one a line).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if cwd is not None:
                os.chdir(cwd)
            os.environ.pop("BONEFRAME_KILL_AT", None)
            os.environ.pop("BONEFRAME_CHECKPOINT_LOG", None)
            if kill_at is not None:
                os.environ["BONEFRAME_KILL_AT"] = str(kill_at)
            if log is not None:
                os.environ["BONEFRAME_CHECKPOINT_LOG"] = str(log)
            _fresh_thread_pools()
            from boneframe.cli import main

            code = main(list(argv))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _fresh_thread_pools() -> None:
    """A forked child has only the forking thread: pools made by the parent point at
    threads that do not exist here, and would wait for them forever."""
    import threading

    import dask.threaded

    dask.threaded.default_pool = None
    dask.threaded.pools.clear()
    dask.threaded.pools_lock = threading.Lock()


def kill_points(argv: Sequence[str], log: Path, cwd: Path | None = None) -> list[str]:
    """The labels of the write boundaries ``boneframe ARGV`` crosses (it runs fully)."""
    log.unlink(missing_ok=True)
    code = run_forked(argv, log=log, cwd=cwd)
    assert code == 0, f"boneframe {' '.join(argv)} exited {code}"
    return log.read_text().splitlines() if log.exists() else []


def hidden_leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` that a killed writer may leave (temporary siblings)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def info_reads(path: Path) -> bool:
    """``boneframe info PATH`` reads it (in a child process: nothing cached)."""
    proc = subprocess.run(
        [sys.executable, "-m", "boneframe.cli", "info", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


def sidecar_matches(volume: Path) -> bool:
    """The volume's sidecar exists and names this volume's content."""
    from boneframe.io import sidecar_path
    from boneframe.io.sidecar import sidecar_belongs

    side = sidecar_path(volume)
    return side.is_file() and sidecar_belongs(volume, json.loads(side.read_text()))
