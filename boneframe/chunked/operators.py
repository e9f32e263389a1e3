r"""The forward model ``g = U(h * (f + c))`` on dask arrays, block by block.

Each function gives the numbers of its in-memory counterpart in
:mod:`boneframe.operators` (to float rounding) while touching one chunk (plus a
halo) at a time:

* :func:`convolve` / :func:`convolve_adjoint`: FFT convolution (correlation) of
  every chunk extended by a halo of the kernel radius ``K // 2`` per axis
  (:func:`dask.array.map_overlap`), the halo trimmed afterwards. Outside the
  volume the halo is zero, which is the ``"same"`` convention of
  :func:`boneframe.operators.convolve` (zeros assumed outside).
* :func:`decimate` / :func:`decimate_adjoint`: ``U`` keeps voxels ``0, p, 2p, ...``;
  when every chunk (but the last per axis) is a multiple of ``p``, each chunk
  keeps its own every ``p``-th voxel and the low-resolution chunks are the
  high-resolution ones divided by ``p``.
* :func:`forward_model`: ``U(h * (f + c))``.

Nothing is computed until the result is (``.compute()``, ``dask.compute`` or a
store to zarr); with a ``dask.distributed`` client active
(:func:`boneframe.chunked.cluster.use_scheduler`) that happens on the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from scipy.signal import fftconvolve

from boneframe.errors import InputError
from boneframe.operators import Factor, Mode, as_factor, check_kernel, decimated_shape

__all__ = [
    "as_dask",
    "check_chunks",
    "convolve",
    "convolve_adjoint",
    "decimate",
    "decimate_adjoint",
    "forward_model",
]


def as_dask(x: Any, what: str = "the volume") -> da.Array:
    """``x`` as a 3D dask array (a numpy array becomes a single chunk)."""
    arr = x if isinstance(x, da.Array) else da.asarray(x)
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {arr.shape}")
    if any(np.isnan(s) for s in arr.shape):
        raise InputError(f"{what} has unknown chunk sizes; call compute_chunk_sizes() first")
    return arr


def check_chunks(x: da.Array, p: Factor = 2, *, rechunk: bool = False) -> da.Array:
    """Make sure every chunk but the last per axis is a multiple of ``p``.

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


def _halo_ready(x: da.Array, radius: Sequence[int]) -> da.Array:
    """Rechunk so that every chunk is at least as large as the halo it must lend."""
    small = any(
        r > 0 and min(chunks) < r and len(chunks) > 1
        for chunks, r in zip(x.chunks, radius, strict=True)
    )
    if not small:
        return x
    size = tuple(max(max(chunks), r) for chunks, r in zip(x.chunks, radius, strict=True))
    return x.rechunk(size)


def _block_convolve(block: np.ndarray, h: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    return np.asarray(fftconvolve(block, h, mode="same"), dtype=out_dtype)


def convolve(x: Any, h: np.ndarray, mode: Mode = "same") -> da.Array:
    r"""Blockwise FFT convolution with an odd-support, centred kernel.

    Parameters
    ----------
    x : dask.array.Array or ndarray
        3D volume.
    h : ndarray
        3D kernel with odd support ``K`` per axis, centre at ``K // 2``.
    mode : {"same", "valid"}
        As :func:`boneframe.operators.convolve`: ``"same"`` keeps the shape of
        ``x`` with zeros assumed outside; ``"valid"`` keeps only the outputs whose
        footprint lies inside ``x``.

    Returns
    -------
    dask.array.Array
        ``h * x``, chunked like ``x`` (``"valid"``: its interior; dask may merge
        chunks smaller than the halo), in the result dtype of ``x`` and ``h`` (at
        least float32).

    Notes
    -----
    .. math:: (h * x)[y] = \sum_k h_k \, x[y - (k - K/\!/2)]

    reads ``x`` at most ``r = K // 2`` voxels from ``y`` per axis, so a chunk
    extended by a halo of ``r`` (zeros beyond the volume) determines the
    convolution on the chunk exactly: each extended chunk is convolved in
    ``"same"`` mode and its halo dropped. Chunks smaller than ``r`` are merged
    first (``map_overlap`` cannot lend more than a neighbour holds).
    """
    h = check_kernel(h)
    arr = as_dask(x)
    if mode not in ("same", "valid"):
        raise InputError(f"mode must be 'same' or 'valid', got {mode!r}")
    if mode == "valid" and any(k > n for k, n in zip(h.shape, arr.shape, strict=True)):
        raise InputError(f"kernel support {h.shape} is larger than the volume {arr.shape}")
    radius = tuple(k // 2 for k in h.shape)
    dtype = np.result_type(arr.dtype, h.dtype, np.float32)
    arr = _halo_ready(arr, radius)
    out = arr.map_overlap(
        _block_convolve,
        depth=dict(enumerate(radius)),
        boundary=0,
        trim=True,
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype),
        h=h,
        out_dtype=dtype,
    )
    if mode == "valid":
        out = out[tuple(slice(r, n - r) for r, n in zip(radius, arr.shape, strict=True))]
    return out


def convolve_adjoint(y: Any, h: np.ndarray, mode: Mode = "same") -> da.Array:
    """Adjoint of :func:`convolve`: correlation with ``h``.

    For ``"same"`` the result has the shape of ``y`` (convolution with the
    flipped kernel, same centring); for ``"valid"`` the shape of the original
    input, ``y.shape + K - 1`` (``y`` zero-padded by ``K // 2`` per side, then
    correlated in ``"same"`` mode: the ``"full"`` correlation).
    """
    h = check_kernel(h)
    arr = as_dask(y)
    flipped = np.ascontiguousarray(h[::-1, ::-1, ::-1])
    if mode == "valid":
        radius = tuple(k // 2 for k in h.shape)
        arr = da.pad(arr, tuple((r, r) for r in radius), mode="constant")
    return convolve(arr, flipped, "same")


def decimate(x: Any, p: Factor = 2, *, rechunk: bool = False) -> da.Array:
    """Keep voxels ``0, p, 2p, ...`` per axis (the operator ``U``), chunk by chunk.

    Parameters
    ----------
    x : dask.array.Array or ndarray
        3D volume whose chunks (but the last per axis) are multiples of ``p``.
    p : int or 3 ints
        Decimation factor per axis.
    rechunk : bool
        Rechunk misaligned volumes instead of raising (see :func:`check_chunks`).

    Returns
    -------
    dask.array.Array
        Shape ``ceil(x.shape / p)``; chunk ``j`` is high-resolution chunk ``j``
        decimated (chunk sizes ``ceil(c / p)``).

    Raises
    ------
    InputError
        Chunks not multiples of ``p`` (and ``rechunk=False``).
    """
    pp = as_factor(p)
    arr = check_chunks(as_dask(x), pp, rechunk=rechunk)
    chunks = tuple(tuple(-(-c // q) for c in axis) for axis, q in zip(arr.chunks, pp, strict=True))
    step = tuple(slice(None, None, q) for q in pp)
    return arr.map_blocks(lambda b: b[step], chunks=chunks, dtype=arr.dtype)


def decimate_adjoint(y: Any, p: Factor, shape: Sequence[int], chunks: Any = None) -> da.Array:
    """Adjoint of :func:`decimate`: ``y`` on every ``p``-th voxel of zeros of ``shape``.

    Parameters
    ----------
    y : dask.array.Array or ndarray
        Low-resolution volume of shape ``ceil(shape / p)``.
    p : int or 3 ints
        Decimation factor per axis.
    shape : 3 ints
        High-resolution shape.
    chunks : optional
        High-resolution chunks (multiples of ``p`` but the last); default: the
        chunks of ``y`` times ``p``.

    Returns
    -------
    dask.array.Array
    """
    pp = as_factor(p)
    arr = as_dask(y)
    shape = tuple(int(s) for s in shape)
    expected = decimated_shape(shape, pp)
    if tuple(arr.shape) != expected:
        raise InputError(f"decimated shape should be {expected}, got {tuple(arr.shape)}")
    if chunks is not None:
        template = check_chunks(da.empty(shape, chunks=chunks, dtype=arr.dtype), pp)
        lr = tuple(
            tuple(-(-c // q) for c in axis) for axis, q in zip(template.chunks, pp, strict=True)
        )
        arr = arr.rechunk(lr)
    hr_chunks = []
    for axis, q, n in zip(arr.chunks, pp, shape, strict=True):
        sizes = [c * q for c in axis]
        sizes[-1] = n - sum(sizes[:-1])
        if sizes[-1] <= 0 or -(-sizes[-1] // q) != axis[-1]:
            raise InputError(f"cannot place chunks {axis} of the low-resolution volume in {shape}")
        hr_chunks.append(tuple(sizes))

    def fill(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        out_shape = block_info[None]["chunk-shape"]
        out = np.zeros(out_shape, dtype=block.dtype)
        out[tuple(slice(None, None, q) for q in pp)] = block
        return out

    return arr.map_blocks(fill, chunks=tuple(hr_chunks), dtype=arr.dtype)


def forward_model(
    f: Any, h: np.ndarray, c: float = 0.0, p: Factor = 2, *, rechunk: bool = False
) -> da.Array:
    """Noise-free low-resolution prediction ``U(h * (f + c))``, chunk by chunk.

    Parameters
    ----------
    f : dask.array.Array or ndarray
        High-resolution volume (chunks multiples of ``p`` but the last).
    h : ndarray
        Odd-support kernel.
    c : float
        Grey-level offset (added inside the volume only, zeros outside, as
        :func:`boneframe.operators.forward_model` in ``"same"`` mode).
    p : int or 3 ints
        Decimation factor per axis.
    rechunk : bool
        Rechunk misaligned volumes instead of raising.

    Returns
    -------
    dask.array.Array
        Shape ``ceil(f.shape / p)``, chunks ``ceil(chunks / p)`` (unless chunks
        smaller than the kernel radius had to be merged); equal to
        ``boneframe.operators.forward_model(f, h, c, p, mode="same")``.
    """
    pp = as_factor(p)
    arr = check_chunks(as_dask(f, "the high-resolution volume"), pp, rechunk=rechunk)
    shifted = arr + c if c != 0 else arr
    blurred = convolve(shifted, h, "same")
    return decimate(check_chunks(blurred, pp, rechunk=True), pp)
