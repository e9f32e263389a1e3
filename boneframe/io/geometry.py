"""Geometry fields as JSON (the form every format's metadata uses)."""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.volume import Volume

#: The keys :func:`geometry_to_json` writes.
GEOMETRY_KEYS = ("voxel_size_um", "origin_um", "direction")


def geometry_to_json(volume: Volume) -> dict[str, Any]:
    """Voxel size (µm), origin (µm) and direction as plain JSON values."""
    return {
        "voxel_size_um": None if volume.voxel_size is None else list(volume.voxel_size),
        "origin_um": list(volume.origin),
        "direction": np.asarray(volume.direction).tolist(),
    }


def geometry_from_json(meta: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`Volume` from :func:`geometry_to_json`'s output."""
    out: dict[str, Any] = {}
    if meta.get("voxel_size_um") is not None:
        out["voxel_size"] = tuple(float(v) for v in meta["voxel_size_um"])
    if meta.get("origin_um") is not None:
        out["origin"] = tuple(float(v) for v in meta["origin_um"])
    if meta.get("direction") is not None:
        out["direction"] = np.asarray(meta["direction"], dtype=float)
    return out
