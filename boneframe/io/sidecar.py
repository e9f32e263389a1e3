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


def fingerprint(path: str | Path) -> str:
    """BLAKE2b digest of a file's bytes (``blake2b:<hex>``): what ties a sidecar to
    the very volume it describes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"blake2b:{digest.hexdigest()}"


def sidecar_belongs(volume: str | Path, side: dict[str, Any]) -> bool:
    """The sidecar ``side`` describes the file ``volume`` (as it is now).

    A sidecar written before fingerprints existed (no key) is taken on trust.
    """
    recorded = side.get(FINGERPRINT)
    return recorded is None or (Path(volume).is_file() and recorded == fingerprint(volume))


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
