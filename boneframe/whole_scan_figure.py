"""The whole-scan figure: the compartments over the scan, and the trabecular bone of the
scan, its super-resolution and the truth side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from boneframe.volume import Volume


def whole_scan_figure(
    scan: Volume,
    masks: dict[str, Volume],
    sr: Volume,
    truth: Volume | None,
    path: str | Path,
) -> Path:
    """Write the figure to ``path`` (PNG, atomically).

    Left: the middle slice of the scan in mg HA/cm³ with the periosteal (yellow)
    and endosteal (cyan) contours. Right: a square of the trabecular compartment
    around its centre in the scan (82 µm), the super-resolution and the truth (41
    µm), on one grey scale, the trabecular mask's outline drawn on each, with
    colour bars and a scale bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from boneframe.calibration import is_calibrated, to_density
    from boneframe.io import atomic_path

    density = to_density(scan).numpy() if is_calibrated(scan) else scan.numpy()
    z = scan.shape[0] // 2
    vs = scan.require_voxel_size()
    p = max(1, round(sr.shape[1] / scan.shape[1]))
    sr_density = to_density(sr).numpy() if is_calibrated(sr) else sr.numpy()
    peri = masks["periosteal"].numpy()[z] != 0
    trab = masks["trabecular"].numpy()[z] != 0

    fig, axes = plt.subplots(
        1, 4, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1.5, 1, 1, 1]}
    )
    ax = axes[0]
    im = ax.imshow(density[z], cmap="gray", vmin=-200, vmax=1200)
    ax.contour(peri, levels=[0.5], colors="yellow", linewidths=0.8)
    ax.contour(trab, levels=[0.5], colors="cyan", linewidths=0.8)
    ax.set_title(f"HR-pQCT slice {z}: periosteal (yellow), endosteal (cyan)", fontsize=10)
    _scale_bar(ax, vs[2], density.shape[2])
    fig.colorbar(im, ax=ax, fraction=0.046, label="mg HA/cm³")

    rows, cols = np.nonzero(trab)
    if rows.size == 0:
        rows, cols = np.array([scan.shape[1] // 2]), np.array([scan.shape[2] // 2])
    cy, cx = int(np.median(rows)), int(np.median(cols))
    half = 24  # scan voxels: a 4 mm square at 82 µm
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    y1, x1 = min(y0 + 2 * half, scan.shape[1]), min(x0 + 2 * half, scan.shape[2])
    crops = [
        ("HR-pQCT (82 µm)", density[z, y0:y1, x0:x1], vs[2], 1),
        ("super-resolution (41 µm)", sr_density[p * z, p * y0 : p * y1, p * x0 : p * x1],
         vs[2] / p, p),  # fmt: skip
    ]
    if truth is not None:
        t = truth.numpy()
        crops.append(("truth (41 µm)", t[p * z, p * y0 : p * y1, p * x0 : p * x1], vs[2] / p, p))
    lo, hi = -100.0, 1100.0
    outline = trab[y0:y1, x0:x1]
    for ax, (title, img, size, q) in zip(axes[1:], crops, strict=False):
        im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.contour(np.kron(outline, np.ones((q, q))), levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(f"{title}, trabecular", fontsize=10)
        _scale_bar(ax, size, img.shape[1])
        fig.colorbar(im, ax=ax, fraction=0.046, label="mg HA/cm³")
    for ax in axes[1 + len(crops) :]:
        ax.axis("off")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(Path(path), overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def _scale_bar(ax: Any, voxel_um: float, width: int) -> None:
    """A scale bar (1 mm, or 5 mm on a field wider than 20 mm) in the lower left corner."""
    mm = 5.0 if width * voxel_um > 20000.0 else 1.0
    length = mm * 1000.0 / voxel_um
    height = ax.get_ylim()[0]
    x, y = 0.05 * width, 0.93 * height
    ax.plot([x, x + length], [y, y], color="white", linewidth=3)
    ax.text(x + length / 2, y - 0.03 * height, f"{mm:g} mm", color="white", ha="center",
            va="bottom", fontsize=9)  # fmt: skip
