"""A segmentation's bone restricted to a region (the mask it was given)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    from boneframe.masks import region_on

    return bone & region_on(mask, volume)


def bone_of(volume: Volume, mask: Any, find: Callable[[Any], Any]) -> Any:
    """A segmentation's bone of ``volume``: ``find(data)``, except that a boolean
    volume is its own bone; restricted to ``mask`` (:func:`restrict`)."""
    data = volume.data
    return restrict(data if data.dtype == bool else find(data), volume, mask)
