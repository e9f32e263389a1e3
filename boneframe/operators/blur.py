r"""Convolution with a centred, odd-support kernel (the blur ``H``) and its adjoint.

One function, :func:`blur_block`, convolves: on a numpy volume it runs once on
the whole (padded periodically for ``boundary="periodic"``); on a dask volume
:func:`dask.array.map_overlap` runs it on every chunk extended by a halo of the
kernel radius, zeros or the periodic wrap beyond the volume, and trims the halo
(the dask-image idiom): a chunked blur gives the in-memory numbers.

:func:`blur_block` is :func:`scipy.signal.fftconvolve`'s ``"same"`` convolution
written against the array API (the same transforms, sizes and crop: the same
numbers on numpy), so a CuPy volume is blurred on its GPU with cuFFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.fft

from boneframe.device import array_namespace, dtype_of, fft_functions, to_device
from boneframe.errors import InputError
from boneframe.operators.base import LinearOperator
from boneframe.operators.crop import Crop
from boneframe.operators.geometry import Mode, as_shape, check_kernel, is_dask

__all__ = ["Blur", "Boundary", "blur_block", "convolve", "convolve_adjoint"]

Boundary = Literal["zero", "periodic"]


def blur_block(block: Any, kernel: np.ndarray, out_dtype: Any, workers: int = 1) -> Any:
    """``kernel * block`` with zeros beyond the block, shape of ``block`` (FFT).

    The one convolution every path of :class:`Blur` runs; ``workers`` threads of
    :mod:`scipy.fft` (1 inside dask, whose tasks are the parallelism). ``block``
    may be any array-API array (CuPy: cuFFT); the result is of its kind.

    Notes
    -----
    :func:`scipy.signal.fftconvolve` with ``mode="same"``: real transforms of
    both padded to :func:`scipy.fft.next_fast_len` of the full size
    ``n + K - 1``, their product transformed back and the centre ``n`` kept.
    """
    xp = array_namespace(block)
    fft = fft_functions(xp, workers)
    if xp.isdtype(block.dtype, "integral"):
        block = xp.astype(block, xp.float64)
    k = to_device(kernel, xp)
    full = [n + m - 1 for n, m in zip(block.shape, k.shape, strict=True)]
    # axes of length 1 in either are left to broadcasting (no transform), as in scipy
    axes = [a for a in range(block.ndim) if block.shape[a] != 1 and k.shape[a] != 1]
    if axes:
        fshape = [scipy.fft.next_fast_len(full[a], real=True) for a in axes]
        spec = fft.rfftn(block, s=fshape, axes=axes)
        spec = spec * fft.rfftn(k, s=fshape, axes=axes)
        out = fft.irfftn(spec, s=fshape, axes=axes, overwrite=True)
        del spec
    else:
        out = block * k
    centre = tuple(
        slice((m - n) // 2, (m - n) // 2 + n) for m, n in zip(full, block.shape, strict=True)
    )
    dtype = out_dtype if not isinstance(out_dtype, np.dtype) else dtype_of(xp, out_dtype)
    return xp.astype(out[centre], dtype, copy=False)


class Blur(LinearOperator):
    r"""``x -> h * x``: convolution with a centred kernel of odd support.

    Parameters
    ----------
    kernel : array
        3D kernel with odd support ``K`` per axis, centre at ``K // 2``.
    shape : sequence of int
        Shape of the volume (input and output).
    boundary : {"zero", "periodic"}
        ``"zero"``: zeros outside the volume (the forward model of kernel
        estimation and of the phantom). ``"periodic"``: the volume wraps around
        (circular convolution, the forward model of the exact super-resolution
        f-step); the support must not exceed the shape.
    dtype : numpy dtype, optional
        Precision of the kernel and of the results; default the kernel's (at
        least float32). A float32 kernel keeps float32 volumes float32.
    workers : int
        :mod:`scipy.fft` threads for an in-memory volume (``-1``: all cores).

    Notes
    -----
    With :math:`r = \lfloor K/2 \rfloor` per axis,

    .. math::
        (H x)[y] = \sum_k h[k]\, x[y - (k - r)], \qquad
        (H^\top z)[y] = \sum_k h[k]\, z[y + (k - r)],

    indices outside the volume reading zero (``"zero"``) or taken modulo the
    shape (``"periodic"``). The adjoint is the convolution with the flipped
    kernel :math:`h[K - 1 - k]` under the same centring and boundary.
    A dask volume keeps its chunks (dask merges chunks thinner than the halo
    for the convolution; the result is rechunked back).

    Examples
    --------
    >>> h = np.zeros((3, 1, 1)); h[2] = 1.0   # a shift by +1 along axis 0
    >>> x = np.zeros((4, 1, 1)); x[0] = 1.0
    >>> Blur(h, x.shape).matvec(x).ravel().round(12)
    array([0., 1., 0., 0.])
    >>> Blur(h, x.shape, boundary="periodic").rmatvec(x).ravel().round(12)
    array([0., 0., 0., 1.])
    """

    def __init__(
        self,
        kernel: Any,
        shape: Sequence[int],
        *,
        boundary: Boundary = "zero",
        dtype: Any = None,
        workers: int = -1,
    ):
        h = check_kernel(kernel)
        shp = as_shape(shape)
        if boundary not in ("zero", "periodic"):
            raise InputError(f"boundary must be 'zero' or 'periodic', got {boundary!r}")
        if boundary == "periodic" and any(k > n for k, n in zip(h.shape, shp, strict=True)):
            raise InputError(f"kernel support {h.shape} is larger than the periodic grid {shp}")
        dt = np.result_type(h.dtype, np.float32) if dtype is None else np.dtype(dtype)
        super().__init__(shp, shp, dt)
        self.kernel = np.ascontiguousarray(h, dtype=dt)
        self.flipped = np.ascontiguousarray(self.kernel[::-1, ::-1, ::-1])
        self.boundary = boundary
        self.radius = tuple(k // 2 for k in h.shape)
        self.workers = workers

    def _matvec(self, x: Any) -> Any:
        return self._apply(x, self.kernel)

    def _rmatvec(self, y: Any) -> Any:
        return self._apply(y, self.flipped)

    def _apply(self, x: Any, kernel: np.ndarray) -> Any:
        if is_dask(x):
            return self._apply_dask(x, kernel, np.result_type(x.dtype, self.dtype))
        xp = array_namespace(x)
        dtype = xp.result_type(x.dtype, dtype_of(xp, self.dtype))
        if self.boundary == "zero":
            return blur_block(x, kernel, dtype, self.workers)
        out = blur_block(_wrap(x, self.radius), kernel, dtype, self.workers)
        return out[tuple(slice(r, r + n) for r, n in zip(self.radius, self.shape_in, strict=True))]

    def _apply_dask(self, x: Any, kernel: np.ndarray, dtype: np.dtype) -> Any:
        out = x.map_overlap(
            blur_block,
            depth=dict(enumerate(self.radius)),
            boundary=0 if self.boundary == "zero" else "periodic",
            trim=True,
            dtype=dtype,
            meta=np.empty((0,) * x.ndim, dtype=dtype),
            kernel=kernel,
            out_dtype=dtype,
        )
        return out if out.chunks == x.chunks else out.rechunk(x.chunks)


def _wrap(x: Any, radius: Sequence[int]) -> Any:
    """``x`` padded periodically by ``radius`` voxels per axis (``numpy.pad(mode="wrap")``,
    in the array API: concatenations)."""
    xp = array_namespace(x)
    for axis, r in enumerate(radius):
        if r:
            n = x.shape[axis]
            head = tuple(slice(n - r, n) if a == axis else slice(None) for a in range(x.ndim))
            tail = tuple(slice(0, r) if a == axis else slice(None) for a in range(x.ndim))
            x = xp.concat([x[head], x, x[tail]], axis=axis)
    return x


def _valid(h: np.ndarray, shape: Sequence[int]) -> Crop:
    """The crop that keeps the outputs whose footprint lies inside ``shape``."""
    if any(k > n for k, n in zip(h.shape, shape, strict=True)):
        raise InputError(f"kernel support {h.shape} is larger than the volume {tuple(shape)}")
    return Crop(
        shape, tuple(slice(k // 2, n - k // 2) for k, n in zip(h.shape, shape, strict=True))
    )


def convolve(x: Any, h: Any, mode: Mode = "same", workers: int = -1) -> Any:
    """``h * x`` with zeros outside ``x`` (numpy or dask), as :class:`Blur`.

    Parameters
    ----------
    x : array
        3D volume.
    h : array
        3D kernel with odd support per axis, centre at ``K // 2``.
    mode : {"same", "valid"}
        ``"same"``: output shape of ``x``. ``"valid"``: only the outputs whose
        whole footprint lies inside ``x`` (shape ``n - K + 1``).
    workers : int
        Threads for :mod:`scipy.fft` (``-1``: all cores).

    Returns
    -------
    array
        ``(h * x)[y] = sum_k h[k] x[y - (k - K//2)]`` in the result dtype of
        ``x`` and ``h`` (at least float32).
    """
    h = check_kernel(h)
    op = Blur(h, np.shape(x), workers=workers)
    if mode == "same":
        return op.matvec(x)
    if mode == "valid":
        return (_valid(h, op.shape_in) @ op).matvec(x)
    raise InputError(f"mode must be 'same' or 'valid', got {mode!r}")


def convolve_adjoint(y: Any, h: Any, mode: Mode = "same", workers: int = -1) -> Any:
    """Adjoint of :func:`convolve` (correlation with ``h``).

    For ``"same"`` the result has the shape of ``y``; for ``"valid"`` the shape
    of the original input, ``y.shape + K - 1``.
    """
    h = check_kernel(h)
    if mode == "same":
        return Blur(h, np.shape(y), workers=workers).rmatvec(y)
    if mode == "valid":
        shape = tuple(n + k - 1 for n, k in zip(np.shape(y), h.shape, strict=True))
        return (_valid(h, shape) @ Blur(h, shape, workers=workers)).rmatvec(y)
    raise InputError(f"mode must be 'same' or 'valid', got {mode!r}")
