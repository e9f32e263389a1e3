r"""Restriction to a box of a volume, and its zero-filling adjoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.device import array_namespace
from boneframe.errors import InputError
from boneframe.operators.base import LinearOperator
from boneframe.operators.geometry import as_shape, is_dask

__all__ = ["Crop"]


class Crop(LinearOperator):
    r"""``x -> x[box]``: keep a box of the volume; the adjoint puts it back in zeros.

    Parameters
    ----------
    shape : sequence of int
        Shape of the input.
    box : sequence of slice
        One slice with unit step per axis (``slice(lo, hi)``; ``None`` ends allowed).

    Notes
    -----
    With :math:`S` the selection of the voxels in the box,

    .. math:: C x = S x, \qquad C^\top y = S^\top y \;(\text{zeros elsewhere}).

    Used for the ``"valid"`` outputs: ``Crop @ Blur`` keeps the voxels whose
    kernel footprint lies inside the volume.
    """

    def __init__(self, shape: Sequence[int], box: Sequence[slice]):
        shp = as_shape(shape, None)
        if len(box) != len(shp):
            raise InputError(f"one slice per axis is needed for a shape {shp}, got {box!r}")
        bounds = []
        for s, n in zip(box, shp, strict=True):
            lo, hi, step = s.indices(n)
            if step != 1 or hi <= lo:
                raise InputError(f"the box {tuple(box)} is empty or strided in a shape {shp}")
            bounds.append((lo, hi))
        self.box = tuple(slice(lo, hi) for lo, hi in bounds)
        self.pad = tuple((lo, n - hi) for (lo, hi), n in zip(bounds, shp, strict=True))
        super().__init__(shp, tuple(hi - lo for lo, hi in bounds), np.float32)

    def _matvec(self, x: Any) -> Any:
        return x[self.box]

    def _rmatvec(self, y: Any) -> Any:
        if is_dask(y):
            import dask.array as da

            return da.pad(y, self.pad, mode="constant")
        xp = array_namespace(y)
        out = xp.zeros(self.shape_in, dtype=y.dtype)
        out[self.box] = y
        return out
