"""Resampling for registration: the moving scan reduced to the HR-pQCT's
resolution (for the optimisation), and the full-resolution micro-CT resampled onto
the HR-pQCT-aligned fine grid (the result).

Both work in slabs along array axis 0, so that a scan of thousands of voxels per
axis (numpy, memory-mapped or dask) is never converted to float as a whole.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from boneframe.errors import InputError
from boneframe.registration.sitk import (
    UM_PER_MM,
    RigidTransform,
    import_sitk,
    index_grid_points,
    to_sitk,
    world_to_index,
)
from boneframe.volume import Triple, Volume

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TRUNCATE = 4.0  # Gaussian truncation, in standard deviations
_SLAB_BYTES = 256 * 2**20  # float32 working set of one slab

Interp = Literal["linear", "bspline"]


class FineGrid(NamedTuple):
    """Geometry of the HR-pQCT-aligned fine grid (µm, world frame)."""

    shape: tuple[int, int, int]
    voxel_size: Triple
    origin: Triple
    direction: np.ndarray


def fine_grid(fixed: Volume, p: int = 2, pad: int = 0) -> FineGrid:
    """The grid whose voxel ``p·(i + pad)`` is HR-pQCT voxel ``i``.

    Origin at the HR-pQCT origin (the centre of its voxel 0) moved back by ``pad``
    HR-pQCT voxels, same direction, spacing HR-pQCT spacing / ``p``, shape
    ``p·(n + 2·pad)``. This is *not* the ×p zoom of the HR-pQCT bounding box, whose
    voxel 0 sits (p−1)/(2p) of an HR-pQCT voxel earlier on every axis: on that grid
    the decimation ``U`` (keep 0, p, 2p, …) misses the HR-pQCT voxels.

    Parameters
    ----------
    fixed : Volume
        The HR-pQCT scan (voxel size known).
    p : int
        Resolution factor (≥ 1).
    pad : int
        Extra HR-pQCT voxels on every side (≥ 0), e.g. for a kernel's support.
    """
    if int(p) != p or p < 1:
        raise InputError(f"the resolution factor p must be a positive integer, got {p!r}")
    if int(pad) != pad or pad < 0:
        raise InputError(f"pad must be a non-negative integer, got {pad!r}")
    p, pad = int(p), int(pad)
    vs = np.asarray(fixed.require_voxel_size())
    origin = np.asarray(fixed.origin) - fixed.direction @ (pad * vs)
    shape = tuple(p * (n + 2 * pad) for n in fixed.shape)
    return FineGrid(shape, tuple(vs / p), tuple(origin), fixed.direction.copy())  # type: ignore[arg-type]


def _slab_rows(row_bytes: int, halo: int = 0) -> int:
    return max(1, _SLAB_BYTES // max(row_bytes, 1) - 2 * halo)


def smooth_and_shrink(
    moving: Volume, target_spacing_um: float, fwhm_um: float
) -> tuple[np.ndarray, Triple]:
    """Gaussian-smooth the moving scan and keep every ``k``-th voxel.

    The stride per axis is the largest integer ``k`` with ``k·spacing ≤
    target_spacing_um``, so the reduced scan is never coarser than asked and its
    voxel 0 stays where the original's is (the geometry needs no shift). The
    smoothing is separable and done in slabs along axis 0 with a halo of the
    Gaussian's truncation radius, so the result equals a whole-volume filter.

    Parameters
    ----------
    moving : Volume
        Micro-CT scan (any real dtype, numpy or dask).
    target_spacing_um : float
        Spacing wanted for the optimisation (the HR-pQCT's).
    fwhm_um : float
        Full width at half maximum of the Gaussian (µm); 0 for none.

    Returns
    -------
    (array, voxel_size) : tuple
        float32 array and its voxel size (µm).
    """
    vs = np.asarray(moving.require_voxel_size())
    stride = [max(1, int(math.floor(target_spacing_um / v + 1e-9))) for v in vs]
    sigma = [fwhm_um / FWHM_PER_SIGMA / v for v in vs]
    halo = int(math.ceil(_TRUNCATE * sigma[0])) if sigma[0] > 0 else 0
    n0 = moving.shape[0]
    out_rows = -(-n0 // stride[0])
    row_bytes = 4 * moving.shape[1] * moving.shape[2]
    step = max(1, _slab_rows(row_bytes, halo) // stride[0])
    pieces = []
    for r0 in range(0, out_rows, step):
        r1 = min(out_rows, r0 + step)
        lo = max(0, r0 * stride[0] - halo)
        hi = min(n0, (r1 - 1) * stride[0] + halo + 1)
        block = np.asarray(moving.data[lo:hi], dtype=np.float32)
        for axis in (2, 1):
            if sigma[axis] > 0:
                block = gaussian_filter1d(
                    block, sigma[axis], axis=axis, mode="nearest", truncate=_TRUNCATE
                )
            block = block[:, :: stride[1]] if axis == 1 else block[:, :, :: stride[2]]
        if sigma[0] > 0:
            block = gaussian_filter1d(block, sigma[0], axis=0, mode="nearest", truncate=_TRUNCATE)
        rows = np.arange(r0, r1) * stride[0] - lo
        pieces.append(np.ascontiguousarray(block[rows]))
    out = np.concatenate(pieces, axis=0)
    return out, tuple(float(v * s) for v, s in zip(vs, stride, strict=True))  # type: ignore[return-value]


def _out_dtype(dtype: np.dtype) -> np.dtype:
    """8/16-bit integers stay as they are (rounded); float64 stays; all else float32."""
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return dtype
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def resample_to_fine_grid(
    moving: Volume,
    fixed: Volume,
    transform: RigidTransform,
    p: int = 2,
    interp: Interp = "linear",
    *,
    pad: int = 0,
    fill: float = 0.0,
    slab_bytes: int | None = None,
) -> Volume:
    """Resample the full-resolution micro-CT onto the HR-pQCT-aligned fine grid.

    Output voxel ``p·(i + pad)`` lies on HR-pQCT voxel ``i`` (see :func:`fine_grid`),
    so the forward model ``g = U(h * (f + c))`` holds on the result.

    Parameters
    ----------
    moving : Volume
        Micro-CT scan at its own resolution (numpy or dask; int16 stays int16).
    fixed : Volume
        HR-pQCT scan (only its geometry is used).
    transform : RigidTransform
        Fixed → moving point map (the registration's result).
    p : int
        Resolution factor of the fine grid.
    interp : {"linear", "bspline"}
        Interpolation of the micro-CT (B-spline: cubic, values clipped to the
        output dtype's range).
    pad : int
        Extra HR-pQCT voxels on each side of the grid.
    fill : float
        Value where the micro-CT does not reach.
    slab_bytes : int, optional
        Working-set size of one slab (default 256 MiB).

    Returns
    -------
    Volume
        On the fine grid, dtype of ``moving`` for 8/16-bit integers (rounded),
        float64 for float64, float32 otherwise.
    """
    sitk = import_sitk()
    if interp not in ("linear", "bspline"):
        raise InputError(f"interp must be 'linear' or 'bspline', got {interp!r}")
    grid = fine_grid(fixed, p, pad)
    out_dtype = _out_dtype(moving.dtype)
    pixel = sitk.sitkFloat64 if out_dtype == np.float64 else sitk.sitkFloat32
    interpolator = sitk.sitkLinear if interp == "linear" else sitk.sitkBSpline
    # B-spline coefficients depend (weakly) on the block's edges: keep them far away
    margin = 3 if interp == "linear" else 14
    n0, n1, n2 = grid.shape
    budget = slab_bytes or _SLAB_BYTES
    rows = max(1, budget // (8 * n1 * n2))
    out = np.empty(grid.shape, dtype=out_dtype)
    grid_vol = Volume(np.empty((1, 1, 1)), grid.voxel_size, grid.origin, grid.direction)
    tx = transform.to_sitk()
    mshape = np.asarray(moving.shape)
    info = np.iinfo(out_dtype) if out_dtype.kind in "iu" else None
    for a in range(0, n0, rows):
        b = min(n0, a + rows)
        corners = np.array(
            [[i, j, k] for i in (a, b - 1) for j in (0, n1 - 1) for k in (0, n2 - 1)], float
        )
        idx = world_to_index(moving, transform.apply(index_grid_points(grid_vol, corners)))
        lo = np.clip(np.floor(idx.min(axis=0)).astype(int) - margin, 0, mshape)
        hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + margin + 1, 0, mshape)
        if np.any(hi <= lo):
            out[a:b] = fill
            continue
        block = np.asarray(moving.data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
        if block.dtype.kind == "b":
            block = block.astype(np.uint8)
        image = to_sitk(moving, block, start=lo)
        origin = np.asarray(grid.origin) + grid.direction[:, 0] * (a * grid.voxel_size[0])
        res = sitk.Resample(
            image,
            (n2, n1, b - a),
            tx,
            interpolator,
            tuple(float(v) / UM_PER_MM for v in origin),
            tuple(float(v) / UM_PER_MM for v in grid.voxel_size[::-1]),
            tuple(float(v) for v in grid.direction[:, ::-1].ravel()),
            float(fill),
            pixel,
        )
        vals = sitk.GetArrayViewFromImage(res)
        if info is not None:
            out[a:b] = np.clip(np.rint(vals), info.min, info.max)
        else:
            out[a:b] = vals
    return Volume(out, grid.voxel_size, grid.origin, grid.direction, dict(moving.metadata))


def overlap_fraction(
    moving: Volume, fixed: Volume, transform: RigidTransform, max_points: int = 2**18
) -> float:
    """Share of the HR-pQCT voxel centres whose image lies inside the micro-CT.

    Counted on a regular subset of at most ``max_points`` voxels; inside means
    within the micro-CT's voxel centres (where interpolation needs no border).
    """
    stride = max(1, int(math.ceil((np.prod(fixed.shape) / max_points) ** (1 / 3))))
    axes = [np.arange(0, n, stride, dtype=float) for n in fixed.shape]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    m = world_to_index(moving, transform.apply(index_grid_points(fixed, idx)))
    upper = np.asarray(moving.shape, float) - 1.0
    inside = np.all((m >= -1e-9) & (m <= upper + 1e-9), axis=1)
    return float(np.mean(inside))
