"""Write boundaries, where the fault-injection tests kill a writer.

Every step of a write that changes what is on disk passes a :func:`checkpoint`
first. Normally a checkpoint does nothing. With ``BONEFRAME_CHECKPOINT_LOG=FILE``
each one appends its label to ``FILE`` (so a test counts the boundaries a
command crosses); with ``BONEFRAME_KILL_AT=N`` the process kills itself
(``SIGKILL``: no cleanup runs, as when the machine loses power) at the N-th.
``tests/test_faults.py`` then checks that every output name holds nothing or a
complete output, and that the next run cleans what was left.
"""

from __future__ import annotations

import os
import signal

__all__ = ["checkpoint"]

_passed = 0


def checkpoint(label: str) -> None:
    """A write boundary named ``label`` (see the module docstring)."""
    log = os.environ.get("BONEFRAME_CHECKPOINT_LOG")
    kill_at = os.environ.get("BONEFRAME_KILL_AT")
    if not log and not kill_at:
        return
    global _passed
    _passed += 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{_passed} {label}\n")
    if kill_at and _passed == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
