r"""Forward-difference gradient ``D`` and its adjoint ``D^T`` (= minus the divergence).

``boundary="neumann"``: the difference across the last voxel is zero (no
assumption about what lies outside). ``boundary="periodic"``: wraps around, the
form whose Fourier transform diagonalises ``D^T D`` (the exact ADMM f-step).

Each axis is one function of the array (:func:`axis_difference`,
:func:`axis_difference_adjoint`), written against the array API: numpy, CuPy or
any array-API array gives an array of its own kind (see :mod:`boneframe.device`);
on a dask volume it runs on every chunk with a one-voxel halo along that axis
(the periodic wrap, or none at the volume's ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from boneframe.device import array_namespace, dtype_of
from boneframe.errors import InputError
from boneframe.operators.base import LinearOperator
from boneframe.operators.geometry import as_shape, is_dask

__all__ = [
    "Boundary",
    "Gradient",
    "axis_difference",
    "axis_difference_adjoint",
    "gradient",
    "gradient_adjoint",
    "laplacian",
]

Boundary = Literal["neumann", "periodic"]


def _as_dtype(xp: Any, dtype: Any) -> Any:
    """A numpy dtype as the same-named dtype of ``xp``; a dtype of ``xp`` as it is."""
    try:
        return dtype_of(xp, dtype)
    except TypeError:  # not a numpy dtype: already one of xp's
        return dtype


def _cut(ndim: int, axis: int, part: slice) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def _result_dtype(xp: Any, dtype: Any, least: Any) -> Any:
    """``numpy.result_type(dtype, least)`` as a dtype of ``xp`` (``least`` a numpy dtype)."""
    return xp.result_type(dtype, dtype_of(xp, least))


def axis_difference(x: Any, axis: int, *, periodic: bool, out_dtype: Any) -> Any:
    """``x[i + 1] - x[i]`` along ``axis`` (last one: wrapped, or 0 for Neumann).

    ``out_dtype``: a numpy dtype, or a dtype of the namespace of ``x``."""
    xp = array_namespace(x)
    dtype = _as_dtype(xp, out_dtype)
    if periodic:
        return xp.astype(xp.roll(x, -1, axis=axis) - x, dtype, copy=False)
    out = xp.zeros(x.shape, dtype=dtype)
    lo, hi = _cut(x.ndim, axis, slice(0, -1)), _cut(x.ndim, axis, slice(1, None))
    out[lo] = x[hi] - x[lo]
    return out


def axis_difference_adjoint(
    v: Any, axis: int, *, periodic: bool, out_dtype: Any, out: Any = None
) -> Any:
    """Adjoint of :func:`axis_difference`: ``v[i - 1] - v[i]`` (Neumann: ``-v[0]`` first,
    ``v[n - 2]`` last), added to ``out`` when given."""
    xp = array_namespace(v)
    if out is None:
        out = xp.zeros(v.shape, dtype=_as_dtype(xp, out_dtype))
    if periodic:
        out += xp.roll(v, 1, axis=axis) - v
        return out
    lo, hi = _cut(v.ndim, axis, slice(0, -1)), _cut(v.ndim, axis, slice(1, None))
    out[lo] -= v[lo]
    out[hi] += v[lo]
    return out


class Gradient(LinearOperator):
    r"""``x -> D x``: forward differences along every axis, stacked.

    Parameters
    ----------
    shape : sequence of int
        Shape of the input (any number of axes); the output is ``(ndim, *shape)``.
    boundary : {"neumann", "periodic"}
        ``"neumann"``: zero difference across the last voxel; ``"periodic"``:
        the last voxel's neighbour is the first.
    dtype : numpy dtype
        Least precision of the results (float32: integer volumes give float32).

    Notes
    -----
    .. math::
        (D x)_a[i] = x[i + e_a] - x[i], \qquad
        (D^\top v)[i] = \sum_a v_a[i - e_a] - v_a[i]

    with :math:`e_a` the unit step along axis ``a``; indices wrap (periodic) or
    terms outside the volume vanish together with :math:`v_a` on the last slice
    (Neumann). :math:`D^\top D` is the negative discrete Laplacian.
    """

    def __init__(
        self, shape: Sequence[int], boundary: Boundary = "neumann", *, dtype: Any = np.float32
    ):
        if boundary not in ("neumann", "periodic"):
            raise InputError(f"boundary must be 'neumann' or 'periodic', got {boundary!r}")
        shp = as_shape(shape, None)
        super().__init__(shp, (len(shp), *shp), dtype)
        self.boundary = boundary
        self.periodic = boundary == "periodic"

    def _matvec(self, x: Any) -> Any:
        if not is_dask(x):
            xp = array_namespace(x)
            dtype = _result_dtype(xp, x.dtype, self.dtype)
            out = xp.empty(self.shape_out, dtype=dtype)
            for axis in range(x.ndim):
                out[axis, ...] = axis_difference(x, axis, periodic=self.periodic, out_dtype=dtype)
            return out
        import dask.array as da

        dtype = np.result_type(x.dtype, self.dtype)
        parts = [self._per_chunk(x, axis_difference, axis, dtype) for axis in range(x.ndim)]
        return da.stack(parts)

    def _rmatvec(self, v: Any) -> Any:
        if not is_dask(v):
            xp = array_namespace(v)
            dtype = _result_dtype(xp, v.dtype, self.dtype)
            out = xp.zeros(self.shape_in, dtype=dtype)
            for axis in range(v.shape[0]):
                axis_difference_adjoint(
                    v[axis, ...], axis, periodic=self.periodic, out_dtype=dtype, out=out
                )
            return out
        dtype = np.result_type(v.dtype, self.dtype)
        parts = [
            self._per_chunk(v[axis], axis_difference_adjoint, axis, dtype)
            for axis in range(v.shape[0])
        ]
        return sum(parts[1:], parts[0])

    def _per_chunk(self, x: Any, fn: Any, axis: int, dtype: np.dtype) -> Any:
        """``fn`` on every chunk with a one-voxel halo along ``axis``."""
        return x.map_overlap(
            fn,
            depth={axis: 1},
            boundary="periodic" if self.periodic else "none",
            trim=True,
            dtype=dtype,
            meta=np.empty((0,) * x.ndim, dtype=dtype),
            axis=axis,
            periodic=self.periodic,
            out_dtype=dtype,
        )


def gradient(x: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Forward differences along every axis, stacked: shape ``(x.ndim, *x.shape)``."""
    return Gradient(np.shape(x), boundary).matvec(x)


def gradient_adjoint(v: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Adjoint of :func:`gradient`: ``D^T v`` (minus the backward-difference divergence)."""
    return Gradient(np.shape(v)[1:], boundary).rmatvec(v)


def laplacian(x: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Discrete Laplacian ``-D^T D x`` with the same boundary rule."""
    op = Gradient(np.shape(x), boundary)
    return -op.rmatvec(op.matvec(x))
