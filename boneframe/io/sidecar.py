"""JSON sidecars: ``<stem>.json`` beside a volume or kernel file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

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
    """Read a JSON object."""
    return json.loads(Path(path).read_text())
