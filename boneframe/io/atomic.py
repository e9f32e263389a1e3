"""Atomic outputs: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from boneframe.errors import VolumeIOError


def remove_path(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite``."""
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise VolumeIOError(f"{path} already exists (use --overwrite to replace it)")
    if not path.parent.exists():
        raise VolumeIOError(f"cannot write {path}: directory {path.parent} does not exist")


@contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary name ends with the target's name, so extension-sensitive
    writers (``.nii.gz``) behave. On failure the temporary output is removed and
    an existing ``path`` is left untouched.

    Examples
    --------
    >>> with atomic_path(tmp / "x.npy") as tmp_path:        # doctest: +SKIP
    ...     np.save(tmp_path, array)
    """
    target = Path(path)
    check_writable(target, overwrite)
    tmp = target.with_name(f".{uuid.uuid4().hex[:8]}.tmp-{target.name}")
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise VolumeIOError(f"writing {target} produced no output")
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{uuid.uuid4().hex[:8]}.old-{target.name}")
            os.replace(target, old)
            os.replace(tmp, target)
            remove_path(old)
        else:
            if tmp.is_dir() and target.exists():
                target.unlink()
            os.replace(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
