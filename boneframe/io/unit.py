"""A volume and its JSON sidecar, reserved and replaced as one unit.

A command reserves its output volume before any work (:func:`reserve_volume`)
and :func:`boneframe.io.write_volume` reserves it again when it commits: both
go through this one function, so one rule decides what may be written. For the
formats whose metadata goes to ``<stem>.json`` (npy, tiff, NIfTI) the sidecar
name is reserved with the volume, and what is found there is checked once:

* the sidecar of another volume sharing the stem (``k.npy`` beside ``k.tif``)
  is refused, with or without ``overwrite``: replacing it would strip that
  volume of its metadata;
* the sidecar of an absent volume is a killed writer's leftover: removed;
* a file that is no sidecar of boneframe's is replaced only with ``overwrite``;
* a sidecar that appears while the command runs is never replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boneframe.errors import VolumeIOError
from boneframe.io.atomic import mark_absent, reserve
from boneframe.io.sidecar import FINGERPRINT, read_json, sidecar_owner, sidecar_path

__all__ = ["Reservation", "reserve_volume"]


@dataclass(frozen=True)
class Reservation:
    """What :func:`reserve_volume` found.

    Attributes
    ----------
    existed : bool
        The volume was there when first reserved.
    sidecar : Path or None
        Where its sidecar goes; None for formats that hold their metadata.
    replaced_sidecar : dict or None
        The sidecar of the volume being replaced (``overwrite``), if any.
    """

    existed: bool
    sidecar: Path | None
    replaced_sidecar: dict[str, Any] | None


def writes_sidecar(path: Path) -> bool:
    """The format of ``path`` keeps its metadata in a ``<stem>.json`` sidecar."""
    from boneframe.io import format_for

    try:
        fmt = format_for(path)
    except VolumeIOError:
        return False  # a folder of outputs, not a volume
    return fmt.can_write() and not fmt.holds_metadata


@contextlib.contextmanager
def reserve_volume(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Reservation]:
    """Hold the volume ``path`` (and its sidecar) for the ``with`` block.

    Raises
    ------
    VolumeIOError
        The volume exists and not ``overwrite``; another writer holds it; its
        sidecar name belongs to another volume, or holds a foreign file and not
        ``overwrite``.
    """
    target = Path(path)
    with contextlib.ExitStack() as stack:
        existed = stack.enter_context(reserve(target, overwrite))
        if not writes_sidecar(target):
            yield Reservation(existed, None, None)
            return
        side_file = sidecar_path(target)
        stack.enter_context(reserve(side_file, overwrite=True))
        replaced = _check_sidecar(target, side_file, existed, overwrite)
        yield Reservation(existed, side_file, replaced)


def _check_sidecar(
    volume: Path, side_file: Path, existed: bool, overwrite: bool
) -> dict[str, Any] | None:
    """Apply the module's rules to what is at ``side_file``; returns the sidecar being
    replaced (``overwrite`` of an existing volume), if any."""
    if not (side_file.exists() or side_file.is_symlink()):
        mark_absent(side_file)
        return None
    try:
        old = read_json(side_file)
    except (OSError, VolumeIOError):
        old = {}
    owner = sidecar_owner(side_file, old)
    if owner is not None and owner.name != volume.name:
        raise VolumeIOError(
            f"{side_file} holds the metadata of {owner}: writing {volume.name} would replace "
            f"it; give {volume.name} another name (one volume per stem)"
        )
    if existed:
        return old if overwrite and owner is not None else None
    if FINGERPRINT in old:  # the sidecar of an absent volume: a killed writer's
        side_file.unlink()
        mark_absent(side_file)
        return None
    if overwrite:
        return None
    raise VolumeIOError(
        f"{side_file} exists and is not the sidecar of a volume boneframe wrote: "
        "move it away or use --overwrite"
    )
