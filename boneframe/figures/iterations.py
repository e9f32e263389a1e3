"""The iterations figure: the metrics of every super-resolution against iteration
(the paper's Figs. 2-6), with the high-resolution and upsampled references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.figures.quantities import label
from boneframe.figures.style import figure_style, save

#: The per-iteration curves, in order: history keys (and :mod:`quantities` keys).
CURVES = ("psnr", "dice", "bv_tv", "conn_d", "tb_th", "tb_sp", "data")
#: Curves that have a value for the high-resolution volume itself (a reference line).
HR_REFERENCE = ("bv_tv", "conn_d", "tb_th", "tb_sp")
#: Curves that have a value for the upsampled low-resolution volume (a baseline).
LR_REFERENCE = ("psnr", "dice", "bv_tv", "conn_d", "tb_th", "tb_sp")
#: Curves on a logarithmic scale (they fall over decades).
LOG_SCALE = ("data",)
#: Line style and marker of each super-resolution, in turn (colour: matplotlib's cycle).
RUN_STYLES = (("-", "o"), ((0, (5, 2)), "s"), ((0, (5, 2, 1, 2)), "^"), ((0, (1, 1.5)), "D"))
#: Markers drawn along a dense curve (a sparse one, recorded every few iterations,
#: has one per record).
MARKERS_PER_CURVE = 8
HR_STYLE: dict[str, Any] = {"color": "black", "ls": ":", "lw": 1.4, "label": "high resolution"}
LR_STYLE: dict[str, Any] = {"color": "0.55", "ls": "--", "lw": 1.2, "label": "LR upsampled"}


def history_arrays(history: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per-iteration records as one array per numeric key (NaN where a record lacks it).

    Parameters
    ----------
    history : sequence of mapping
        One record per iteration, as a solver's ``history``.

    Returns
    -------
    dict of str to ndarray
        ``iteration`` (counted from 1), then every key whose values are numbers or None.
    """
    keys: list[str] = []
    for rec in history:
        keys += [k for k in rec if k not in keys]
    out = {"iteration": np.arange(1, len(history) + 1, dtype=float)}
    for key in keys:
        values = [rec.get(key) for rec in history]
        if all(v is None or isinstance(v, int | float) for v in values):
            out[key] = np.array([np.nan if v is None else float(v) for v in values])
    return out


def iteration_figure(
    path: Path, histories: Mapping[str, Mapping[str, np.ndarray]], metrics: Mapping[str, Any]
) -> None:
    """PSNR, DICE, BV/TV, Conn.D, Tb.Th, Tb.Sp and the data term against iteration,
    one panel each, every super-resolution in its own colour, line style and marker,
    with one legend for the figure.

    Parameters
    ----------
    path : Path
        PNG to write.
    histories : mapping
        Per super-resolution (by name), :func:`history_arrays` of its history
        (Tb.Th and Tb.Sp are recorded every few iterations: NaN between).
    metrics : mapping
        The run's metrics: ``volumes`` holds ``hr`` and ``lr_upsampled`` (their
        values are drawn as reference lines) and each volume's ``units``.
    """
    volumes = metrics.get("volumes", {})
    units: dict[str, str] = {}
    for m in volumes.values():
        units.update(m.get("units") or {})
    curves = [key for key in CURVES if any(key in h for h in histories.values())]
    # further segmentations' curves are recorded as "<metric> · <segmentation>"
    found = {k[k.index(" · ") :] for h in histories.values() for k in h if " · " in k}
    suffixes = ["", *sorted(found)]
    order = {
        f"SR {name}{suffix}": i
        for i, (name, suffix) in enumerate((n, x) for n in histories for x in suffixes)
    }
    cols = min(4, len(curves)) or 1
    rows = -(-len(curves) // cols) or 1
    with figure_style() as plt:
        fig, axes = plt.subplots(
            rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.5), squeeze=False, layout="constrained"
        )
        for ax in axes.ravel()[len(curves) :]:
            ax.set_visible(False)
        for ax, key in zip(axes.ravel(), curves, strict=False):
            for name, hist in histories.items():
                for suffix in suffixes:  # the run, then its further segmentations
                    if key + suffix in hist:
                        curve = f"SR {name}{suffix}"
                        _run_curve(ax, hist["iteration"], hist[key + suffix], curve, order[curve])
            if key in HR_REFERENCE and _finite(volumes.get("hr", {}).get(key)):
                ax.axhline(volumes["hr"][key], **HR_STYLE)
            if key in LR_REFERENCE and _finite(volumes.get("lr_upsampled", {}).get(key)):
                ax.axhline(volumes["lr_upsampled"][key], **LR_STYLE)
            if key in LOG_SCALE:
                ax.set_yscale("log")
            ax.set_xlabel("iteration")
            ax.set_ylabel(label(key, units))
        handles: dict[str, Any] = {}
        for ax in axes.ravel():
            for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(text, handle)
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside upper center",
            ncols=min(len(handles), 6),
        )
        save(fig, path)


def _run_curve(ax: Any, iteration: np.ndarray, values: np.ndarray, name: str, i: int) -> None:
    """One super-resolution's curve: gaps (iterations not recorded) are bridged."""
    keep = np.isfinite(values)
    if not keep.any():
        return
    ls, marker = RUN_STYLES[i % len(RUN_STYLES)]
    every = 1 if keep.sum() < 0.5 * keep.size else max(1, int(keep.sum()) // MARKERS_PER_CURVE)
    ax.plot(
        iteration[keep],
        values[keep],
        color=f"C{i}",
        ls=ls,
        lw=1.8 if i == 0 else 1.5,
        marker=marker,
        ms=4.5,
        markevery=((i * max(1, every // 3)) % every, every),
        mfc="white" if i % 2 else f"C{i}",
        label=name,
        zorder=3 + i,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and bool(np.isfinite(value))
