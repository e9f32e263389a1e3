r"""The forward model ``g = U(h * (f + c))``: decimation after blur, plus the offset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.operators.base import Composition
from boneframe.operators.blur import Blur, Boundary
from boneframe.operators.crop import Crop
from boneframe.operators.decimation import Decimate
from boneframe.operators.geometry import Factor, Mode, check_kernel, valid_lr_slices

__all__ = ["ForwardModel", "forward_model"]


class ForwardModel(Composition):
    r"""``f -> U(h * f)``, the composition ``Decimate @ Blur``; :meth:`predict` adds ``c``.

    Parameters
    ----------
    kernel : array
        3D kernel with odd support, centre at ``K // 2``.
    p : int or 3 ints
        Decimation factor per axis.
    shape : sequence of int
        High-resolution shape.
    boundary : {"zero", "periodic"}
        Of the blur (see :class:`~boneframe.operators.Blur`).
    mode : {"same", "valid"}
        ``"valid"``: keep only the low-resolution voxels whose kernel footprint
        lies inside the volume (:func:`~boneframe.operators.valid_lr_slices`),
        the region kernel estimation fits on.
    dtype : numpy dtype, optional
        Precision of the blur (default the kernel's, at least float32).
    rechunk : bool
        Rechunk a dask volume whose chunks are not multiples of ``p`` instead of
        raising.

    Attributes
    ----------
    blur : Blur
    decimate : Decimate

    Notes
    -----
    .. math::
        g = U\big(h * (f + c)\big) = A f + c\, A \mathbb 1, \qquad
        A = U H, \quad A^\top = H^\top U^\top

    LR voxel ``i`` sits on HR voxel ``p i``. With ``boundary="zero"`` the offset
    ``c`` is added inside the volume only (zeros beyond it), so :math:`A\mathbb 1`
    falls off near the border; with ``"periodic"`` it is ``sum(h)`` everywhere.
    """

    def __init__(
        self,
        kernel: Any,
        p: Factor,
        shape: Sequence[int],
        *,
        boundary: Boundary = "zero",
        mode: Mode = "same",
        dtype: Any = None,
        rechunk: bool = False,
    ):
        h = check_kernel(kernel)
        self.blur = Blur(h, shape, boundary=boundary, dtype=dtype)
        self.decimate = Decimate(shape, p, rechunk=rechunk)
        if mode == "same":
            super().__init__(self.decimate, self.blur)
        elif mode == "valid":
            box = valid_lr_slices(self.blur.shape_in, h.shape, self.decimate.p)
            super().__init__(Crop(self.decimate.shape_out, box), self.decimate, self.blur)
        else:
            raise InputError(f"mode must be 'same' or 'valid', got {mode!r}")
        self.mode = mode

    @property
    def kernel(self) -> Any:
        """The kernel ``h`` (in the blur's precision)."""
        return self.blur.kernel

    @property
    def p(self) -> tuple[int, int, int]:
        """Decimation factor per axis."""
        return self.decimate.p

    def predict(self, f: Any, c: float = 0.0) -> Any:
        """``U(h * (f + c))``: the noise-free low-resolution scan of ``f`` with offset ``c``."""
        return self.matvec(f + c if c else f)


def forward_model(
    f: Any,
    h: Any,
    c: float = 0.0,
    p: Factor = 2,
    mode: Mode = "same",
    *,
    rechunk: bool = False,
) -> Any:
    """Noise-free low-resolution prediction ``U(h * (f + c))`` (numpy or dask).

    Zeros are assumed outside ``f``. In ``"valid"`` mode only the low-resolution
    voxels whose high-resolution footprint lies inside ``f`` are returned: the
    ``"same"`` result cut to :func:`~boneframe.operators.valid_lr_slices`.
    See :class:`ForwardModel`.
    """
    return ForwardModel(h, p, np.shape(f), mode=mode, rechunk=rechunk).predict(f, c)
