"""Forward-difference gradient ``D`` and its adjoint ``D^T`` (= minus divergence).

``boundary="neumann"``: the difference across the last voxel is zero (no
assumption about what lies outside). ``boundary="periodic"``: wraps around, the
form whose Fourier transform diagonalises ``D^T D`` (used by the exact ADMM step).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Boundary = Literal["neumann", "periodic"]


def gradient(x: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Forward differences along every axis, stacked: shape ``(x.ndim, *x.shape)``."""
    out = np.zeros((x.ndim, *x.shape), dtype=np.result_type(x.dtype, np.float32))
    for axis in range(x.ndim):
        if boundary == "periodic":
            out[axis] = np.roll(x, -1, axis=axis) - x
        else:
            lo = [slice(None)] * x.ndim
            hi = [slice(None)] * x.ndim
            lo[axis] = slice(0, -1)
            hi[axis] = slice(1, None)
            out[axis][tuple(lo)] = x[tuple(hi)] - x[tuple(lo)]
    return out


def gradient_adjoint(v: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Adjoint of :func:`gradient`: ``D^T v`` (minus the backward-difference divergence)."""
    ndim = v.shape[0]
    out = np.zeros(v.shape[1:], dtype=v.dtype)
    for axis in range(ndim):
        va = v[axis]
        if boundary == "periodic":
            out += np.roll(va, 1, axis=axis) - va
        else:
            # D^T of the Neumann difference: -va[0], va[i-1]-va[i], va[n-2] at the end
            lo = [slice(None)] * ndim
            hi = [slice(None)] * ndim
            lo[axis] = slice(0, -1)
            hi[axis] = slice(1, None)
            out[tuple(lo)] -= va[tuple(lo)]
            out[tuple(hi)] += va[tuple(lo)]
    return out


def laplacian(x: np.ndarray, boundary: Boundary = "neumann") -> np.ndarray:
    """Discrete Laplacian ``-D^T D x`` with the same boundary rule."""
    return -gradient_adjoint(gradient(x, boundary), boundary)
