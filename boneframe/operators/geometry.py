"""Conventions shared by the operators: decimation factor, kernel support, grids.

LR voxel ``i`` sits on HR voxel ``p*i`` (``U`` keeps ``0, p, 2p, ...``); a kernel
has odd support ``K`` per axis with its centre at ``K // 2``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Literal, cast

import numpy as np

from boneframe.errors import InputError

Mode = Literal["same", "valid"]
Factor = int | Sequence[int]


def per_axis(value: int | Sequence[int]) -> tuple[int, ...]:
    """``value`` as ints: a scalar repeated on the three axes, else one per item.

    The caller checks the length and the range.
    """
    # numpy's isscalar is a TypeGuard (not a TypeIs): it narrows to numpy's scalar
    # types and not at all in the other branch, so both branches say what they hold.
    if np.isscalar(value):
        return (int(cast(int, value)),) * 3
    return tuple(int(v) for v in cast(Sequence[int], value))


def as_factor(p: Factor) -> tuple[int, int, int]:
    """Decimation factor per axis (an int is used on every axis)."""
    t = per_axis(p)
    if len(t) != 3 or min(t) < 1:
        raise InputError(f"decimation factor must be one or three positive integers, got {p!r}")
    return t


def check_kernel(h: Any) -> np.ndarray:
    """Validate a 3D kernel with odd, finite support; returns it as an array."""
    h = np.asarray(h)
    if h.ndim != 3:
        raise InputError(f"the kernel must be 3D, got shape {h.shape}")
    if any(s % 2 == 0 for s in h.shape):
        raise InputError(f"the kernel support must be odd on every axis, got {h.shape}")
    if not np.all(np.isfinite(h)):
        raise InputError("the kernel contains NaN or infinite values")
    return h


def as_shape(shape: Sequence[int], ndim: int | None = 3) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints (``ndim`` of them unless ``None``)."""
    t = tuple(int(s) for s in shape)
    if (ndim is not None and len(t) != ndim) or not t or min(t) < 1:
        want = f"a {ndim}D shape" if ndim else "a shape"
        raise InputError(f"expected {want} of positive sizes, got {tuple(shape)}")
    return t


def decimated_shape(shape: Sequence[int], p: Factor = 2) -> tuple[int, int, int]:
    """Shape of ``decimate(x, p)`` for ``x`` of ``shape``: ``ceil(n / p)`` per axis."""
    return tuple(-(-int(n) // q) for n, q in zip(shape, as_factor(p), strict=True))  # type: ignore[return-value]


def valid_lr_slices(
    hr_shape: Sequence[int], support: Sequence[int], p: Factor = 2
) -> tuple[slice, slice, slice]:
    """Low-resolution index ranges whose kernel footprint lies inside the HR volume.

    LR voxel ``i`` sits on HR voxel ``p*i`` and sees HR voxels
    ``p*i - K//2 ... p*i + K//2``.
    """
    out = []
    for n, k, q in zip(hr_shape, support, as_factor(p), strict=True):
        r = int(k) // 2
        lo = -(-r // q)
        hi = (int(n) - 1 - r) // q + 1
        if hi <= lo:
            raise InputError(
                f"kernel support {tuple(support)} leaves no valid voxel "
                f"in a volume of {tuple(hr_shape)}"
            )
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def is_dask(x: Any) -> bool:
    """True for a dask array (without importing dask when it is not loaded)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)
