"""Which blocks of a whole scan a super-resolution solves, and what the others hold.

A whole HR-pQCT scan is mostly air and soft tissue: given a mask on the scan's
grid (e.g. the periosteal compartment),
:func:`~boneframe.superres.blockwise.super_resolve_blockwise` solves only the
blocks whose solved region (block plus halo) meets the mask.
The other blocks hold the cubic-spline upsampling of ``g / gain - offset``
(:func:`~boneframe.superres.upsample.upsample_spline`), the solve's own
starting point, in the same grey scale, so the volume stays continuous for
contouring and display; no metric should be read there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.superres.upsample import upsample_spline
from boneframe.volume import Volume


def lr_mask(mask: Any, shape: tuple[int, ...]) -> Any:
    """The mask as a boolean array on the LR grid (numpy or dask, as given).

    ``mask`` is an array (or a Volume's data) of the LR volume's ``shape``:
    non-zero inside. Its geometry is matched to the scan's by the caller.

    Raises
    ------
    InputError
        If the mask's shape is not ``shape`` or it is empty.
    """
    data = mask.data if isinstance(mask, Volume) else mask
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if tuple(int(n) for n in data.shape) != tuple(shape):
        raise InputError(
            f"the mask has shape {tuple(data.shape)}, the low-resolution volume {tuple(shape)}"
        )
    return data != 0


def meets(mask_block: Any) -> bool:
    """True when a block of the mask holds any voxel inside."""
    return bool(np.any(np.asarray(mask_block)))


def fill_block(
    g_block: np.ndarray,
    p: tuple[int, int, int],
    gain: float,
    offset: float,
    keep: tuple[slice, ...],
) -> np.ndarray:
    """What a block outside the mask holds: the spline upsampling of
    ``g / gain - offset`` (the solve's starting point), its HR interior ``keep``."""
    fine = upsample_spline(np.asarray(g_block), p, gain, offset)
    return np.ascontiguousarray(fine[keep], dtype=np.float32)
