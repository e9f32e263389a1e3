"""Figures and ``report.md`` of a pipeline run (the paper's Figs. 1-6, plus the kernels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Per-iteration curves: (history key, axis label, metrics.json key of the HR reference line)
CURVES = (
    ("psnr", "PSNR (dB)", None),
    ("dice", "DICE", None),
    ("bv_tv", "BV/TV", "bv_tv"),
    ("conn_d", "Conn.D (1/mm³)", "conn_d"),
    ("tb_th", "Tb.Th (µm)", "tb_th"),
    ("tb_sp", "Tb.Sp (µm)", "tb_sp"),
    ("data", "data term", None),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def axis_mtf(
    h: np.ndarray, axis: int, voxel_um: float, n: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """MTF along one axis: |FFT| of the kernel's line integral, normalised at 0 (lp/mm)."""
    others = tuple(a for a in range(3) if a != axis)
    line = h.sum(axis=others)
    spectrum = np.abs(np.fft.rfft(line, n))
    freq = np.fft.rfftfreq(n, d=voxel_um / 1000.0)
    return freq, spectrum / spectrum[0]


def kernel_figure(path: Path, kernels: dict[str, np.ndarray], voxel_um: tuple[float, ...]) -> None:
    """Orthogonal central slices of each kernel, its axis profiles and its MTF."""
    plt = _pyplot()
    names = list(kernels)
    fig, axes = plt.subplots(len(names), 5, figsize=(17, 3.2 * len(names)), squeeze=False)
    styles = {"true": dict(color="k", ls="--")}
    for row, name in enumerate(names):
        h = kernels[name] / kernels[name].sum()
        c = tuple(s // 2 for s in h.shape)
        for j, (img, title) in enumerate(
            [
                (h[c[0]], "axis 0 = centre"),
                (h[:, c[1]], "axis 1 = centre"),
                (h[:, :, c[2]], "axis 2 = centre"),
            ]
        ):
            axes[row, j].imshow(img, cmap="magma", interpolation="nearest")
            axes[row, j].set_title(f"{name}: {title}", fontsize=9)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
        for other in names:
            g = kernels[other] / kernels[other].sum()
            for a, color in zip(range(3), ("C0", "C1", "C2"), strict=True):
                prof = g.sum(axis=tuple(b for b in range(3) if b != a))
                x = (np.arange(len(prof)) - len(prof) // 2) * voxel_um[a]
                style = styles.get(other, {}) if other != name else {}
                if other == name or other == "true":
                    axes[row, 3].plot(
                        x,
                        prof,
                        color=color,
                        lw=1.5 if other == name else 1,
                        ls=style.get("ls", "-"),
                        label=f"axis {a}"
                        + (" (true)" if other == "true" and name != "true" else ""),
                    )
                    f, m = axis_mtf(g, a, voxel_um[a])
                    axes[row, 4].plot(
                        f, m, color=color, ls=style.get("ls", "-"), lw=1.5 if other == name else 1
                    )
        axes[row, 3].set_xlabel("µm")
        axes[row, 3].set_title("line profiles (sum over the other axes)", fontsize=9)
        axes[row, 3].legend(fontsize=7)
        axes[row, 4].axhline(0.5, color="grey", lw=0.5)
        axes[row, 4].axhline(0.1, color="grey", lw=0.5)
        axes[row, 4].set_xlim(0, 12)
        axes[row, 4].set_xlabel("lp/mm")
        axes[row, 4].set_title("MTF per axis (dashed: true)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def history_arrays(history: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-iteration records as one array per key (NaN where a record lacks it),
    with ``iteration`` counted from 1."""
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
    path: Path, histories: dict[str, dict[str, np.ndarray]], metrics: dict[str, Any]
) -> None:
    """PSNR, DICE, BV/TV, Conn.D, Tb.Th, Tb.Sp and data term against iteration
    (paper Figs. 2-6; Tb.Th and Tb.Sp are recorded every few iterations)."""
    plt = _pyplot()
    curves = [c for c in CURVES if any(c[0] in h for h in histories.values())]
    cols = min(4, len(curves)) or 1
    rows = -(-len(curves) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(curves) :]:
        ax.set_visible(False)
    volumes = metrics.get("volumes", {})
    for ax, (key, label, ref) in zip(axes.ravel(), curves, strict=False):
        for name, hist in histories.items():
            if key in hist:
                keep = np.isfinite(hist[key])
                sparse = keep.sum() < 0.5 * keep.size
                ax.plot(
                    hist["iteration"][keep],
                    hist[key][keep],
                    marker="o" if sparse else None,
                    ms=3,
                    label=f"SR {name}",
                )
        if ref and ref in volumes.get("hr", {}):
            ax.axhline(volumes["hr"][ref], color="r", ls=":", label="high resolution")
        base = volumes.get("lr_upsampled", {})
        if key in base and key in ("psnr", "dice", "bv_tv", "conn_d", "tb_th", "tb_sp"):
            ax.axhline(base[key], color="grey", ls="--", label="LR upsampled")
        ax.set_xlabel("iteration")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def central_slice(volume: Any) -> np.ndarray:
    """The central slice along axis 0 of a volume (numpy, dask or Volume), in memory."""
    data = getattr(volume, "data", volume)
    return np.asarray(data[data.shape[0] // 2])


def slices_figure(path: Path, volumes: dict[str, Any], thresholds: dict[str, float]) -> None:
    """Binarised central slices side by side (paper Fig. 1)."""
    plt = _pyplot()
    names = list(volumes)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.6))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        binary = central_slice(volumes[name]) > thresholds[name]
        ax.imshow(binary, cmap="gray", interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def overlay_figure(path: Path, hr: np.ndarray, lr: np.ndarray, p: tuple[int, ...]) -> None:
    """Central slices of the HR-pQCT (magenta) over the registered micro-CT (green)."""
    plt = _pyplot()
    up = lr
    for axis, q in enumerate(p):
        up = np.repeat(up, q, axis=axis)
    up = up[tuple(slice(0, n) for n in hr.shape)]

    def norm(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, (1, 99))
        return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for axis, ax in enumerate(axes):
        c = hr.shape[axis] // 2
        a, b = norm(np.take(up, c, axis=axis)), norm(np.take(hr, c, axis=axis))
        ax.imshow(np.stack([a, b, a], axis=-1), interpolation="nearest")
        ax.set_title(f"axis {axis} = {c}: HR-pQCT magenta, micro-CT green", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def thickness_figure(
    path: Path,
    volumes: dict[str, np.ndarray],
    thresholds: dict[str, float],
    voxel_um: float,
) -> None:
    """Histograms of the local thickness (Tb.Th) of each volume's bone phase."""
    from boneframe.metrics import thickness_map

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, vol in volumes.items():
        tmap = thickness_map(np.asarray(vol) > thresholds[name], voxel_um, phase="bone")
        values = tmap[np.isfinite(tmap)]
        if values.size:
            ax.hist(
                values,
                bins=40,
                histtype="step",
                density=True,
                lw=1.5,
                label=f"{name} (mean {values.mean():.0f} µm)",
            )
    ax.set_xlabel("local thickness (µm)")
    ax.set_ylabel("density")
    ax.set_title("Tb.Th distribution", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


#: Columns of the volumes table: metric name and its header.
VOLUME_COLUMNS = (
    ("psnr", "PSNR"),
    ("dice", "DICE"),
    ("bv_tv", "BV/TV"),
    ("conn_d", "Conn.D"),
    ("conn_d_bonej", "Conn.D BoneJ"),
    ("tb_th", "Tb.Th"),
    ("tb_sp", "Tb.Sp"),
    ("tb_n", "Tb.N"),
    ("da", "DA"),
)
#: Columns of the kernels table: key and header (with its unit).
KERNEL_COLUMNS = (
    ("gain", "gain"),
    ("offset", "offset (grey levels of f)"),
    ("fwhm_um", "FWHM (µm, per axis)"),
    ("mtf50_lpmm", "MTF 50 % (lp/mm)"),
    ("mtf10_lpmm", "MTF 10 % (lp/mm)"),
    ("kernel_error", "error vs true"),
    ("alpha", "α"),
)


def _header(label: str, unit: str | None) -> str:
    return f"{label} ({unit})" if unit else label


def write_report(out: Path, spec: Any, result: Any) -> None:
    """Write the figures and ``report.md`` of a run into ``out``, from its
    :class:`~boneframe.pipeline.PipelineResult`."""
    inputs = result.inputs
    vs = inputs.hr.require_voxel_size()
    kernels = {name: k.array for name, k in result.kernels.items()}
    if inputs.true_kernel is not None:
        kernels = {"true": inputs.true_kernel, **kernels}
    figures = []
    lazy = any(v.is_lazy for v in result.volumes.values())
    if inputs.registration is not None:
        overlay_figure(out / "registration.png", inputs.hr.numpy(), inputs.lr.numpy(), inputs.p)
        figures.append(("Registered micro-CT over the HR-pQCT", "registration.png"))
    if kernels:
        kernel_figure(out / "kernels.png", kernels, vs)
        figures.append(("Kernels", "kernels.png"))
    histories = {
        name: history_arrays(sr.history)
        for name, sr in result.superresolutions.items()
        if sr.history
    }
    if histories:
        iteration_figure(out / "iterations.png", histories, result.metrics)
        figures.append(("Metrics against iteration", "iterations.png"))
    thresholds = {k: v.get("threshold", 0.5) for k, v in result.metrics["volumes"].items()}
    slices_figure(out / "slices.png", result.volumes, thresholds)
    figures.append(("Binarised central slices", "slices.png"))
    if spec.metrics.structure and max(vs) - min(vs) <= 1e-3 * max(vs) and not lazy:
        volumes = {name: v.numpy() for name, v in result.volumes.items()}
        thickness_figure(out / "thickness.png", volumes, thresholds, vs[0])
        figures.append(("Trabecular thickness", "thickness.png"))

    units: dict[str, str] = {}
    for m in result.metrics["volumes"].values():
        units.update(m.get("units") or {})
    vol_rows = [["volume", *(_header(label, units.get(k)) for k, label in VOLUME_COLUMNS)]]
    for name, m in result.metrics["volumes"].items():
        vol_rows.append([name, *[_fmt(m.get(k)) for k, _ in VOLUME_COLUMNS]])
    ker_rows = [["kernel", *(label for _, label in KERNEL_COLUMNS)]]
    for name, m in result.metrics["kernels"].items():
        ker_rows.append([name, *[_fmt(m.get(k)) for k, _ in KERNEL_COLUMNS]])
    text = [
        "# boneframe report",
        "",
        f"High resolution {inputs.hr.shape} at {_fmt(list(vs))} µm; "
        f"low resolution {inputs.lr.shape}; p = {inputs.p[0]}.",
        "",
        "## Kernels",
        "",
        _table(ker_rows),
        "",
        "## Volumes against the high-resolution reference",
        "",
        _table(vol_rows),
        "",
    ]
    for title, name in figures:
        text += [f"## {title}", "", f"![{title}]({name})", ""]
    (out / "report.md").write_text("\n".join(text))
