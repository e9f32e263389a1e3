r"""Block-wise TV super-resolution of a large (lazy) low-resolution volume.

The LR volume is cut into blocks of ``block`` LR voxels per axis; each block is
solved with ``halo`` extra LR voxels on every side that has a neighbour (a
block at the volume's border is cut there, so that the exact solver reflect-pads
it as :func:`~boneframe.superres.solve.super_resolve` pads the whole volume), and only
its ``p * block`` HR interior is kept. Every block is solved by
:func:`~boneframe.superres.solve.super_resolve` on the **whole volume's** grey scale
(:func:`grey_scale`, computed once from exact percentiles of the whole volume)
with the same regulariser and ADMM parameters, so the stitched volume agrees
with the in-memory solve up to what the halo and the stopping point leave (see
:data:`DEFAULT_HALO`).

The result is a lazy dask array of ``p * block`` chunks; written to zarr, it is
computed and stored block by block, so memory stays bounded by a few blocks
whatever the volume's size. The graph is plain dask (slices of the input and
one task per block), so it runs on the threaded scheduler or on a
``dask.distributed`` client alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Regularizer
from boneframe.kernel.regional import RegionalKernel
from boneframe.kernel.result import Kernel
from boneframe.operators import Factor, as_factor, check_kernel
from boneframe.superres import masked
from boneframe.superres.problem import GREY_RANGE

#: Default LR block side (voxels): HR chunks of 128³ for p = 2.
DEFAULT_BLOCK = 64

#: Default halo (LR voxels) around each block.
#:
#: Measured on simulated bone (``simulate_pair(128, 0, noise=0.01)``: 64³ LR,
#: the default anisotropic 9³ Gaussian kernel, p = 2) split in 32³ LR blocks:
#: PSNR of the stitched block-wise estimate against the whole-volume
#: :func:`~boneframe.superres.super_resolve` with the same parameters, over
#: the whole 128³ HR volume (peak = the whole-volume estimate's range):
#:
#: =========  =======  =======  =======  =======  =======
#: halo (LR)     0        2        4        8       16
#: =========  =======  =======  =======  =======  =======
#: tol 1e-3   34.5 dB     --    52.4 dB  54.8 dB  54.9 dB
#: tol 1e-4      --    47.0 dB  52.7 dB  54.8 dB     --
#: =========  =======  =======  =======  =======  =======
#:
#: From 8 on, what is left does not come from the seams: with halo 8 the
#: HR voxels within 2 of a seam agree to 56 dB, those 16 or more from the
#: volume's border to 63 dB, and the outer 2 HR voxels of the volume to
#: 46 dB, where the whole volume's periodic f-step wraps onto the opposite
#: face and a border block's onto its own cut face (both solves are equally
#: valid there). A tighter tolerance changes nothing (at 1e-4 neither solve
#: stops before 300 iterations), so the blocks keep the in-memory default.
#: Halo 8 costs (64 + 16)³ / (64 + 8)³ = 1.37 times halo 4 per 64³ block.
#: At the default sizes, 128³ LR (256³ HR) in 64³ LR blocks agrees with the
#: whole-volume solve to 55.8 dB (``benchmarks/bench_large_superres.py``).
DEFAULT_HALO = 8

#: What each solved block tells :func:`boneframe.progress.tick`.
PROGRESS_TAG = "superres-block"

#: Bins per refinement pass of the exact chunked percentiles.
_BINS = 4096
#: A bin holding at most this many values is sorted outright.
_COLLECT = 65536


@dataclass(frozen=True)
class BlockwiseSuperResolution:
    """What :func:`super_resolve_blockwise` returns.

    Attributes
    ----------
    volume : dask.array.Array
        The HR estimate (float32, shape ``p * g.shape``, chunks ``p * block``),
        lazy: computed block by block when stored.
    scale : float
        The whole volume's normalisation used by every block (see
        :func:`grey_scale`).
    block, halo : tuple of int
        LR block side and halo per axis.
    solved, blocks : int
        Blocks solved (those meeting the mask; all without one) and blocks in all.
    """

    volume: Any
    scale: float
    block: tuple[int, int, int]
    halo: tuple[int, int, int]
    solved: int = 0
    blocks: int = 0


# -- the global normalisation --------------------------------------------------------
def _corrected(g: Any, gain: float, offset: float) -> Any:
    """``g / gain - offset`` in float64, elementwise as in ``SuperResolutionProblem``."""
    return g.astype(np.float64) / gain - offset


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value in ``[edges[0], edges[-1]]``; the last bin is closed."""
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.minimum(idx, edges.size - 2)


def _in_range(values: np.ndarray, lo: float, hi: float, closed: bool) -> np.ndarray:
    return values[(values >= lo) & ((values <= hi) if closed else (values < hi))]


def _chunk_counts(
    block: np.ndarray, ranges: list[tuple[float, float, bool]], edges: list[np.ndarray]
) -> np.ndarray:
    """Histogram of ``block``'s values in each range (one row per range)."""
    flat = np.asarray(block).ravel()
    out = np.zeros((len(ranges), _BINS), dtype=np.int64)
    for r, ((lo, hi, closed), e) in enumerate(zip(ranges, edges, strict=True)):
        inside = _in_range(flat, lo, hi, closed)
        if inside.size:
            out[r] = np.bincount(_bin_index(inside, e), minlength=_BINS)
    return out


def _chunk_values(block: np.ndarray, ranges: list[tuple[float, float, bool]]) -> list[np.ndarray]:
    flat = np.asarray(block).ravel()
    return [_in_range(flat, lo, hi, closed) for lo, hi, closed in ranges]


def _order_statistics(x: Any, ranks: Sequence[int]) -> dict[int, float]:
    """Exact order statistics (0-based ``ranks`` of the sorted values) of a dask array.

    Narrows a value range around each rank with histograms reduced over the
    chunks (a few passes of :data:`_BINS` bins each) until the range holds at
    most :data:`_COLLECT` values or a single distinct value, then sorts those.
    """
    import dask

    lo, hi = (float(v) for v in dask.compute(x.min(), x.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("g contains NaN or infinite values")
    blocks = list(x.to_delayed().ravel())
    # per rank: the value range searched, its closedness, and how many values lie below it
    state = {r: (lo, hi, True, 0) for r in sorted(set(ranks))}
    done: dict[int, float] = {}
    while len(done) < len(state):
        active = [r for r in state if r not in done]
        ranges = sorted({state[r][:3] for r in active})
        key = {rng: i for i, rng in enumerate(ranges)}
        edges = [np.linspace(a, b, _BINS + 1) for a, b, _ in ranges]
        parts = dask.compute(*[dask.delayed(_chunk_counts)(b, ranges, edges) for b in blocks])
        counts = np.sum(parts, axis=0)
        to_collect: dict[tuple[float, float, bool], list[int]] = {}
        for r in active:
            a, b, closed, below = state[r]
            row = counts[key[(a, b, closed)]]
            cum = below + np.cumsum(row)
            k = int(np.searchsorted(cum, r, side="right"))  # first bin with cum > r
            e = edges[key[(a, b, closed)]]
            new_lo, new_hi = float(e[k]), float(e[k + 1])
            new_closed = closed and k == _BINS - 1
            new_below = int(cum[k] - row[k])
            if new_lo == new_hi or (new_lo, new_hi) == (a, b):  # cannot narrow: one value
                done[r] = new_lo
                continue
            state[r] = (new_lo, new_hi, new_closed, new_below)
            if row[k] <= _COLLECT:
                to_collect.setdefault(state[r][:3], []).append(r)
        if to_collect:
            wanted = sorted(to_collect)
            parts = dask.compute(*[dask.delayed(_chunk_values)(b, wanted) for b in blocks])
            for i, rng in enumerate(wanted):
                values = np.sort(np.concatenate([part[i] for part in parts]))
                for r in to_collect[rng]:
                    done[r] = float(values[r - state[r][3]])
    return done


def _percentiles(x: Any, qs: Sequence[float]) -> list[float]:
    """``numpy.percentile(x, qs)`` (linear interpolation) of a dask array, exactly."""
    n = int(math.prod(x.shape))
    positions = [q / 100.0 * (n - 1) for q in qs]
    ranks = {int(math.floor(t)) for t in positions} | {
        min(int(math.floor(t)) + 1, n - 1) for t in positions
    }
    stats = _order_statistics(x, sorted(ranks))
    out = []
    for t in positions:
        k = int(math.floor(t))
        a, b = stats[k], stats[min(k + 1, n - 1)]
        # numpy's interpolation of two neighbours (its method="linear")
        out.append(float(np.percentile(np.array([a, b]), 100.0 * (t - k))))
    return out


def grey_scale(g: Any, kernel: np.ndarray, *, offset: float = 0.0) -> float:
    """The normalisation :func:`~boneframe.superres.super_resolve` would use for ``g``.

    ``GREY_RANGE`` over the 0.5–99.5 percentile spread of ``g / gain - offset``
    (``gain = sum(kernel)``), computed block by block with exact percentiles
    (histogram passes reduced over the chunks, then the few values of the
    bins holding the wanted ranks), so it equals the in-memory value.

    Parameters
    ----------
    g : array, dask array or Volume
        The LR volume.
    kernel : ndarray
        The blurring kernel.
    offset : float
        The grey-level offset ``c``.

    Returns
    -------
    float
        Normalised grey levels per unit of ``g / gain - offset``.
    """
    import dask.array as da

    data = getattr(g, "data", g)
    x = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    gain = float(np.sum(check_kernel(np.asarray(kernel, dtype=np.float64))))
    corrected = _corrected(x, gain, offset)
    lo, hi = _percentiles(corrected, [0.5, 99.5])
    span = hi - lo
    if not span > 0:
        span = float(abs(corrected).max().compute()) or 1.0
    return GREY_RANGE / span


# -- blocks -----------------------------------------------------------------------
def _triple(value: int | Sequence[int], what: str, minimum: int) -> tuple[int, int, int]:
    arr = np.atleast_1d(np.asarray(value))
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < minimum:
        raise InputError(f"{what} must be one or three integers >= {minimum}, got {value!r}")
    return (int(arr[0]), int(arr[1]), int(arr[2]))


def kernel_reach(kernel_shape: Sequence[int], p: Factor = 2) -> tuple[int, int, int]:
    """LR voxels a kernel of support ``kernel_shape`` reaches: ``ceil((K // 2) / p)``.

    The smallest halo :func:`super_resolve_blockwise` accepts: with less, the
    LR voxels at a block's edge are explained by HR voxels that the block's
    solve cannot see (34.5 dB against the whole volume at halo 0 in the
    measurement of :data:`DEFAULT_HALO`).
    """
    z, y, x = (-(-(int(k) // 2) // q) for k, q in zip(kernel_shape, as_factor(p), strict=True))
    return z, y, x


def _solve_block(
    g_block: np.ndarray,
    kernel: Kernel,
    keep: tuple[slice, ...],
    scale: float,
    params: dict[str, Any],
) -> np.ndarray:
    """Super-resolve one LR block (halo included) and keep its HR interior ``keep``."""
    from boneframe.progress import tick
    from boneframe.superres.solve import super_resolve

    res = super_resolve(np.asarray(g_block), kernel, scale=scale, **params)
    tick(PROGRESS_TAG)
    return np.ascontiguousarray(res.array[keep])


def super_resolve_blockwise(
    g: Any,
    kernel: Kernel | RegionalKernel,
    *,
    regularizer: Regularizer | str = "tv",
    solver: str = "admm",
    settings: Mapping[str, Any] | None = None,
    block: int | Sequence[int] | None = None,
    halo: int | Sequence[int] | None = None,
    scale: float | None = None,
    workers: int = 1,
    mask: Any = None,
) -> BlockwiseSuperResolution:
    r"""TV super-resolution of a large volume, block by block.

    Parameters
    ----------
    g : ndarray or dask array
        The LR volume.
    kernel : Kernel or RegionalKernel
        Blurring kernel ``h`` (any gain), its offset ``c`` and ``p``; a
        :class:`~boneframe.kernel.regional.RegionalKernel` (centres counted from
        ``g``'s voxel 0) solves every block with the variant model at the block's
        place (:mod:`boneframe.superres.variant`); the grey scale, the halo's
        reach and the spline fill of unsolved blocks then use the regions' mean
        kernel and offset.
    regularizer, solver : str or strategy
        As :func:`~boneframe.superres.solve.super_resolve`.
    settings : mapping, optional
        Solver parameters (``mu``, ``beta``, ``tol``, ``max_iter``, ...), the same
        for every block.
    block : int or three ints, optional
        LR block side per axis (the output chunks are ``p * block``; default
        :data:`DEFAULT_BLOCK`).
    halo : int or three ints, optional
        LR voxels of real data solved around each block on every side that
        has a neighbour; at least :func:`kernel_reach` (default
        :data:`DEFAULT_HALO`, see there for the measurement).
    scale : float or None
        Normalisation shared by every block; None: :func:`grey_scale` of
        ``g``, the value the in-memory solve uses.
    workers : int
        FFT threads per block (blocks run in parallel under dask's scheduler).
    mask : array, dask array or Volume data, optional
        Non-zero where the scan must be super-resolved, on the LR grid (shape of
        ``g``): only the blocks whose solved region (block and halo) meets it are
        solved; the others hold the spline upsampling of ``g`` (see
        :mod:`boneframe.superres.masked`). One pass over the mask decides.

    Returns
    -------
    BlockwiseSuperResolution

    Raises
    ------
    InputError
        On a bad block, a halo below the kernel's reach, or a bad argument.

    Notes
    -----
    A block's solution differs from the whole volume's near the block's cut
    faces (there the solver sees reflected data instead of the neighbours);
    the difference decays over a few LR voxels, and the halo keeps it out of
    the interior that is kept. Each block also adapts ADMM's β on its own
    residuals and stops on its own relative change, so its interior is a
    slightly different approximation of the same minimiser; see
    :data:`DEFAULT_HALO` for the measured agreement.
    """
    import dask
    import dask.array as da

    if getattr(g, "ndim", None) != 3:
        raise InputError(f"g must be a 3D volume, got shape {getattr(g, 'shape', None)}")
    regional = kernel if isinstance(kernel, RegionalKernel) else None
    stationary = kernel.mean_kernel() if isinstance(kernel, RegionalKernel) else kernel
    h, p3, offset = stationary.array, stationary.p, stationary.offset
    b3 = _triple(DEFAULT_BLOCK if block is None else block, "block", 1)
    m3 = _triple(DEFAULT_HALO if halo is None else halo, "halo", 0)
    reach = kernel_reach(h.shape, p3)
    if any(m < r for m, r in zip(m3, reach, strict=True)):
        raise InputError(
            f"halo {halo!r} is too small: a block needs at least the kernel's reach, "
            f"{reach} LR voxels per axis, of real data around it "
            f"({DEFAULT_HALO} is the measured default)"
        )
    x = g if isinstance(g, da.Array) else da.from_array(np.asarray(g), chunks=b3)
    if scale is None:
        scale = grey_scale(x, h, offset=offset)
    elif isinstance(scale, bool) or not (
        isinstance(scale, int | float | np.number) and math.isfinite(scale) and scale > 0
    ):
        raise InputError(f"scale must be finite and positive, got {scale!r}")
    params: dict[str, Any] = {
        "regularizer": regularizer,
        "solver": solver,
        "solver_params": dict(settings or {}),
        "workers": workers,
    }

    shape = tuple(int(n) for n in x.shape)
    starts = [list(range(0, n, b)) for n, b in zip(shape, b3, strict=True)]
    regions = [_regions(s, n, b, m) for s, n, b, m in zip(starts, shape, b3, m3, strict=True)]
    wanted = _blocks_meeting(mask, shape, regions)
    solve = dask.delayed(_solve_block, pure=True)
    fill = dask.delayed(masked.fill_block, pure=True)
    gain = float(np.sum(h))
    k_d = dask.delayed(kernel)
    vs_lr = None
    if regional is not None:
        vs_lr = [v * q for v, q in zip(regional.voxel_size, p3, strict=True)]  # type: ignore[arg-type]
    rows: Any = np.empty([len(s) for s in starts], dtype=object)
    for index in np.ndindex(*rows.shape):
        outer, keep, hr_shape = [], [], []
        for ax, i in enumerate(index):
            a, b, lo, hi = regions[ax][i]
            outer.append(slice(lo, hi))
            q = p3[ax]
            keep.append(slice(q * (a - lo), q * (b - lo)))
            hr_shape.append(q * (b - a))
        if wanted is None or wanted[index]:
            k_block = k_d
            if regional is not None:  # its centres counted from the block's first voxel
                start = [o.start * v for o, v in zip(outer, vs_lr, strict=True)]  # type: ignore[arg-type]
                k_block = dask.delayed(regional.relative_to(start))
            task = solve(x[tuple(outer)], k_block, tuple(keep), scale, params)
        else:
            task = fill(x[tuple(outer)], p3, gain, offset, tuple(keep))
        rows[index] = da.from_delayed(task, shape=tuple(hr_shape), dtype=np.float32)
    result = da.block(rows.tolist())
    solved = int(np.prod(rows.shape)) if wanted is None else int(np.count_nonzero(wanted))
    return BlockwiseSuperResolution(
        volume=result, scale=float(scale), block=b3, halo=m3, solved=solved,
        blocks=int(np.prod(rows.shape)),
    )  # fmt: skip


def _regions(starts: list[int], n: int, block: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Per block along one axis: its extent ``a:b`` and solved region ``lo:hi``."""
    out = []
    for a in starts:
        b = min(a + block, n)
        out.append((a, b, max(a - halo, 0), min(b + halo, n)))
    return out


def _blocks_meeting(
    mask: Any, shape: tuple[int, ...], regions: list[list[tuple[int, int, int, int]]]
) -> np.ndarray | None:
    """Which blocks' solved regions meet ``mask`` (None: no mask, all of them)."""
    if mask is None:
        return None
    import dask

    from boneframe.masks import region_on

    inside = region_on(mask, shape, of="the low-resolution volume")
    grid = tuple(len(r) for r in regions)
    tasks = [
        dask.delayed(masked.meets)(
            inside[tuple(slice(regions[ax][i][2], regions[ax][i][3]) for ax, i in enumerate(idx))]
        )
        for idx in np.ndindex(*grid)
    ]
    return np.asarray(dask.compute(*tasks), dtype=bool).reshape(grid)
