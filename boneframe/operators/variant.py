r"""A blur whose kernel varies across the field of view: kernels blended by region.

A grid of regions carries one kernel each; the blur at a voxel is the blend of
the region kernels by the partition of unity of
:mod:`boneframe.operators.partition`, evaluated at that (output) voxel:

.. math::
    (H x)[y] = \sum_r w_r[y]\, (h_r * x)[y], \qquad
    H^\top z = \sum_r h_r \star (w_r \odot z),

so that voxel ``y`` is blurred by the kernel :math:`\sum_r w_r[y]\, h_r`: a
region's own kernel at its centre, varying linearly between centres. With one
region it is :class:`~boneframe.operators.Blur`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.operators.base import LinearOperator
from boneframe.operators.blur import Blur, Boundary
from boneframe.operators.geometry import as_shape, check_kernel
from boneframe.operators.partition import region_weight

__all__ = ["VariantBlur"]


class VariantBlur(LinearOperator):
    r"""``x -> sum_r w_r * (h_r * x)``: a spatially variant blur (in memory).

    Parameters
    ----------
    kernels : sequence of arrays
        One kernel per region, in C order over the grid; all of one odd support.
    axis_weights : 3 arrays
        The partition of unity per axis at this volume's voxels
        (:func:`~boneframe.operators.partition.hat_weights`), shapes
        ``(N_a, shape[a])``; ``N0 * N1 * N2 == len(kernels)``.
    shape : sequence of int
        Shape of the volume (input and output).
    boundary : {"zero", "periodic"}
        Of each region's blur (see :class:`~boneframe.operators.Blur`).
    dtype : numpy dtype, optional
        Precision (default: at least float32).
    """

    def __init__(
        self,
        kernels: Sequence[Any],
        axis_weights: Sequence[np.ndarray],
        shape: Sequence[int],
        *,
        boundary: Boundary = "zero",
        dtype: Any = None,
    ):
        shp = as_shape(shape)
        hs = [check_kernel(h) for h in kernels]
        if not hs or len({h.shape for h in hs}) != 1:
            raise InputError("a variant blur needs one or more kernels of one support")
        ws = [np.asarray(w, dtype=np.float64) for w in axis_weights]
        if len(ws) != 3 or any(
            w.ndim != 2 or w.shape[1] != n for w, n in zip(ws, shp, strict=True)
        ):
            raise InputError(
                f"axis weights must be 3 arrays of shape (regions, n) for {shp}, got "
                f"{[w.shape for w in ws]}"
            )
        self.grid = tuple(w.shape[0] for w in ws)
        if int(np.prod(self.grid)) != len(hs):
            raise InputError(f"{len(hs)} kernels for a grid of {self.grid} regions")
        dt = np.result_type(hs[0].dtype, np.float32) if dtype is None else np.dtype(dtype)
        super().__init__(shp, shp, dt)
        self.axis_weights = ws
        self.blurs = [Blur(h, shp, boundary=boundary, dtype=dt) for h in hs]

    def _weights(self) -> list[tuple[Blur, np.ndarray]]:
        out = []
        for blur, index in zip(self.blurs, np.ndindex(*self.grid), strict=True):
            w = region_weight(self.axis_weights, index)
            if np.any(w):
                out.append((blur, w.astype(self.dtype)))
        return out

    def _matvec(self, x: Any) -> Any:
        out = None
        for blur, w in self._weights():
            y = blur.matvec(x) * w
            out = y if out is None else out + y
        return out

    def _rmatvec(self, y: Any) -> Any:
        out = None
        for blur, w in self._weights():
            x = blur.rmatvec(y * w)
            out = x if out is None else out + x
        return out
