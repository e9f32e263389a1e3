"""The kernels figure: each kernel's central slices, line spread functions and MTFs,
the true kernel drawn over every estimate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.figures.quantities import with_unit
from boneframe.figures.style import (
    AXIS_COLOURS,
    AXIS_MARKERS,
    AXIS_NAMES,
    TRUTH_STYLE,
    axis_name,
    figure_style,
    save,
)
from boneframe.kernel.summary import line_spread, mtf

#: The name of the true kernel among the kernels drawn.
TRUE = "true"
#: MTF levels marked with a labelled line.
MTF_LEVELS = (0.5, 0.1)


def axis_mtf(
    h: np.ndarray, axis: int, voxel_um: float, n: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """MTF of a kernel along one axis: the normalised transfer function of its line
    spread function (:func:`boneframe.kernel.summary.mtf`).

    Parameters
    ----------
    h : ndarray
        3D kernel.
    axis : int
        Array axis (0, 1 or 2).
    voxel_um : float
        Voxel size along ``axis`` (µm).
    n : int
        FFT length (zero-padded).

    Returns
    -------
    freq : ndarray
        Frequencies in lp/mm, 0 to the Nyquist frequency ``1000 / (2 voxel_um)``.
    values : ndarray
        MTF, 1 at zero frequency.
    """
    freq, values = mtf(line_spread(h, axis), n)
    return freq * 1000.0 / voxel_um, values


def kernel_figure(path: Path, kernels: Mapping[str, np.ndarray], voxel_um: Sequence[float]) -> None:
    """One row per kernel: its three central slices (one colour scale for all kernels,
    in weight of the unit-sum kernel), its line spread function per axis and its MTF
    per axis with the 50 % and 10 % levels; the kernel named ``"true"``, when given,
    is drawn black dashed over every other row.

    Parameters
    ----------
    path : Path
        PNG to write.
    kernels : mapping of str to ndarray
        3D kernels by name, on the high-resolution grid (any sum: each is normalised).
    voxel_um : 3 floats
        High-resolution voxel size (µm) per axis.
    """
    names = list(kernels)
    unit = {n: np.asarray(kernels[n], dtype=np.float64) / float(np.sum(kernels[n])) for n in names}
    slices = {n: _central_slices(h) for n, h in unit.items()}
    lo = min(0.0, min(float(s.min()) for ss in slices.values() for s in ss))
    hi = max(float(s.max()) for ss in slices.values() for s in ss)
    truth = unit.get(TRUE)
    nyquist = 1000.0 / (2.0 * min(voxel_um))
    with figure_style() as plt:
        from matplotlib.lines import Line2D

        fig = plt.figure(figsize=(16, 3.5 * len(names) + 0.5), layout="constrained")
        rows = np.atleast_1d(fig.subfigures(len(names), 1))
        for sub, name in zip(rows, names, strict=True):
            h = unit[name]
            sub.suptitle(f"kernel {name}", fontweight="bold")
            axes = sub.subplots(1, 5, gridspec_kw={"width_ratios": [1, 1, 1, 1.6, 1.6]})
            for a in range(3):
                im = _slice_image(axes[a], slices[name][a], a, h.shape, voxel_um, lo, hi)
                axes[a].set_title(f"central slice {AXIS_NAMES[a]} = 0")
            sub.colorbar(
                im,
                ax=list(axes[:3]),
                shrink=0.85,
                label=with_unit("kernel weight, Σh = 1", ""),
            )
            prof, trans = axes[3], axes[4]
            for a in range(3):
                x, lsf = _profile(h, a, voxel_um[a])
                style = {"color": AXIS_COLOURS[a], "marker": AXIS_MARKERS[a], "ms": 4, "lw": 2.4}
                prof.plot(x, lsf, **style)
                f, m = axis_mtf(h, a, voxel_um[a])
                trans.plot(f, m, **style, markevery=max(1, len(f) // 12))
                if truth is not None and name != TRUE:
                    prof.plot(*_profile(truth, a, voxel_um[a]), **TRUTH_STYLE)
                    trans.plot(*axis_mtf(truth, a, voxel_um[a]), **TRUTH_STYLE)
            prof.set_xlabel("position (µm)")
            prof.set_ylabel(with_unit("line spread", ""))
            prof.set_title("line spread (sum over the other axes)")
            for level in MTF_LEVELS:
                trans.axhline(level, color="0.45", lw=0.8, ls=":", zorder=1)
                trans.text(
                    0.99 * nyquist,
                    level + 0.015,
                    f"MTF {100 * level:.0f} %",
                    ha="right",
                    va="bottom",
                    fontsize=9,
                    color="0.3",
                )
            trans.set_xlim(0, nyquist)
            trans.set_ylim(-0.02, 1.05)
            trans.set_xlabel("spatial frequency (lp/mm)")
            trans.set_ylabel(with_unit("MTF", ""))
            trans.set_title("MTF per axis (to Nyquist)")
        handles = [
            Line2D([], [], color=AXIS_COLOURS[a], marker=AXIS_MARKERS[a], label=axis_name(a))
            for a in range(3)
        ]
        if truth is not None:
            handles.append(Line2D([], [], **{**TRUTH_STYLE, "label": TRUE}))
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        save(fig, path)


def _central_slices(h: np.ndarray) -> list[np.ndarray]:
    c = tuple(s // 2 for s in h.shape)
    return [h[c[0]], h[:, c[1]], h[:, :, c[2]]]


def _slice_image(
    ax: Any,
    img: np.ndarray,
    axis: int,
    shape: tuple[int, ...],
    voxel_um: Sequence[float],
    lo: float,
    hi: float,
) -> Any:
    """The slice perpendicular to ``axis`` in µm about the kernel centre."""
    rows, cols = (b for b in range(3) if b != axis)

    def span(b: int) -> tuple[float, float]:
        half = shape[b] // 2
        return (-(half + 0.5) * voxel_um[b], (shape[b] - half - 0.5) * voxel_um[b])

    (x0, x1), (y0, y1) = span(cols), span(rows)
    im = ax.imshow(
        img, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest", extent=(x0, x1, y1, y0)
    )
    ax.set_xlabel(f"{AXIS_NAMES[cols]} (µm)")
    ax.set_ylabel(f"{AXIS_NAMES[rows]} (µm)")
    return im


def _profile(h: np.ndarray, axis: int, voxel_um: float) -> tuple[np.ndarray, np.ndarray]:
    lsf = line_spread(h, axis)
    return (np.arange(lsf.size) - lsf.size // 2) * voxel_um, lsf
