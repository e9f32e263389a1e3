"""Volume readers and writers, chosen by file extension.

Formats are strategies of kind ``format`` registered through the plugin
registry (built-ins: npy, zarr, tiff, nifti), so a lab can add its scanner's
format as a package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import BoneframeError, InputError, VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.atomic import atomic_path
from boneframe.io.dicom_format import DicomSeriesFormat, is_dicom_folder
from boneframe.io.geometry import GEOMETRY_KEYS
from boneframe.io.nifti_format import NiftiFormat
from boneframe.io.npy import NpyFormat
from boneframe.io.scanco import AimFormat, IsqFormat
from boneframe.io.sidecar import read_json, read_sidecar, sidecar_path, write_json
from boneframe.io.tiff_format import TiffFormat
from boneframe.io.zarr_format import ZarrFormat
from boneframe.volume import Volume, as_triple, as_volume

BUILTIN_FORMATS: list[type] = [
    NpyFormat,
    ZarrFormat,
    TiffFormat,
    NiftiFormat,
    AimFormat,
    IsqFormat,
    DicomSeriesFormat,
]

__all__ = [
    "BUILTIN_FORMATS",
    "atomic_path",
    "format_for",
    "no_voxel_size",
    "read_json",
    "read_volume",
    "sidecar_path",
    "write_json",
    "write_volume",
]


def format_for(path: str | os.PathLike[str]) -> VolumeFormat:
    """The registered format whose extension ends ``path`` (longest match wins)."""
    from boneframe.registry import get_registry

    name = Path(path).name.lower()
    if Path(path).is_dir() and not name.endswith(".zarr") and is_dicom_folder(Path(path)):
        return DicomSeriesFormat()
    best: tuple[int, type[VolumeFormat]] | None = None
    for entry in get_registry().entries("format"):
        cls = entry.cls
        for ext in cls.extensions:  # type: ignore[attr-defined]
            if name.endswith(ext) and (best is None or len(ext) > best[0]):
                best = (len(ext), cls)  # type: ignore[assignment]
    if best is None:
        known = sorted(
            ext
            for e in get_registry().entries("format")
            for ext in e.cls.extensions  # type: ignore[attr-defined]
        )
        raise VolumeIOError(f"{path}: unknown volume format; known extensions: {', '.join(known)}")
    return best[1]()


def read_volume(
    path: str | os.PathLike[str],
    voxel_size: float | Sequence[float] | None = None,
    *,
    require_voxel_size: bool = False,
) -> Volume:
    """Read a volume; its format is chosen by extension.

    Parameters
    ----------
    path : path-like
        File (or directory, for zarr) to read. Zarr volumes are read lazily
        (dask arrays over the zarr chunks).
    voxel_size : float or 3 floats, optional
        Voxel size in µm overriding what the file says.
    require_voxel_size : bool
        Refuse a file that records no voxel size when none is given (every command
        of the command line that reads a volume asks for this: one rule, one
        message, see :func:`no_voxel_size`).

    Raises
    ------
    VolumeIOError
        When the file is missing, of unknown type, corrupt or not 3D; the message
        names the file.
    InputError
        ``require_voxel_size`` and none known.
    """
    p = Path(path)
    fmt = format_for(p)
    if not p.exists():
        raise VolumeIOError(f"{p}: no such file or directory")
    if not (p.is_file() or p.is_dir()):
        raise VolumeIOError(f"{p}: not a regular file or folder")
    try:
        volume = fmt.read(p)
    except BoneframeError as exc:
        raise VolumeIOError(f"cannot read {p}: {exc}") from exc
    except Exception as exc:  # libraries raise anything on corrupt files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VolumeIOError(f"cannot read {p} as {fmt.name}: {msg}") from exc
    if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == np.bool_):
        raise VolumeIOError(f"{p}: holds {volume.dtype} values, not numbers")
    if not (fmt.holds_metadata or fmt.reads_sidecar):
        side = read_sidecar(p)
        if side:
            from dataclasses import replace

            from boneframe.io.sidecar import PROTOCOL_KEYS

            extra = {k: v for k, v in side.items() if k not in GEOMETRY_KEYS + PROTOCOL_KEYS}
            volume = replace(volume, metadata={**extra, **volume.metadata})
    if voxel_size is not None:
        volume = as_volume(volume, as_triple(voxel_size, "voxel size"))
    if require_voxel_size and volume.voxel_size is None:
        raise no_voxel_size(p)
    return volume


def no_voxel_size(*paths: str | os.PathLike[str]) -> InputError:
    """The one error for volumes whose voxel size is unknown."""
    names = " nor ".join(str(p) for p in paths)
    which = "records" if len(paths) == 1 else "record"
    return InputError(
        f"{'neither ' if len(paths) > 1 else ''}{names} {which} a voxel size: give it in µm "
        "(--voxel-size on the command line, voxel_size= in Python)"
    )


def write_volume(
    volume: Volume | np.ndarray,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    sidecar: dict[str, Any] | None = None,
) -> Path:
    """Write a volume and its metadata atomically, as one unit; the format is chosen
    by extension.

    Parameters
    ----------
    volume : Volume or array
        What to write (an array is written without voxel size). A dask volume is
        computed chunk by chunk as it is written (zarr).
    path : path-like
        Target; an existing one is refused unless ``overwrite``.
    overwrite : bool
        Replace an existing target.
    sidecar : dict, optional
        Metadata to keep with the volume (with its geometry): inside the volume
        where the format holds it (zarr attributes), else in the ``<stem>.json``
        sidecar.

    Returns
    -------
    pathlib.Path
        The path written.

    Notes
    -----
    The sidecar records the volume's fingerprint and is committed before the
    volume (:mod:`boneframe.io.atomic`): a volume never appears without its
    metadata, a sidecar whose volume is absent is a killed writer's leftover
    (removed here), and one that does not match its volume is not used; the sidecar
    of another volume sharing the stem is never replaced
    (:mod:`boneframe.io.unit`). While an
    existing pair is replaced, the new sidecar also remembers the old one, so a
    writer killed between the two commits leaves the old pair readable.
    """
    from dataclasses import replace

    from boneframe.io.faults import checkpoint
    from boneframe.io.sidecar import FINGERPRINT, VOLUME_FILE, fingerprint
    from boneframe.io.unit import reserve_volume

    vol = as_volume(volume)
    p = Path(path)
    fmt = format_for(p)
    if not fmt.can_write():
        raise VolumeIOError(f"{p}: format {fmt.name} is read-only")
    side = fmt.sidecar(vol)
    calibration = _calibration(vol, fmt)
    if calibration:
        from boneframe.io.geometry import geometry_to_json

        side = {**geometry_to_json(vol), **(side or {}), **calibration}
    if sidecar is not None:
        from boneframe.io.geometry import geometry_to_json

        side = {**geometry_to_json(vol), **(side or {}), **sidecar}
    if side is not None and fmt.holds_metadata:
        vol = replace(vol, metadata={**vol.metadata, **side})
        side = None
    try:
        with reserve_volume(p, overwrite) as held:
            with atomic_path(p, overwrite=overwrite) as tmp:
                fmt.write(vol, tmp)
                if side is not None and held.sidecar is not None:
                    side[VOLUME_FILE] = p.name
                    side[FINGERPRINT] = fingerprint(tmp)
                    previous = held.replaced_sidecar
                    if previous is not None and FINGERPRINT in previous:
                        side["previous"] = {k: v for k, v in previous.items() if k != "previous"}
                    checkpoint(f"writing the sidecar of {p.name}")
                    write_json(held.sidecar, side, overwrite=True)
            if side is not None and held.sidecar is not None and "previous" in side:
                side.pop("previous")  # the pair is committed: forget the old one
                write_json(held.sidecar, side, overwrite=True)
    except BoneframeError:
        raise
    except OSError as exc:
        if exc.errno in (None, 0):  # a short write (numpy's): say why when we can
            raise VolumeIOError(f"cannot write {p} as {fmt.name}: {exc}{_why(p)}") from exc
        raise
    except Exception as exc:
        raise VolumeIOError(f"cannot write {p} as {fmt.name}: {exc}") from exc
    return p


def _calibration(volume: Volume, fmt: VolumeFormat) -> dict[str, Any]:
    """The volume's calibration keys, for a format that keeps them only in a sidecar."""
    if fmt.holds_metadata or fmt.holds_calibration:
        return {}
    from boneframe.calibration import CALIBRATION_KEYS

    return {k: volume.metadata[k] for k in CALIBRATION_KEYS if k in volume.metadata}


def _why(path: Path) -> str:
    """``": No space left on device"`` when the disk of ``path`` is (nearly) full."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return ": No space left on device" if free < 2**20 else ""
