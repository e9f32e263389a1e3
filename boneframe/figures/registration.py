"""The registration figure: the HR-pQCT over the registered micro-CT."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from boneframe.figures.slices import slice_caption
from boneframe.figures.style import AXIS_NAMES, figure_style, save, scale_bar


def overlay_figure(
    path: Path,
    hr: np.ndarray,
    lr: np.ndarray,
    p: Sequence[int],
    voxel_um: Sequence[float] | None = None,
) -> None:
    """Central slices across each axis of the HR-pQCT (magenta) over the registered
    micro-CT (green): grey where they agree.

    Parameters
    ----------
    path : Path
        PNG to write.
    hr : ndarray
        The registered micro-CT, on the fine grid.
    lr : ndarray
        The HR-pQCT scan (``p`` times coarser per axis).
    p : 3 ints
        The resolution factor per axis.
    voxel_um : 3 floats, optional
        The fine grid's voxel size (µm), for the scale bars and positions.
    """
    up = lr
    for axis, q in enumerate(p):
        up = np.repeat(up, q, axis=axis)
    up = up[tuple(slice(0, n) for n in hr.shape)]

    def norm(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, (1, 99))
        return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)

    with figure_style() as plt:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), layout="constrained")
        for axis, ax in enumerate(axes):
            c = hr.shape[axis] // 2
            a, b = norm(np.take(up, c, axis=axis)), norm(np.take(hr, c, axis=axis))
            rows, cols = (k for k in range(3) if k != axis)
            aspect = 1.0 if voxel_um is None else voxel_um[rows] / voxel_um[cols]
            ax.imshow(np.stack([a, b, a], axis=-1), interpolation="nearest", aspect=aspect)
            vs = None if voxel_um is None else voxel_um[axis]
            ax.set_title(slice_caption(axis, c, hr.shape[axis], vs), fontsize=9)
            ax.set_xlabel(AXIS_NAMES[cols])
            ax.set_ylabel(AXIS_NAMES[rows])
            ax.set_xticks([])
            ax.set_yticks([])
            if voxel_um is not None:
                scale_bar(ax, voxel_um[cols], a.shape[1])
        fig.suptitle("HR-pQCT (magenta) over the registered micro-CT (green); grey: agreement")
        save(fig, path)
