"""Linear operators of the forward model ``g = U(h * (f + c))``, each with its adjoint.

Convolution follows the paper's centring: for an odd kernel of support ``K``
(per axis), ``(h * F)[y] = sum_k h[k] F[y - (k - K//2)]``. ``"same"`` mode keeps
the input shape with zeros outside the volume; ``"valid"`` keeps only the
outputs that see no zero padding (shape ``n - K + 1``). Decimation ``U`` keeps
indices ``0, p, 2p, ...`` per axis; its adjoint fills zeros.

Every operator has ``matvec`` (forward) and ``rmatvec`` (adjoint) side by side,
checked by dot tests (``<A x, y> = <x, A^T y>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft
from scipy.signal import fftconvolve

from boneframe.errors import InputError

Mode = Literal["same", "valid"]
Factor = int | Sequence[int]


def as_factor(p: Factor) -> tuple[int, int, int]:
    """Decimation factor per axis (an int is used on every axis)."""
    t = (int(p),) * 3 if np.isscalar(p) else tuple(int(v) for v in p)  # type: ignore[arg-type]
    if len(t) != 3 or min(t) < 1:
        raise InputError(f"decimation factor must be one or three positive integers, got {p!r}")
    return t  # type: ignore[return-value]


def check_kernel(h: np.ndarray) -> np.ndarray:
    """Validate a 3D kernel with odd, finite support; returns it as an array."""
    h = np.asarray(h)
    if h.ndim != 3:
        raise InputError(f"the kernel must be 3D, got shape {h.shape}")
    if any(s % 2 == 0 for s in h.shape):
        raise InputError(f"the kernel support must be odd on every axis, got {h.shape}")
    if not np.all(np.isfinite(h)):
        raise InputError("the kernel contains NaN or infinite values")
    return h


def _flip(h: np.ndarray) -> np.ndarray:
    return h[::-1, ::-1, ::-1]


def convolve(x: np.ndarray, h: np.ndarray, mode: Mode = "same", workers: int = -1) -> np.ndarray:
    """FFT convolution of a volume with an odd-support, centred kernel.

    Parameters
    ----------
    x : ndarray
        3D volume.
    h : ndarray
        3D kernel with odd support per axis, centre at ``K // 2``.
    mode : {"same", "valid"}
        ``"same"``: output shape of ``x``, zeros assumed outside. ``"valid"``:
        only outputs whose whole footprint lies inside ``x``.
    workers : int
        Threads for :mod:`scipy.fft` (``-1``: all cores).

    Returns
    -------
    ndarray
        ``(h * x)[y] = sum_k h[k] x[y - (k - K//2)]``, in the result dtype of
        ``x`` and ``h``.
    """
    h = check_kernel(h)
    if mode == "valid" and any(k > n for k, n in zip(h.shape, x.shape, strict=True)):
        raise InputError(f"kernel support {h.shape} is larger than the volume {x.shape}")
    with scipy.fft.set_workers(workers):
        return fftconvolve(x, h, mode=mode)


def convolve_adjoint(
    y: np.ndarray, h: np.ndarray, mode: Mode = "same", workers: int = -1
) -> np.ndarray:
    """Adjoint of :func:`convolve` (correlation with ``h``).

    For ``"same"`` the result has the shape of ``y``; for ``"valid"`` the shape
    of the original input, ``y.shape + K - 1``.
    """
    h = check_kernel(h)
    with scipy.fft.set_workers(workers):
        return fftconvolve(y, _flip(h), mode="same" if mode == "same" else "full")


def decimate(x: np.ndarray, p: Factor = 2) -> np.ndarray:
    """Keep voxels ``0, p, 2p, ...`` along each axis (the operator ``U``)."""
    p0, p1, p2 = as_factor(p)
    return x[::p0, ::p1, ::p2]


def decimate_adjoint(y: np.ndarray, p: Factor, shape: Sequence[int]) -> np.ndarray:
    """Adjoint of :func:`decimate`: place ``y`` on every p-th voxel of zeros of ``shape``."""
    p0, p1, p2 = as_factor(p)
    out = np.zeros(tuple(shape), dtype=y.dtype)
    expected = decimated_shape(shape, p)
    if tuple(y.shape) != expected:
        raise InputError(f"decimated shape should be {expected}, got {tuple(y.shape)}")
    out[::p0, ::p1, ::p2] = y
    return out


def decimated_shape(shape: Sequence[int], p: Factor = 2) -> tuple[int, int, int]:
    """Shape of ``decimate(x, p)`` for ``x`` of ``shape``."""
    return tuple(-(-int(n) // q) for n, q in zip(shape, as_factor(p), strict=True))  # type: ignore[return-value]


class Convolution:
    """``x -> h * x`` as an operator with its adjoint (see :func:`convolve`)."""

    def __init__(self, h: np.ndarray, shape: Sequence[int], mode: Mode = "same"):
        self.h = check_kernel(h)
        self.mode = mode
        self.shape_in = tuple(int(s) for s in shape)
        if mode == "same":
            self.shape_out = self.shape_in
        else:
            self.shape_out = tuple(
                n - k + 1 for n, k in zip(self.shape_in, self.h.shape, strict=True)
            )

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """Forward: ``h * x``."""
        return convolve(x, self.h, self.mode)

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """Adjoint: correlation of ``y`` with ``h``."""
        return convolve_adjoint(y, self.h, self.mode)


class Decimation:
    """``x -> U x`` (keep every p-th voxel) with its zero-filling adjoint."""

    def __init__(self, shape: Sequence[int], p: Factor = 2):
        self.p = as_factor(p)
        self.shape_in = tuple(int(s) for s in shape)
        self.shape_out = decimated_shape(self.shape_in, self.p)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """Forward: ``U x``."""
        return decimate(x, self.p)

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """Adjoint: ``U^T y``."""
        return decimate_adjoint(y, self.p, self.shape_in)


def forward_model(
    f: np.ndarray, h: np.ndarray, c: float = 0.0, p: Factor = 2, mode: Mode = "same"
) -> np.ndarray:
    """Noise-free low-resolution prediction ``U(h * (f + c))``.

    In ``"valid"`` mode only the low-resolution voxels whose high-resolution
    footprint lies inside ``f`` are returned, i.e. ``U`` applied to the valid
    convolution, re-aligned so that element ``i`` sits on HR voxel ``p*i``
    (see :func:`valid_lr_slices`).
    """
    p3 = as_factor(p)
    blurred = convolve(f + c, h, "same")
    if mode == "same":
        return decimate(blurred, p3)
    return decimate(blurred, p3)[valid_lr_slices(f.shape, h.shape, p3)]


def valid_lr_slices(
    hr_shape: Sequence[int], support: Sequence[int], p: Factor = 2
) -> tuple[slice, slice, slice]:
    """Low-resolution index ranges whose kernel footprint lies inside the HR volume.

    LR voxel ``i`` sits on HR voxel ``p*i`` and sees HR voxels
    ``p*i - K//2 ... p*i + K//2``.
    """
    out = []
    for n, k, q in zip(hr_shape, support, as_factor(p), strict=True):
        r = int(k) // 2
        lo = -(-r // q)
        hi = (int(n) - 1 - r) // q + 1
        if hi <= lo:
            raise InputError(
                f"kernel support {tuple(support)} leaves no valid voxel "
                f"in a volume of {tuple(hr_shape)}"
            )
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]
