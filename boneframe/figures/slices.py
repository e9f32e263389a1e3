"""The slices figure: one central slice of every volume in grey levels on one scale,
and binarised beneath (the paper's Fig. 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.figures.quantities import GREY_LEVEL
from boneframe.figures.style import AXIS_NAMES, axis_name, figure_style, save, scale_bar

#: Percentiles of the pooled slices mapped to black and white.
GREY_RANGE = (0.5, 99.5)


def central_slice(volume: Any, axis: int = 0) -> np.ndarray:
    """The central slice of a volume (numpy, dask or Volume) along ``axis``, in memory.

    Parameters
    ----------
    volume : array or Volume
        3D volume (a dask one computes the slice only).
    axis : int
        Array axis across which the slice is taken.

    Returns
    -------
    ndarray
        The 2D slice ``index = shape[axis] // 2``.
    """
    data = getattr(volume, "data", volume)
    index = [slice(None)] * 3
    index[axis] = data.shape[axis] // 2
    return np.asarray(data[tuple(index)])


def volume_title(name: str) -> str:
    """A pipeline volume's name as a title: ``"HR (reference)"``, ``"SR l2"``."""
    if name == "hr":
        return "HR (reference)"
    if name == "lr_upsampled":
        return "LR upsampled"
    if name.startswith("sr_"):
        return f"SR {name[3:]}"
    return name


def slice_caption(axis: int, index: int, size: int, voxel_um: float | None) -> str:
    """``"axis 0 (z), slice 32 of 64, z = 1.31 mm"`` (position of the voxel centre
    from the first slice's; left out when the voxel size is unknown)."""
    text = f"{axis_name(axis)}, slice {index} of {size}"
    if voxel_um is not None:
        text += f", {AXIS_NAMES[axis]} = {index * voxel_um / 1000.0:.2f} mm"
    return text


def slices_figure(
    path: Path,
    volumes: Mapping[str, Any],
    thresholds: Mapping[str, float],
    *,
    voxel_um: Sequence[float] | None = None,
    axis: int = 0,
) -> None:
    """The central slice of each volume: grey levels in one row on one grey scale
    (density when every volume is calibrated), binarised at its threshold beneath,
    with a colour bar, a scale bar and the slice's position.

    Parameters
    ----------
    path : Path
        PNG to write.
    volumes : mapping of str to array or Volume
        Volumes on one grid, by name (``hr``, ``lr_upsampled``, ``sr_<stage>``
        get readable titles).
    thresholds : mapping of str to float
        Each volume's binarisation threshold, in its stored grey levels.
    voxel_um : 3 floats, optional
        Voxel size (µm) for volumes that do not carry one; without any, no scale
        bar and no position.
    axis : int
        Array axis across which the slices are taken.
    """
    from boneframe.calibration import DENSITY_UNIT, calibration
    from boneframe.volume import Volume

    names = list(volumes)
    raw = {n: central_slice(volumes[n], axis) for n in names}
    cals = {n: calibration(v) if isinstance(v, Volume) else None for n, v in volumes.items()}
    calibrated = all(c is not None for c in cals.values())  # else one scale would mix units
    scale = {n: c if calibrated and c is not None else (1.0, 0.0) for n, c in cals.items()}
    grey = {n: raw[n] * scale[n][0] + scale[n][1] for n in names}
    unit = DENSITY_UNIT if calibrated else GREY_LEVEL
    pooled = np.concatenate([g[np.isfinite(g)].ravel() for g in grey.values()])
    lo, hi = np.percentile(pooled, GREY_RANGE) if pooled.size else (0.0, 1.0)
    first = volumes[names[0]]
    vs = getattr(first, "voxel_size", None) or (None if voxel_um is None else tuple(voxel_um))
    rows, cols = (b for b in range(3) if b != axis)
    aspect = 1.0 if vs is None else vs[rows] / vs[cols]
    size = int(first.shape[axis])
    with figure_style() as plt:
        fig, axes = plt.subplots(
            2,
            len(names),
            figsize=(2.9 * len(names) + 1.2, 6.6),
            squeeze=False,
            layout="constrained",
        )
        for j, name in enumerate(names):
            top, bottom = axes[0, j], axes[1, j]
            im = top.imshow(
                grey[name], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest"
            )
            bottom.imshow(
                raw[name] > thresholds[name],
                cmap="gray",
                vmin=0,
                vmax=1,
                aspect=aspect,
                interpolation="nearest",
            )
            top.set_title(volume_title(name))
            t = thresholds[name] * scale[name][0] + scale[name][1]
            bottom.set_title(f"binarised at {t:.3g} {unit}", fontsize=9)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
                if vs is not None:
                    scale_bar(ax, vs[cols], raw[name].shape[1])
        axes[0, 0].set_ylabel("grey levels (one scale)")
        axes[1, 0].set_ylabel("binarised (white: bone)")
        fig.colorbar(im, ax=list(axes[0]), shrink=0.9, label=unit, pad=0.01)
        fig.colorbar(
            plt.cm.ScalarMappable(cmap=plt.get_cmap("gray", 2)),
            ax=list(axes[1]),
            shrink=0.9,
            pad=0.01,
            ticks=[0.25, 0.75],
            format=lambda v, _: "bone" if v > 0.5 else "marrow",
        )
        fig.suptitle(slice_caption(axis, size // 2, size, None if vs is None else vs[axis]))
        save(fig, path)
