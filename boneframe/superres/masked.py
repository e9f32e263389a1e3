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

from boneframe.superres.upsample import upsample_spline


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
