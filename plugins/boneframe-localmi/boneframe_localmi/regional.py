r"""A spatially variant kernel estimate: one kernel per region of a coarse grid.

The scanner's blur is not the same everywhere in the field of view (it widens
away from the rotation centre, for one). :func:`regional_kernels` splits the
low-resolution volume into a grid of blocks and runs boneframe's
:func:`~boneframe.kernel.estimate_kernel` on each block with its matching
high-resolution block, then :meth:`RegionalKernels.report` summarises how the
kernel varies (FWHM per axis in µm, centroid, distance to the mean kernel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.kernel import Kernel, as_support, estimate_kernel, summarize_kernel
from boneframe.operators.geometry import per_axis


@dataclass
class RegionalKernels:
    """Kernels estimated per region.

    Attributes
    ----------
    grid : tuple of 3 ints
        Regions per axis.
    regions : list of tuple of slices
        Low-resolution block of each region (without the margin), C order over the grid.
    estimates : list of Kernel
        One per region, same order.
    voxel_size : tuple of 3 floats
        High-resolution voxel size in µm (for the summaries).
    summaries : list of dict
        :func:`boneframe.kernel.summary.summarize_kernel` of each kernel.
    """

    grid: tuple[int, int, int]
    regions: list[tuple[slice, ...]]
    estimates: list[Kernel]
    voxel_size: tuple[float, float, float]
    summaries: list[dict[str, Any]] = field(default_factory=list)

    def kernels(self) -> np.ndarray:
        """All kernels, shape ``(*grid, *support)``."""
        stack = np.stack([e.array for e in self.estimates])
        return stack.reshape(*self.grid, *stack.shape[1:])

    def fwhm(self) -> np.ndarray:
        """FWHM per axis in µm, shape ``(*grid, 3)`` (NaN where undefined)."""
        rows = [[np.nan if v is None else v for v in s["fwhm_um"]] for s in self.summaries]
        return np.asarray(rows, dtype=np.float64).reshape(*self.grid, 3)

    def deviation(self) -> np.ndarray:
        """Relative L2 distance of each unit-sum kernel to the mean unit-sum kernel."""
        unit = np.stack([e.array / e.array.sum() for e in self.estimates])
        mean = unit.mean(axis=0)
        dist = np.linalg.norm((unit - mean).reshape(len(unit), -1), axis=1)
        return (dist / np.linalg.norm(mean)).reshape(self.grid)

    def report(self) -> str:
        """A Markdown table of the regions and a line on the spread of the FWHM."""
        fw = self.fwhm().reshape(-1, 3)
        dev = self.deviation().ravel()
        lines = [
            f"Regional kernels: grid {self.grid[0]}x{self.grid[1]}x{self.grid[2]}, "
            f"similarity {self.estimates[0].similarity}",
            "",
            "| region | LR block (z, y, x) | FWHM z / y / x (µm) | centroid (voxels) "
            "| gain | offset | distance to mean |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, (region, est, summ) in enumerate(
            zip(self.regions, self.estimates, self.summaries, strict=True)
        ):
            index = np.unravel_index(n, self.grid)
            block = ", ".join(f"{s.start}:{s.stop}" for s in region)
            cen = summ["centroid"]["voxels"]
            lines.append(
                f"| {tuple(int(i) for i in index)} | {block} | "
                + " / ".join(f"{v:.0f}" for v in fw[n])
                + " | "
                + ", ".join(f"{c:+.2f}" for c in cen)
                + f" | {est.gain:.3f} | {est.offset:.3f} | {dev[n]:.3f} |"
            )
        mean = np.nanmean(fw, axis=0)
        spread = (np.nanmax(fw, axis=0) - np.nanmin(fw, axis=0)) / mean
        lines += [
            "",
            "FWHM mean z / y / x: "
            + " / ".join(f"{v:.0f}" for v in mean)
            + " µm; range over regions: "
            + " / ".join(f"{100 * v:.1f}" for v in spread)
            + " % of the mean; largest distance to the mean kernel: "
            + f"{100 * float(dev.max()):.1f} %.",
        ]
        return "\n".join(lines)


def _blocks(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def regional_kernels(
    hr: Any,
    lr: Any,
    grid: int | Sequence[int] = (1, 1, 2),
    *,
    similarity: str = "local-mi",
    solver: str | None = None,
    support: int | Sequence[int] = 9,
    p: int = 2,
    voxel_size: float | Sequence[float] = 41.0,
    similarity_params: Mapping[str, Any] | None = None,
    **options: Any,
) -> RegionalKernels:
    """Estimate one kernel per region of a ``grid`` over the low-resolution volume.

    Parameters
    ----------
    hr, lr : ndarray
        The registered pair (high-resolution voxel ``p*i`` on low-resolution voxel ``i``).
    grid : int or 3 ints
        Regions per axis (e.g. ``(1, 1, 2)``: two halves along x).
    similarity, solver : str
        Strategies for :func:`~boneframe.kernel.estimate_kernel`; the solver
        defaults to ``exact`` for ``l2`` and ``gradient-descent`` otherwise.
    support : int or 3 ints
        Odd kernel support.
    p : int
        Resolution factor (the same on every axis).
    voxel_size : float or 3 floats
        High-resolution voxel size in µm, for the FWHM.
    similarity_params : mapping, optional
        Parameters of the similarity.
    **options
        Further keywords of :func:`~boneframe.kernel.estimate_kernel` (``alpha``,
        ``max_iter``, ``init`` ...).

    Returns
    -------
    RegionalKernels

    Notes
    -----
    Each region's block is widened by ``ceil(r / p)`` low-resolution voxels on every
    side where the volume allows (``r`` the kernel radius), so that the voxels of the
    block itself keep their footprint inside the high-resolution crop; the regions
    share those margins but no block voxel. The estimates are independent (the
    kernel is assumed constant within a region).
    """
    f = np.asarray(hr)
    g = np.asarray(lr)
    if f.ndim != 3 or g.ndim != 3:
        raise InputError(f"regional kernels need 3D volumes, got {f.shape} and {g.shape}")
    parts = per_axis(grid)
    if len(parts) != 3 or min(parts) < 1:
        raise InputError(f"grid must be one or three positive integers, got {grid!r}")
    if int(p) != p or p < 1:
        raise InputError(f"p must be a positive integer, got {p!r}")
    k = as_support(support)
    margin = [math.ceil((kk // 2) / p) for kk in k]
    if any(n < q for n, q in zip(g.shape, parts, strict=True)):
        raise InputError(f"grid {parts} has more regions than voxels in {g.shape}")
    vs = (float(voxel_size),) * 3 if np.isscalar(voxel_size) else tuple(voxel_size)  # type: ignore[arg-type]
    slv = solver or ("exact" if similarity == "l2" else "gradient-descent")
    regions, estimates, summaries = [], [], []
    for index in np.ndindex(*parts):
        bounds = [_blocks(n, q)[i] for n, q, i in zip(g.shape, parts, index, strict=True)]
        region = tuple(slice(a, b) for a, b in bounds)
        lo = [max(a - m, 0) for (a, _), m in zip(bounds, margin, strict=True)]
        hi = [min(b + m, n) for (_, b), m, n in zip(bounds, margin, g.shape, strict=True)]
        lr_block = g[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        hr_block = f[
            tuple(slice(p * a, min(p * b, n)) for a, b, n in zip(lo, hi, f.shape, strict=True))
        ]
        try:
            est = estimate_kernel(
                hr_block,
                lr_block,
                similarity=similarity,
                solver=slv,
                support=k,
                p=p,
                similarity_params=similarity_params,
                **options,
            )
        except InputError as exc:
            raise InputError(f"region {index} (LR block {bounds}): {exc}") from None
        regions.append(region)
        estimates.append(est)
        summaries.append(summarize_kernel(est.array, vs))
    return RegionalKernels(parts, regions, estimates, vs, summaries)  # type: ignore[arg-type]
