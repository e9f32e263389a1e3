"""Estimate one kernel per region of a grid over the low-resolution field of view.

:func:`estimate_regional_kernels` cuts the low-resolution volume into an
``NZ x NY x NX`` grid of boxes and runs :func:`~boneframe.kernel.estimate_kernel`
(any registered similarity, a plugin's included; in memory or on dask) on each
box with its high-resolution counterpart. Each box is widened by
``ceil(r / p)`` low-resolution voxels (``r`` the kernel radius) where the volume
allows, so that the box's own voxels keep their footprint inside the
high-resolution crop; neighbouring regions share those margins but no box voxel.
The kernel is assumed constant within a region; the result is a
:class:`~boneframe.kernel.regional.RegionalKernel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.kernel.estimate import estimate_kernel, pair_voxel_size
from boneframe.kernel.pair import Support, as_support, volume_data
from boneframe.kernel.regional import RegionalKernel, axis_positions
from boneframe.operators import Factor, as_factor, valid_lr_slices
from boneframe.operators.geometry import per_axis

__all__ = ["estimate_regional_kernels", "region_boxes"]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def region_boxes(
    lr_shape: Sequence[int], grid: int | Sequence[int]
) -> tuple[tuple[int, int, int], list[tuple[tuple[int, int], ...]]]:
    """The grid (3 ints) and each region's low-resolution box, C order.

    Raises
    ------
    InputError
        A grid that is not one or three positive integers, or has more regions
        than voxels along an axis.
    """
    try:
        parts = tuple(int(q) for q in per_axis(grid))
    except (TypeError, ValueError):
        raise InputError(f"regions must be one or three positive integers, got {grid!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or min(parts) < 1:
        raise InputError(f"regions must be one or three positive integers, got {grid!r}")
    if any(n < q for n, q in zip(lr_shape, parts, strict=True)):
        raise InputError(
            f"a grid of {parts} regions has more regions than voxels in {tuple(lr_shape)}"
        )
    per = [_split(int(n), q) for n, q in zip(lr_shape, parts, strict=True)]
    boxes = [tuple(per[a][i] for a, i in enumerate(index)) for index in np.ndindex(*parts)]
    return parts, boxes


def estimate_regional_kernels(
    hr: Any,
    lr: Any,
    regions: int | Sequence[int] = (1, 1, 2),
    *,
    support: Support = 9,
    p: Factor = 2,
    voxel_size: float | Sequence[float] | None = None,
    uncertainty: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> RegionalKernel:
    """One kernel per region of an ``NZ x NY x NX`` grid over the low-resolution volume.

    Parameters
    ----------
    hr, lr : Volume, ndarray or dask array
        The registered pair (high-resolution voxel ``p*i`` on low-resolution voxel ``i``).
    regions : int or 3 ints
        Regions per axis (e.g. ``(1, 1, 4)``: four slabs along the last axis).
    support : int or 3 ints
        Odd kernel support.
    p : int or 3 ints
        Resolution factor.
    voxel_size : float or 3 floats, optional
        High-resolution voxel size in µm (default: the volumes').
    uncertainty : mapping, optional
        Keywords of :func:`boneframe.kernel.bootstrap.bootstrap_kernel`
        (``replicates``, ``box``, ``seed`` ...): each region's kernel gets its
        bootstrap intervals (costly: see there).
    progress : callable, optional
        ``progress(done, total)`` after each region.
    **options
        Keywords of :func:`~boneframe.kernel.estimate_kernel` (``similarity``,
        ``solver``, ``alpha``, ``similarity_params``, ``callback`` ...).

    Returns
    -------
    RegionalKernel
        Region centres in µm along the array axes of ``lr``'s frame (its
        origin and direction when it is a Volume): the centre of the voxels the
        region's kernel was fitted on (at the volume's faces, where the kernel's
        footprint leaves the high-resolution volume, that is inside the box's
        centre).

    Raises
    ------
    InputError
        A bad grid, an unknown voxel size, or a region whose estimate fails (the
        message names the region).
    """
    f = volume_data(hr, "the high-resolution volume")
    g = volume_data(lr, "the low-resolution volume")
    pp = as_factor(p)
    k = as_support(support)
    vs = pair_voxel_size(hr, lr, pp, voxel_size)
    if vs is None:
        raise InputError(
            "regional kernels need the voxel size (their centres are in µm): give voxel_size"
        )
    grid, boxes = region_boxes(g.shape, regions)
    margin = [math.ceil((kk // 2) / q) for kk, q in zip(k, pp, strict=True)]
    vs_lr = [v * q for v, q in zip(vs, pp, strict=True)]
    pos = axis_positions(
        g.shape, vs_lr, getattr(lr, "origin", (0.0, 0.0, 0.0)), getattr(lr, "direction", None)
    )
    kernels, centres, intervals = [], [], []
    for n, box in enumerate(boxes):
        lo = [max(a - m, 0) for (a, _), m in zip(box, margin, strict=True)]
        hi = [min(b + m, s) for (_, b), m, s in zip(box, margin, g.shape, strict=True)]
        g_box = g[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        f_box = f[
            tuple(
                slice(q * a, min(q * b, s)) for a, b, q, s in zip(lo, hi, pp, f.shape, strict=True)
            )
        ]
        index = np.unravel_index(n, grid)
        try:
            est = estimate_kernel(f_box, g_box, support=k, p=pp, voxel_size=vs, **options)
            extra: dict[str, Any] = {}
            if uncertainty is not None:
                from boneframe.kernel.bootstrap import bootstrap_kernel

                kept = {k_: v for k_, v in options.items() if k_ not in ("callback", "init")}
                extra = bootstrap_kernel(
                    f_box, g_box, support=k, p=pp, voxel_size=vs, estimate=est,
                    **{**kept, **uncertainty},
                ).sidecar()  # fmt: skip
        except InputError as exc:
            where = tuple(int(i) for i in index)
            raise InputError(f"region {where} (LR box {list(box)}): {exc}") from None
        kernels.append(est)
        intervals.append(extra)
        # the centre of the voxels the kernel was fitted on (near the volume's
        # faces, the valid part of the box)
        valid = valid_lr_slices(f_box.shape, k, pp)
        fitted = [
            (a + v.start, a + min(v.stop, n))
            for a, v, n in zip(lo, valid, g_box.shape, strict=True)
        ]
        centres.append(
            tuple(
                float(x[0]) + 0.5 * (a + b - 1) * v
                for x, (a, b), v in zip(pos, fitted, vs_lr, strict=True)
            )
        )
        if progress is not None:
            progress(n + 1, len(boxes))
    return RegionalKernel(kernels, grid, boxes, centres, tuple(g.shape), intervals)
