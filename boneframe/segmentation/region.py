"""A segmentation's bone restricted to a region (the mask it was given)."""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.volume import Volume


def restrict(bone: Any, volume: Volume, mask: Any) -> Any:
    """``bone`` where ``mask`` is non-zero (all of it without a mask).

    A Volume mask is put on ``volume``'s grid by geometry
    (:func:`boneframe.masks.mask_on_grid`); an array must have its shape.

    Raises
    ------
    InputError
        If the mask does not fit the volume.
    """
    if mask is None:
        return bone
    if isinstance(mask, Volume):
        from boneframe.masks import mask_on_grid

        region = mask_on_grid(mask, volume)
    else:
        region = np.asarray(mask) if not hasattr(mask, "shape") else mask
        if tuple(region.shape) != volume.shape:
            raise InputError(
                f"the mask must have the volume's shape: the volume is {volume.shape}, "
                f"the mask {tuple(region.shape)}"
            )
        region = region if region.dtype == bool else region != 0
    return bone & region
