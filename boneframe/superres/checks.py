"""Input checks shared by the super-resolution modules."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from boneframe.errors import InputError

__all__ = ["check_scale", "real_volume"]


def real_volume(a: Any, what: str) -> np.ndarray:
    """``a`` (array or Volume) as a 3D array of finite real numbers."""
    arr = np.asarray(getattr(a, "data", a))
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{what} must be real-valued, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def check_scale(scale: float) -> float:
    """A given normalisation ``scale``, checked: finite and positive."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"scale must be a positive number, got {scale!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"scale must be finite and positive, got {scale!r}")
    return value
