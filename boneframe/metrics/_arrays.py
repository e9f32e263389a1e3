"""Turning what a metric is given into a checked numpy array."""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.errors import InputError


def as_array(x: Any, what: str = "volume") -> np.ndarray:
    """``x`` (numpy, dask or a :class:`~boneframe.volume.Volume`) as a 3-D numpy array.

    Boolean arrays become ``uint8`` so that histograms and differences work.

    Raises
    ------
    InputError
        If ``x`` is missing, not 3-D, empty or not real-valued. (NaN and
        infinity are caught where a range or a mean is taken, without a pass
        of their own.)
    """
    if x is None:
        raise InputError(f"no {what} given")
    data = getattr(x, "data", x) if hasattr(x, "voxel_size") else x
    arr = np.asarray(data)
    check_volume_array(arr, what)
    return arr.view(np.uint8) if arr.dtype == bool else arr


def check_volume_array(arr: Any, what: str = "volume") -> None:
    """Refuse anything but a non-empty 3-D array (numpy or dask) of real numbers or booleans.

    Raises
    ------
    InputError
        One message naming ``what`` and the problem.
    """
    if arr.ndim != 3:
        raise InputError(f"the {what} must be a 3D array, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"the {what} is empty (shape {arr.shape})")
    if arr.dtype != bool and (
        not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating)
    ):
        raise InputError(f"the {what} must hold real numbers, got dtype {arr.dtype}")


def as_mask(x: Any, what: str = "mask") -> np.ndarray:
    """``x`` as a 3-D boolean array (non-zero is bone)."""
    arr = np.asarray(getattr(x, "data", x) if hasattr(x, "voxel_size") else x)
    if arr.ndim != 3:
        raise InputError(f"the {what} must be a 3D array, got shape {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def sum_of_squares(scratch: np.ndarray) -> float:
    """``sum(scratch**2)``, squaring ``scratch`` in place (it is the caller's temporary).

    Summed pairwise by numpy, with no BLAS call (``np.vdot``): BLAS's idle threads
    spin after each call and take the CPU from dask's other workers.
    """
    return float(np.square(scratch, out=scratch).sum())
