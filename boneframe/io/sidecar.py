"""JSON sidecars: ``<stem>.json`` beside a volume or kernel file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.io.atomic import atomic_path

_EXTENSIONS = (".nii.gz", ".npy", ".zarr", ".tiff", ".tif", ".nii")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar of a file: same folder and stem, extension ``.json``."""
    path = Path(path)
    name = path.name
    for ext in _EXTENSIONS:
        if name.lower().endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def finite_json(data: Any) -> Any:
    """``data`` with NaN and infinities replaced by ``None`` (strict JSON has neither)."""
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(v) for v in data]
    if isinstance(data, np.ndarray):
        return finite_json(data.tolist())
    if isinstance(data, float | np.floating):
        return float(data) if np.isfinite(data) else None
    return data


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text (numpy values converted, NaN/inf as null), indented for people."""
    return json.dumps(finite_json(data), indent=indent, default=_default, allow_nan=False) + "\n"


def write_json(path: str | Path, data: Any, overwrite: bool = True) -> None:
    """Write ``data`` as JSON atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(to_json(data))


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object (a damaged or non-object file is a :class:`VolumeIOError`)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VolumeIOError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise VolumeIOError(f"{path}: not a JSON object")
    return data


#: The sidecar key holding the fingerprint of the volume it describes.
FINGERPRINT = "volume_fingerprint"
#: The sidecar key naming the volume file it describes (``k.npy`` and ``k.tif``
#: would share ``k.json``).
VOLUME_FILE = "volume_file"
#: Keys of the sidecar protocol, not metadata of the volume.
PROTOCOL_KEYS = (FINGERPRINT, VOLUME_FILE, "previous")
#: Files larger than this are fingerprinted from samples (:func:`fingerprint`).
SAMPLED_ABOVE = 64 * 2**20
_BLOCK = 2**20
_SAMPLE_BLOCK = 2**16
_SAMPLES = 64


def fingerprint(path: str | Path, sampled: bool | None = None) -> str:
    """A BLAKE2b digest tying a sidecar to the very volume it describes.

    Parameters
    ----------
    path : path-like
        The file.
    sampled : bool, optional
        Digest the file's size and 64 evenly spaced 64 KiB blocks
        (``blake2b-sampled:<hex>``) instead of every byte (``blake2b:<hex>``).
        Default: for files over 64 MiB, whose full digest would cost more than
        reading them. A volume replaced by another one differs in its size or its
        samples; a sidecar is a label, not a checksum against tampering.
    """
    size = os.path.getsize(path)
    if sampled is None:
        sampled = size > SAMPLED_ABOVE
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        if not sampled:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                digest.update(block)
            return f"blake2b:{digest.hexdigest()}"
        digest.update(size.to_bytes(8, "little"))
        last = max(size - _SAMPLE_BLOCK, 0)
        for i in range(_SAMPLES):
            fh.seek(last * i // (_SAMPLES - 1))
            digest.update(fh.read(_SAMPLE_BLOCK))
    return f"blake2b-sampled:{digest.hexdigest()}"


def sidecar_belongs(volume: str | Path, side: dict[str, Any]) -> bool:
    """The sidecar ``side`` describes the file ``volume`` (as it is now).

    A sidecar written before fingerprints existed (no key) is taken on trust.
    """
    named = side.get(VOLUME_FILE)
    if named is not None and named != Path(volume).name:
        return False
    recorded = side.get(FINGERPRINT)
    if recorded is None:
        return True
    if not Path(volume).is_file():
        return False
    sampled = str(recorded).startswith("blake2b-sampled:")
    return bool(recorded == fingerprint(volume, sampled=sampled))


def sidecar_owner(side_file: Path, side: dict[str, Any]) -> Path | None:
    """The existing volume file the sidecar ``side`` (at ``side_file``) describes."""
    named = side.get(VOLUME_FILE)
    if isinstance(named, str):
        path = side_file.with_name(named)
        return path if path.exists() else None
    if FINGERPRINT not in side:
        return None
    stem = side_file.name[: -len(".json")]
    for ext in _EXTENSIONS:  # a sidecar written before it named its volume
        path = side_file.with_name(stem + ext)
        if path.is_file() and sidecar_belongs(path, side):
            return path
    return None


def read_sidecar(volume: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``volume`` when it describes this volume, else None.

    A sidecar whose fingerprint does not match (a volume replaced by hand, or a
    writer killed between committing the two) is not used: the metadata of
    another volume would be worse than none.
    """
    side_file = sidecar_path(volume)
    if not side_file.is_file():
        return None
    side = read_json(side_file)
    if sidecar_belongs(volume, side):
        return side
    previous = side.get("previous")  # a pair replaced by a writer killed half-way
    if isinstance(previous, dict) and FINGERPRINT in previous:
        return previous if sidecar_belongs(volume, previous) else None
    return None
