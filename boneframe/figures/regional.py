"""The regional FWHM figure: how the kernel's width varies over the field of view.

It reads the sidecar of a regional kernel file (:mod:`boneframe.kernel.regional`):
``grid``, and per region (C order over the grid) its ``index``, ``centre_um``,
``fwhm_um`` per array axis and, when estimated, ``fwhm_um_ci``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.figures.style import (
    AXIS_COLOURS,
    AXIS_MARKERS,
    AXIS_NAMES,
    TRUTH_STYLE,
    axis_name,
    figure_style,
    save,
)

#: Largest heat map (cells per side) whose cells are annotated with their value.
ANNOTATE_UP_TO = 8
#: Narrowest colour range of a heat map, relative to its mean FWHM.
MIN_COLOUR_SPAN = 0.1


@dataclass(frozen=True)
class RegionTable:
    """The regions of a regional kernel sidecar as arrays.

    Attributes
    ----------
    grid : tuple of 3 ints
        Regions per array axis.
    index : ndarray, shape (R, 3)
        Each region's grid index.
    centre_um : ndarray, shape (R, 3)
        Each region's centre (µm).
    fwhm_um : ndarray, shape (R, 3)
        FWHM per array axis (µm; NaN where undefined).
    ci_um : ndarray, shape (R, 3, 2)
        Interval of each FWHM (µm; NaN where none is given).
    """

    grid: tuple[int, int, int]
    index: np.ndarray
    centre_um: np.ndarray
    fwhm_um: np.ndarray
    ci_um: np.ndarray

    @classmethod
    def of(cls, regional: Mapping[str, Any], what: str = "regional kernel") -> RegionTable:
        """Read a sidecar, checking that it has one region per grid cell.

        Raises
        ------
        InputError
            If ``grid`` is not three positive integers, ``regions`` does not hold
            one entry per grid cell, or a region lacks ``centre_um`` or ``fwhm_um``.
        """
        try:
            grid = tuple(int(n) for n in regional["grid"])
            regions = list(regional["regions"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the {what} needs 'grid' and 'regions' ({exc})") from None
        if len(grid) != 3 or min(grid) < 1:
            raise InputError(f"the {what}'s grid must be three positive integers, got {grid}")
        if len(regions) != int(np.prod(grid)):
            raise InputError(
                f"the {what}'s {grid} grid needs {int(np.prod(grid))} regions, got {len(regions)}"
            )
        index, centre, fwhm = [], [], []
        ci = np.full((len(regions), 3, 2), np.nan)
        for r, (reg, cell) in enumerate(zip(regions, np.ndindex(*grid), strict=True)):
            if "centre_um" not in reg or "fwhm_um" not in reg:
                raise InputError(f"region {r} of the {what} lacks 'centre_um' or 'fwhm_um'")
            index.append(reg.get("index", cell))
            centre.append([float(c) for c in reg["centre_um"]])
            fwhm.append([np.nan if w is None else float(w) for w in reg["fwhm_um"]])
            for a, pair in enumerate(reg.get("fwhm_um_ci") or ()):
                if pair is not None and None not in pair:
                    ci[r, a] = [float(pair[0]), float(pair[1])]
        return cls(
            grid,
            np.asarray(index, dtype=int),
            np.asarray(centre, dtype=float),
            np.asarray(fwhm, dtype=float),
            ci,
        )

    def positions_mm(self, axis: int) -> np.ndarray:
        """The mean region centre (mm) at each grid position along ``axis``."""
        return (
            np.array(
                [
                    self.centre_um[self.index[:, axis] == i, axis].mean()
                    for i in range(self.grid[axis])
                ]
            )
            / 1000.0
        )

    def along(self, axis: int) -> np.ndarray:
        """The mean FWHM per array axis of the regions at each grid position along
        ``axis`` (µm, shape ``(grid[axis], 3)``)."""
        return np.array(
            [_nanmean(self.fwhm_um[self.index[:, axis] == i]) for i in range(self.grid[axis])]
        )

    def map(self, rows: int, cols: int, fwhm_axis: int) -> np.ndarray:
        """FWHM along ``fwhm_axis`` over the grid's ``rows`` x ``cols`` axes (µm; the
        mean over the third axis)."""
        out = np.full((self.grid[rows], self.grid[cols]), np.nan)
        for i in range(self.grid[rows]):
            for j in range(self.grid[cols]):
                here = (self.index[:, rows] == i) & (self.index[:, cols] == j)
                out[i, j] = _nanmean(self.fwhm_um[here, fwhm_axis])
        return out


def _nanmean(a: np.ndarray) -> Any:
    """Means over axis 0 ignoring NaN (NaN where all are), without numpy's warning."""
    a = np.asarray(a, dtype=float)
    finite = np.isfinite(a)
    n = finite.sum(axis=0)
    total = np.where(finite, a, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def regional_fwhm_figure(
    path: Path, regional: Mapping[str, Any], truth: Mapping[str, Any] | None = None
) -> None:
    """FWHM per array axis of each region's kernel against the region's position.

    The top panel plots the FWHM along z, y and x (one colour and marker each)
    against the region centre along the grid axis with the most regions (mm),
    each region a point with its interval (``fwhm_um_ci``) where given, a line
    through the mean at each position, and the truth black dashed. When the grid
    has more than one region along two axes, a heat map per FWHM axis beneath
    shows it over the two axes with the most regions (averaged over the third),
    with a colour bar in µm.

    Parameters
    ----------
    path : Path
        PNG to write.
    regional : mapping
        A regional kernel's sidecar: ``grid`` ``[NZ, NY, NX]`` and ``regions``
        (C order over the grid), each with ``index``, ``centre_um``, ``fwhm_um``
        and optionally ``fwhm_um_ci`` (three ``[lo, hi]`` pairs, or None).
    truth : mapping, optional
        The true regional kernels in the same form (intervals ignored).

    Raises
    ------
    InputError
        If a sidecar lacks a grid, or does not hold one region per grid cell.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> side = {"grid": [1, 1, 2], "regions": [
    ...     {"index": [0, 0, i], "centre_um": [500.0, 500.0, 300.0 + 600 * i],
    ...      "fwhm_um": [150.0, 125.0, 105.0 + 10 * i]} for i in range(2)]}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     regional_fwhm_figure(pathlib.Path(d) / "r.png", side)
    """
    est = RegionTable.of(regional)
    true = None if truth is None else RegionTable.of(truth, "true regional kernel")
    # ties go to the in-plane axes (x, then y): a scanner's blur varies across the slice
    ranked = sorted(range(3), key=lambda a: (-est.grid[a], -a))
    along = ranked[0]
    rows, cols = sorted(ranked[:2])
    heat = est.grid[rows] > 1 and est.grid[cols] > 1
    with figure_style() as plt:
        if heat:
            fig, axd = plt.subplot_mosaic(
                [["line"] * 3, ["h0", "h1", "h2"]],
                figsize=(12, 7.8),
                layout="constrained",
                height_ratios=[1.15, 1],
            )
        else:
            fig, axd = plt.subplot_mosaic([["line"]], figsize=(8.5, 4.6), layout="constrained")
        _fwhm_lines(axd["line"], est, true, along)
        if heat:
            third = ({0, 1, 2} - {rows, cols}).pop()
            for a in range(3):
                _heat_map(fig, axd[f"h{a}"], est, rows, cols, a, third)
        save(fig, path)


def _dodge(x: np.ndarray) -> float:
    """Horizontal shift between the three axes' points (mm): keeps intervals apart."""
    steps = np.diff(np.unique(x))
    return 0.06 * (float(steps.min()) if steps.size else 1.0)


def _fwhm_lines(ax: Any, est: RegionTable, true: RegionTable | None, along: int) -> None:
    from matplotlib.lines import Line2D

    x_mean, w_mean = est.positions_mm(along), est.along(along)
    dodge = _dodge(x_mean)
    shared = int(np.prod(est.grid)) > est.grid[along]
    x_regions = est.centre_um[:, along] / 1000.0
    handles = []
    for a in range(3):
        shift = (a - 1) * dodge
        colour, marker = AXIS_COLOURS[a], AXIS_MARKERS[a]
        w = est.fwhm_um[:, a]
        lo, hi = est.ci_um[:, a, 0], est.ci_um[:, a, 1]
        has_ci = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(w)
        if has_ci.any():
            yerr = np.vstack([w - lo, hi - w])[:, has_ci]
            ax.errorbar(
                x_regions[has_ci] + shift,
                w[has_ci],
                yerr=np.clip(yerr, 0, None),
                fmt="none",
                ecolor=colour,
                elinewidth=1.2,
                capsize=3,
                zorder=2,
            )
        ax.plot(
            x_regions + shift,
            w,
            ls="none",
            marker=marker,
            color=colour,
            ms=6,
            alpha=0.75 if shared else 1.0,
            zorder=3,
        )
        ax.plot(x_mean + shift, w_mean[:, a], color=colour, lw=1.6, zorder=3)
        handles.append(Line2D([], [], color=colour, marker=marker, label=axis_name(a)))
        if true is not None:
            xt, wt = true.positions_mm(along), true.along(along)
            ax.plot(xt + shift, wt[:, a], **TRUTH_STYLE, marker=marker, ms=6, mfc="white")
    if true is not None:
        handles.append(Line2D([], [], **TRUTH_STYLE, marker="o", mfc="white", label="true"))
    if np.isfinite(est.ci_um).any():
        handles.append(
            Line2D([], [], color="0.3", marker="|", ms=10, ls="none", label="bootstrap interval")
        )
    pad = 4 * dodge if x_mean.size > 1 else 0.5
    ax.set_xlim(float(x_mean.min()) - pad, float(x_mean.max()) + pad)
    if x_mean.size <= 12:
        ax.set_xticks(x_mean)
        ax.xaxis.set_major_formatter("{x:.2f}")
    ax.set_xlabel(f"region centre along {axis_name(along)} (mm)")
    ax.set_ylabel("FWHM (µm)")
    grid = "×".join(str(n) for n in est.grid)
    how = "each a point, a line through their mean per position" if shared else "one point each"
    ax.set_title(f"Kernel FWHM of the regions of a {grid} grid (along z, y, x): {how}")
    ax.figure.legend(handles=handles, loc="outside upper center", ncols=len(handles))


def _heat_map(
    fig: Any, ax: Any, est: RegionTable, rows: int, cols: int, fwhm_axis: int, third: int
) -> None:
    img = est.map(rows, cols, fwhm_axis)
    lo, hi = _colour_range(img)
    im = ax.imshow(img, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
    ax.set_xticks(range(est.grid[cols]), _tick_labels(est.positions_mm(cols)))
    ax.set_yticks(range(est.grid[rows]), _tick_labels(est.positions_mm(rows)))
    ax.set_xlabel(f"{AXIS_NAMES[cols]} centre (mm)")
    ax.set_ylabel(f"{AXIS_NAMES[rows]} centre (mm)")
    mean = f", mean over {AXIS_NAMES[third]}" if est.grid[third] > 1 else ""
    ax.set_title(f"FWHM along {axis_name(fwhm_axis)}{mean}", fontsize=9)
    fig.colorbar(im, ax=ax, label="FWHM (µm)", shrink=0.9)
    if max(img.shape) <= ANNOTATE_UP_TO:
        for (i, j), v in np.ndenumerate(img):
            if np.isfinite(v):
                light = hi > lo and (v - lo) / (hi - lo) > 0.6  # viridis is light at the top
                ax.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="black" if light else "white",
                )


def _colour_range(img: np.ndarray) -> tuple[float, float]:
    """The colour range of a heat map: its values, widened about their middle to at
    least :data:`MIN_COLOUR_SPAN` of it, so that differences of a few µm do not span
    the whole colour map."""
    if not np.isfinite(img).any():
        return 0.0, 1.0
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    half = max(hi - lo, MIN_COLOUR_SPAN * abs(hi + lo) / 2.0, 1e-9) / 2.0
    return (hi + lo) / 2.0 - half, (hi + lo) / 2.0 + half


def _tick_labels(mm: Iterable[float]) -> list[str]:
    return [f"{v:.2f}" for v in mm]
