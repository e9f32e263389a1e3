"""The thickness figure: the distribution of the local thickness of each volume's bone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.figures.slices import volume_title
from boneframe.figures.style import figure_style, save


def thickness_figure(
    path: Path,
    volumes: Mapping[str, Any],
    thresholds: Mapping[str, float],
    voxel_um: float,
) -> None:
    """Histograms of the local thickness (Tb.Th map) of each volume's bone phase.

    Parameters
    ----------
    path : Path
        PNG to write.
    volumes : mapping of str to ndarray
        Volumes in memory, by name.
    thresholds : mapping of str to float
        Each volume's binarisation threshold.
    voxel_um : float
        Isotropic voxel size (µm).
    """
    from boneframe.metrics import thickness_map

    with figure_style() as plt:
        fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
        for i, (name, vol) in enumerate(volumes.items()):
            tmap = thickness_map(np.asarray(vol) > thresholds[name], voxel_um, phase="bone")
            values = tmap[np.isfinite(tmap)]
            if values.size:
                ax.hist(
                    values,
                    bins=40,
                    histtype="step",
                    density=True,
                    lw=1.6,
                    ls=("-", "--", "-.", ":")[i % 4],
                    color=f"C{i}",
                    label=f"{volume_title(name)} (mean {values.mean():.0f} µm)",
                )
        ax.set_xlabel("local thickness (µm)")
        ax.set_ylabel("probability density (1/µm)")
        ax.set_title("Tb.Th distribution of the bone phase")
        ax.legend()
        save(fig, path)
