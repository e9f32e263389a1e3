r"""Decimation ``U`` (keep voxels ``0, p, 2p, ...`` per axis) and its zero-filling adjoint.

On a dask volume every chunk is decimated on its own, so the chunks (but the
last per axis) must be multiples of ``p``: then chunk ``j`` of the result is
high-resolution chunk ``j`` decimated, with no data moving between chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.device import array_namespace
from boneframe.errors import InputError
from boneframe.operators.base import LinearOperator
from boneframe.operators.geometry import Factor, as_factor, as_shape, decimated_shape, is_dask

__all__ = ["Decimate", "check_chunks", "decimate", "decimate_adjoint"]


def check_chunks(x: Any, p: Factor = 2, *, rechunk: bool = False) -> Any:
    """Make sure every chunk of a dask volume but the last per axis is a multiple of ``p``.

    Parameters
    ----------
    x : dask.array.Array
        3D volume.
    p : int or 3 ints
        Decimation factor per axis.
    rechunk : bool
        Round misaligned chunk sizes up to the next multiple of ``p`` instead of
        raising.

    Returns
    -------
    dask.array.Array
        ``x`` (rechunked when allowed and needed).

    Raises
    ------
    InputError
        A misaligned chunk and ``rechunk=False``.
    """
    pp = as_factor(p)
    bad = [
        axis
        for axis, (chunks, q) in enumerate(zip(x.chunks, pp, strict=True))
        if any(c % q for c in chunks[:-1])
    ]
    if not bad:
        return x
    if not rechunk:
        raise InputError(
            f"chunk sizes {tuple(x.chunks[a][0] for a in bad)} along axes {tuple(bad)} are not "
            f"multiples of the decimation factor {pp}: rechunk the volume (or pass rechunk=True)"
        )
    size = tuple(max(q, -(-max(chunks) // q) * q) for chunks, q in zip(x.chunks, pp, strict=True))
    return x.rechunk(size)


def decimate_block(block: np.ndarray, p: tuple[int, int, int]) -> np.ndarray:
    """``U`` on one block: its voxels ``0, p, 2p, ...`` per axis."""
    return block[:: p[0], :: p[1], :: p[2]]


def fill_block(
    block: np.ndarray,
    p: tuple[int, int, int],
    shape: Sequence[int] | None = None,
    block_info: Any = None,
) -> np.ndarray:
    """``U^T`` on one block: ``block`` on every ``p``-th voxel of zeros of ``shape``."""
    if shape is None:
        shape = block_info[None]["chunk-shape"]
    out = array_namespace(block).zeros(tuple(shape), dtype=block.dtype)
    out[:: p[0], :: p[1], :: p[2]] = block
    return out


class Decimate(LinearOperator):
    r"""``x -> U x``: keep voxels ``0, p, 2p, ...`` per axis; the adjoint zero-fills.

    Parameters
    ----------
    shape : sequence of int
        High-resolution shape (any size; the result has ``ceil(n / p)`` voxels).
    p : int or 3 ints
        Decimation factor per axis.
    rechunk : bool
        On a dask volume whose chunks are not multiples of ``p``: rechunk it
        (``True``) or raise (``False``, default; see :func:`check_chunks`).

    Notes
    -----
    .. math::
        (U x)[i] = x[p\,i], \qquad
        (U^\top y)[j] = \begin{cases} y[j / p] & p \mid j \\ 0 & \text{else} \end{cases}

    per axis. In memory ``U x`` is a copy (not a view that would keep the
    high-resolution array alive). On a dask volume each block is decimated
    (``U^T``: filled) by the function used in memory; the low-resolution chunks
    are the high-resolution ones divided by ``p`` (rounded up).
    """

    def __init__(self, shape: Sequence[int], p: Factor = 2, *, rechunk: bool = False):
        shp = as_shape(shape)
        self.p = as_factor(p)
        self.rechunk = rechunk
        super().__init__(shp, decimated_shape(shp, self.p), np.float32)

    def _matvec(self, x: Any) -> Any:
        if not is_dask(x):  # a copy (numpy, CuPy, ...): not a view of the HR array
            return array_namespace(x).asarray(decimate_block(x, self.p), copy=True)
        x = check_chunks(x, self.p, rechunk=self.rechunk)
        chunks = tuple(
            tuple(-(-c // q) for c in axis) for axis, q in zip(x.chunks, self.p, strict=True)
        )
        return x.map_blocks(decimate_block, p=self.p, chunks=chunks, dtype=x.dtype, meta=x._meta)

    def _rmatvec(self, y: Any) -> Any:
        if not is_dask(y):
            return fill_block(y, self.p, self.shape_in)
        hr_chunks = []
        for axis, q, n in zip(y.chunks, self.p, self.shape_in, strict=True):
            sizes = [c * q for c in axis]
            sizes[-1] = n - sum(sizes[:-1])
            hr_chunks.append(tuple(sizes))
        return y.map_blocks(
            fill_block, p=self.p, chunks=tuple(hr_chunks), dtype=y.dtype, meta=y._meta
        )


def decimate(x: Any, p: Factor = 2, *, rechunk: bool = False) -> Any:
    """``U x``: keep voxels ``0, p, 2p, ...`` along each axis (numpy or dask; :class:`Decimate`)."""
    return Decimate(np.shape(x), p, rechunk=rechunk).matvec(x)


def decimate_adjoint(y: Any, p: Factor, shape: Sequence[int]) -> Any:
    """``U^T y``: ``y`` on every ``p``-th voxel of zeros of ``shape`` (:class:`Decimate`)."""
    return Decimate(shape, p).rmatvec(y)
