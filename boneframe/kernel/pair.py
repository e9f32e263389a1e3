"""The rules a high/low-resolution pair must meet for kernel estimation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from boneframe.compute import is_lazy
from boneframe.errors import InputError
from boneframe.operators import Factor, as_factor, decimated_shape, valid_lr_slices

__all__ = ["Support", "as_support", "check_pair", "volume_data"]

Support = int | Sequence[int]


def as_support(support: Support) -> tuple[int, int, int]:
    """Kernel support per axis: one or three odd positive integers."""
    # numpy's isscalar is a TypeGuard (not a TypeIs): neither branch keeps Support's types
    if np.isscalar(support):
        k: tuple[Any, ...] = (support,) * 3
    else:
        k = tuple(cast(Sequence[int], support))
    if len(k) != 3 or any(int(v) != v or v < 1 or v % 2 == 0 for v in k):
        raise InputError(
            f"kernel support must be one or three odd positive integers, got {support!r}"
        )
    return tuple(int(v) for v in k)  # type: ignore[return-value]


def volume_data(x: Any, what: str) -> Any:
    """The array of ``x`` (a Volume's data, a numpy or dask array), checked to be a
    3D array of real numbers (values are checked later, in one pass)."""
    data = x.data if hasattr(x, "voxel_size") and hasattr(x, "data") else x
    if not is_lazy(data):
        data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {tuple(data.shape)}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputError(f"{what} must hold real numbers, got dtype {data.dtype}")
    return data


def check_pair(f: Any, g: Any, support: Support = 9, p: Factor = 2) -> tuple[Any, Any]:
    """Validate the shapes of a high/low-resolution pair for kernel estimation.

    The rule on shapes: high-resolution voxel ``p*i`` is low-resolution voxel
    ``i``, so ``g.shape == ceil(f.shape / p)`` per axis (``f`` may lack the last
    ``p - 1`` voxels of each row). There must be at least as many valid
    low-resolution voxels (footprint inside ``f``) as kernel coefficients.

    Returns
    -------
    f, g : numpy or dask arrays
        The volumes' data.

    Raises
    ------
    InputError
        Not 3D real volumes, mismatched shapes, a support too large.
    """
    fa = volume_data(f, "the high-resolution volume")
    ga = volume_data(g, "the low-resolution volume")
    k = as_support(support)
    pp = as_factor(p)
    expected = decimated_shape(fa.shape, pp)
    if tuple(ga.shape) != expected:
        raise InputError(
            f"shapes do not match for p={pp}: high-resolution {tuple(fa.shape)} needs a "
            f"low-resolution volume of {expected} (voxel p*i on voxel i), got {tuple(ga.shape)}"
        )
    if any(kk > n for kk, n in zip(k, fa.shape, strict=True)):
        raise InputError(
            f"kernel support {k} is larger than the high-resolution volume {tuple(fa.shape)}"
        )
    try:
        sl = valid_lr_slices(fa.shape, k, pp)
    except InputError:
        raise InputError(
            f"kernel support {k} leaves no low-resolution voxel whose footprint lies "
            f"inside the high-resolution volume {tuple(fa.shape)}"
        ) from None
    n_valid = int(np.prod([s.stop - s.start for s in sl]))
    if n_valid < int(np.prod(k)):
        raise InputError(
            f"only {n_valid} low-resolution voxels have their footprint inside the "
            f"high-resolution volume, fewer than the {int(np.prod(k))} kernel coefficients: "
            "use a smaller support or a larger volume"
        )
    return fa, ga
