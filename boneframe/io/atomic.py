"""Outputs that are never lost and never half-written.

The protocol, for every file or folder boneframe writes:

* **Reserve the name** for the whole command (:func:`reserve`): an exclusive
  ``flock`` on a lock file ``.NAME.lock`` (which also records the writer's
  process id and host, for the message). A second writer to the same name, in
  this process or another, on this machine or another one sharing the disk, is
  refused while the first holds it; the kernel drops the lock of a killed
  writer, so the next writer simply takes it and removes that writer's
  temporary leftovers. (Where ``flock`` is missing, the lock file is created
  exclusively and a lock whose process is gone is stale.)
* **Write beside it** into ``.tmp-PID-XXXXXXXX-NAME`` (:func:`atomic_path`; the
  name ends as the target's, for writers that read the extension), and
  **commit** with one rename at the end. The rename never replaces a name that
  was absent when the command started: if someone else created it meanwhile,
  theirs is kept and the command fails. Only a name found at the start, with
  ``overwrite``, is replaced.
* Anything a killed writer leaves is a hidden sibling with its process id in
  its name, removed by the next writer of that name.

A volume and its JSON sidecar are one unit (:func:`boneframe.io.write_volume`):
the sidecar, which records the volume's fingerprint, is committed first and
the volume last, so a volume never appears without its metadata.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from boneframe.errors import VolumeIOError
from boneframe.io.faults import checkpoint

__all__ = [
    "atomic_path",
    "check_writable",
    "mark_absent",
    "remove_path",
    "rename_noreplace",
    "reserve",
]

#: Names held: (process id, thread id, absolute path) -> [depth, existed]. "existed":
#: the name may be replaced by this holder's commit (it was there when reserved, or
#: the holder committed it since). The process id keeps a forked child from
#: inheriting its parent's reservations, the thread id one thread from writing
#: through another's.
_HELD: dict[tuple[int, int, str], list] = {}
#: Leftovers of the first release (``.XXXXXXXX.tmp-NAME``, no process id) older
#: than this many seconds are removed too.
LEGACY_LEFTOVER_AGE = 3600.0


def remove_path(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite``; refuse a
    missing folder, and the current folder or one above it."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise VolumeIOError(f"{path} already exists (use --overwrite to replace it)")
    if not path.parent.is_dir():
        raise VolumeIOError(f"cannot write {path}: directory {path.parent} does not exist")
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise VolumeIOError(f"refusing to write {path}: it holds the current directory")


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process: cannot tell, assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, host = lock.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def clean_leftovers(target: Path) -> list[Path]:
    """Remove what killed writers of ``target`` left beside it; returns what was removed.

    Temporaries name their writer's process id (``.tmp-PID-XXXXXXXX-NAME``,
    ``.old-PID-XXXXXXXX-NAME``): only those of processes that are gone are removed.
    """
    pattern = re.compile(rf"^\.(tmp|old)-(\d+)-[0-9a-f]{{8}}-{re.escape(target.name)}$")
    legacy = re.compile(rf"^\.[0-9a-f]{{8}}\.(tmp|old)-{re.escape(target.name)}$")
    host, removed = socket.gethostname(), list[Path]()
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        m = pattern.match(sibling.name)
        stale = m is not None and not _alive(int(m.group(2)), host)
        if legacy.match(sibling.name):
            with contextlib.suppress(OSError):
                stale = time.time() - sibling.lstat().st_mtime > LEGACY_LEFTOVER_AGE
        if stale:
            remove_path(sibling)
            removed.append(sibling)
    return removed


def _key(target: Path) -> tuple[int, int, str]:
    return os.getpid(), threading.get_ident(), os.path.abspath(target)


def _busy(target: Path, lock: Path) -> VolumeIOError:
    owner = _owner(lock)
    who = "another writer" if owner is None else f"process {owner[0]} on {owner[1]}"
    return VolumeIOError(f"{target} is being written by {who}; wait for it to finish")


def _lock_exclusive_file(target: Path, lock: Path) -> Callable[[], None]:
    """The lock where ``flock`` is missing: the lock file created exclusively."""
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _owner(lock)
            if attempt == 0 and owner is not None and not _alive(*owner):
                lock.unlink(missing_ok=True)  # its writer was killed: stale
                continue
            raise VolumeIOError(
                f"{_busy(target, lock)} (or remove {lock} if that process is gone)"
            ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
    return lambda: lock.unlink(missing_ok=True)


def _lock(target: Path) -> Callable[[], None]:
    """Take the lock of ``target``; returns its release."""
    lock = _lock_path(target)
    if fcntl is None:  # pragma: no cover - Windows
        return _lock_exclusive_file(target, lock)
    for _ in range(16):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(target, lock) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
                return _lock_exclusive_file(target, lock)  # a file system without flock
            raise
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # its holder released (removed) it as we opened it: take the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())

        def release(fd: int = fd) -> None:
            with contextlib.suppress(OSError):
                lock.unlink()  # removed while still held: nobody locks a removed file
            os.close(fd)

        return release
    raise _busy(target, lock)


@contextlib.contextmanager
def reserve(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[bool]:
    """Hold ``path`` for this thread for the ``with`` block; yields whether it existed.

    Re-entrant within one thread (a command reserves its output at the start,
    the writer that commits it at the end reserves it again).

    Raises
    ------
    VolumeIOError
        ``path`` exists and not ``overwrite``; its folder is missing; another
        writer (process or thread) holds it.
    """
    target = Path(path)
    key = _key(target)
    if key in _HELD:
        _HELD[key][0] += 1
        try:
            yield _HELD[key][1]
        finally:
            _HELD[key][0] -= 1
        return
    check_writable(target, overwrite)
    release = _lock(target)
    try:
        clean_leftovers(target)
        check_writable(target, overwrite)  # again: it may have appeared while we waited
        existed = target.exists() or target.is_symlink()
        _HELD[key] = [1, existed]
        yield existed
    finally:
        _HELD.pop(key, None)
        release()


def mark_absent(path: str | os.PathLike[str]) -> None:
    """The holder of ``path`` removed what was there: a later commit must not replace
    what someone else puts there meanwhile."""
    held = _HELD.get(_key(Path(path)))
    if held is not None:
        held[1] = False


def _mark_committed(target: Path) -> None:
    held = _HELD.get(_key(target))
    if held is not None:
        held[1] = True  # the name now holds this holder's output


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (then ``FileExistsError``).

    Atomic on Linux (``renameat2`` with ``RENAME_NOREPLACE``); elsewhere a hard
    link for files, and a checked rename for folders and where the file system
    has no hard links.
    """
    if _RENAMEAT2 is not None:
        rc = _RENAMEAT2(  # type: ignore[operator]
            _AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE
        )
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(dst))
    if src.is_dir() and not src.is_symlink():
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:  # no hard links here (some network and FAT file systems)
        no_links = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)
        if exc.errno not in no_links:
            raise
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        os.rename(src, dst)  # checked, not atomic: the best such a file system allows
        return
    os.unlink(src)


def _sibling(target: Path, kind: str) -> Path:
    """A hidden sibling of ``target`` naming this process: ``.KIND-PID-XXXXXXXX-NAME``."""
    return target.with_name(f".{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}")


def _commit(tmp: Path, target: Path, replace: bool) -> None:
    """Put ``tmp`` at ``target``: replacing it only when ``replace``."""
    if replace and (target.exists() or target.is_symlink()):
        if target.is_dir() and not target.is_symlink():
            old = _sibling(target, "old")
            os.rename(target, old)
            checkpoint(f"moved aside {target.name}")
            rename_noreplace(tmp, target)
            remove_path(old)
        elif tmp.is_dir():
            target.unlink()
            rename_noreplace(tmp, target)
        else:
            os.replace(tmp, target)
        return
    try:
        rename_noreplace(tmp, target)
    except FileExistsError:
        raise VolumeIOError(
            f"{target} appeared while this command was running (another writer?): it was "
            "left as it is, and this command's output was discarded"
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success commit it to ``path``.

    ``path`` is reserved (:func:`reserve`) for the block. The temporary name
    ends with the target's name, so extension-sensitive writers (``.nii.gz``)
    behave. On failure the temporary output is removed and ``path`` is left
    untouched; the commit never replaces what was not there when ``path`` was
    first reserved (with ``overwrite``, what was there is replaced).

    Examples
    --------
    >>> with atomic_path(tmp / "x.npy") as tmp_path:        # doctest: +SKIP
    ...     np.save(tmp_path, array)
    """
    target = Path(path)
    with reserve(target, overwrite) as existed:
        tmp = _sibling(target, "tmp")
        try:
            checkpoint(f"writing {target.name}")
            yield tmp
            if not (tmp.exists() or tmp.is_symlink()):
                raise VolumeIOError(f"writing {target} produced no output")
            checkpoint(f"committing {target.name}")
            _commit(tmp, target, replace=existed and overwrite)
            _mark_committed(target)
        except BaseException:
            remove_path(tmp)
            raise
