"""``report.md`` and the figures of a pipeline run (the paper's Figs. 1-6, plus the kernels).

The figures live in :mod:`boneframe.figures`, one module each; the names and units
of the tables' columns come from :mod:`boneframe.figures.quantities`, the same
labels the figures' axes carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from boneframe.figures import (
    axis_mtf,
    central_slice,
    history_arrays,
    iteration_figure,
    kernel_figure,
    overlay_figure,
    regional_fwhm_figure,
    slices_figure,
    thickness_figure,
)
from boneframe.figures.iterations import CURVES
from boneframe.figures.quantities import DIMENSIONLESS, LABELS, unit_of, with_unit

__all__ = [
    "CURVES",
    "KERNEL_COLUMNS",
    "VOLUME_COLUMNS",
    "axis_mtf",
    "central_slice",
    "history_arrays",
    "iteration_figure",
    "kernel_figure",
    "kernel_table",
    "overlay_figure",
    "regional_fwhm_figure",
    "regional_table",
    "slices_figure",
    "thickness_figure",
    "volume_table",
    "write_report",
]

#: Columns of the volumes table (metric names; headers from :mod:`~boneframe.figures.quantities`).
VOLUME_COLUMNS = ("psnr", "dice", "bv_tv", "conn_d", "conn_d_bonej", "tb_th", "tb_sp", "tb_n", "da")
#: Columns of the kernels table (kernel summary keys).
KERNEL_COLUMNS = (
    "gain",
    "offset",
    "fwhm_um",
    "mtf50_lpmm",
    "mtf10_lpmm",
    "kernel_error",
    "alpha",
)
#: Keys whose value is one number per array axis.
PER_AXIS = ("fwhm_um", "mtf50_lpmm", "mtf10_lpmm")


def _table(rows: Sequence[Sequence[str]]) -> str:
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


def _header(key: str, units: Mapping[str, str] | None = None) -> str:
    """The column's label with its unit, as the figures write it (``"FWHM z, y, x (µm)"``)."""
    name = LABELS.get(key, key) + (" z, y, x" if key in PER_AXIS else "")
    return with_unit(name, unit_of(key, units))


def volume_table(volumes: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The volumes table: a header row, then one row per volume.

    Parameters
    ----------
    volumes : mapping
        Per volume, :func:`boneframe.metrics.measure`'s result (its ``units`` give
        the headers' units).

    Returns
    -------
    list of rows
        Each a list of cells (strings); the header names every column with its unit.
    """
    units: dict[str, str] = {}
    for m in volumes.values():
        units.update(m.get("units") or {})
    rows = [["volume", *(_header(k, units) for k in VOLUME_COLUMNS)]]
    rows += [[name, *(_fmt(m.get(k)) for k in VOLUME_COLUMNS)] for name, m in volumes.items()]
    return rows


def kernel_table(kernels: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The kernels table: a header row, then one row per kernel.

    Parameters
    ----------
    kernels : mapping
        Per kernel, its summary (:meth:`boneframe.kernel.Kernel.sidecar`, with
        ``kernel_error`` against the truth where known).

    Returns
    -------
    list of rows
        Each a list of cells (strings); the header names every column with its unit.
    """
    rows = [["kernel", *(_header(k) for k in KERNEL_COLUMNS)]]
    rows += [[name, *(_fmt(m.get(k)) for k in KERNEL_COLUMNS)] for name, m in kernels.items()]
    return rows


def regional_table(side: Mapping[str, Any]) -> list[list[str]]:
    """One row per region of a regional kernel's sidecar: index, centre, FWHM, its
    bootstrap interval and the truth where known, gain, offset.

    Parameters
    ----------
    side : mapping
        :meth:`boneframe.kernel.RegionalKernel.sidecar`, with ``true_regions`` for a
        phantom whose blur varies.

    Returns
    -------
    list of rows
        Each a list of cells (strings); the header names every column with its unit.
    """
    truth = side.get("true_regions") or [None] * len(side["regions"])
    rows = [
        [
            "region (z, y, x)",
            "centre z, y, x (mm)",
            _header("fwhm_um"),
            "FWHM 95 % interval z, y, x (µm)",
            "true FWHM z, y, x (µm)",
            _header("gain"),
            _header("offset"),
        ]
    ]
    for reg, true in zip(side["regions"], truth, strict=True):
        ci = reg.get("fwhm_um_ci")
        rows.append(
            [
                ", ".join(str(i) for i in reg["index"]),
                ", ".join(f"{c / 1000:.2f}" for c in reg["centre_um"]),
                _fmt(reg.get("fwhm_um")),
                "" if not ci else "; ".join(f"{_fmt(a)} – {_fmt(b)}" for a, b in ci),
                "" if true is None else _fmt(true.get("fwhm_um")),
                _fmt(reg.get("gain")),
                _fmt(reg.get("offset")),
            ]
        )
    return rows


def write_report(out: Path, spec: Any, result: Any) -> None:
    """Write the figures and ``report.md`` of a run into ``out``.

    Parameters
    ----------
    out : Path
        The run's (temporary) output directory.
    spec : PipelineSpec
        The run's spec (``metrics.structure`` decides the thickness figure).
    result : PipelineResult
        What the run produced (:class:`~boneframe.pipeline.PipelineResult`).
    """
    inputs = result.inputs
    vs = inputs.hr.require_voxel_size()
    sides = result.metrics["kernels"]
    kernels: dict[str, Any] = {}
    if inputs.true_kernel is not None and "true" in sides:  # none where the blur varies
        kernels["true"] = inputs.true_kernel
    regional = {name: sides[name] for name in result.kernels if "regions" in sides.get(name, {})}
    for name, k in result.kernels.items():
        if name in regional:  # drawn per region below; the kernels figure shows their mean
            kernels[f"{name} (mean of regions)"] = k.mean_kernel().array
        else:
            kernels[name] = k.array
    figures: list[tuple[str, str, str]] = []
    lazy = any(v.is_lazy for v in result.volumes.values())
    if inputs.registration is not None:
        overlay_figure(out / "registration.png", inputs.hr.numpy(), inputs.lr.numpy(), inputs.p, vs)
        figures.append(
            (
                "Registered micro-CT over the HR-pQCT",
                "registration.png",
                "Central slices across each axis: HR-pQCT magenta, micro-CT green, "
                "grey where they agree.",
            )
        )
    if kernels:
        kernel_figure(out / "kernels.png", kernels, vs)
        figures.append(
            (
                "Kernels",
                "kernels.png",
                "Per kernel: central slices (weight of the unit-sum kernel), line spread "
                "and MTF per axis; the true kernel black dashed.",
            )
        )
    for name, side in regional.items():
        truth = side.get("true_regions")
        regional_fwhm_figure(
            out / f"regional_fwhm_{name}.png",
            side,
            None if not truth else {"grid": side["grid"], "regions": truth},
        )
        figures.append(
            (
                f"Kernel FWHM per region: {name}",
                f"regional_fwhm_{name}.png",
                "FWHM per axis of each region's kernel against the region's position"
                + ("; the truth black dashed." if truth else "."),
            )
        )
    histories = {
        name: history_arrays(sr.history)
        for name, sr in result.superresolutions.items()
        if sr.history
    }
    if histories:
        iteration_figure(out / "iterations.png", histories, result.metrics)
        figures.append(
            (
                "Metrics against iteration",
                "iterations.png",
                "Every super-resolution against iteration; dotted: the high-resolution "
                "volume, dashed grey: the upsampled low-resolution one.",
            )
        )
    thresholds = {k: v.get("threshold", 0.5) for k, v in result.metrics["volumes"].items()}
    slices_figure(out / "slices.png", result.volumes, thresholds, voxel_um=vs)
    figures.append(
        (
            "Central slices",
            "slices.png",
            "Grey levels on one scale (top) and binarised at each volume's threshold (bottom).",
        )
    )
    if spec.metrics.structure and max(vs) - min(vs) <= 1e-3 * max(vs) and not lazy:
        volumes = {name: v.numpy() for name, v in result.volumes.items()}
        thickness_figure(out / "thickness.png", volumes, thresholds, vs[0])
        figures.append(
            (
                "Trabecular thickness",
                "thickness.png",
                "Distribution of the local thickness of each volume's bone.",
            )
        )
    p = inputs.p
    text = [
        "# boneframe report",
        "",
        f"High resolution {inputs.hr.shape} at {_fmt(list(vs))} µm; low resolution "
        f"{inputs.lr.shape} at {_fmt([v * q for v, q in zip(vs, p, strict=True)])} µm; "
        f"p = {_fmt(list(p)) if len(set(p)) > 1 else p[0]}. Axes z, y, x are array "
        f"axes 0, 1, 2; {DIMENSIONLESS} marks a dimensionless quantity.",
        "",
        "## Kernels",
        "",
        _table(
            kernel_table({k: v for k, v in result.metrics["kernels"].items() if k not in regional})
        ),
        "",
        "## Volumes against the high-resolution reference",
        "",
        _table(volume_table(result.metrics["volumes"])),
        "",
    ]
    for name, side in regional.items():
        grid = "×".join(str(n) for n in side["grid"])
        text += [
            f"### Regional kernel {name} ({grid} regions)",
            "",
            _table(regional_table(side)),
            "",
        ]
    for title, name, caption in figures:
        text += [f"## {title}", "", f"![{title}]({name})", "", caption, ""]
    (out / "report.md").write_text("\n".join(text))
