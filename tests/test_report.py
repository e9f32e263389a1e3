"""The report at a glance: each figure from small hand-made inputs, and report.md's units."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.figures import quantities
from boneframe.kernel import Kernel
from boneframe.phantom import gaussian_kernel
from boneframe.report import (
    history_arrays,
    iteration_figure,
    kernel_figure,
    overlay_figure,
    regional_fwhm_figure,
    slices_figure,
    thickness_figure,
    volume_table,
    write_report,
)
from boneframe.volume import Volume

VS = (41.0, 41.0, 41.0)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Every figure saved during the test, with the keywords of its ``savefig`` and
    the renderer that drew it (recorded after drawing, so tick labels exist)."""
    from matplotlib.figure import Figure

    record: list[tuple[Any, dict[str, Any]]] = []
    original = Figure.savefig

    def savefig(self: Figure, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        record.append((self, {**kwargs, "renderer": self.canvas.get_renderer()}))

    monkeypatch.setattr(Figure, "savefig", savefig)
    return record


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (from its header)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG, f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def assert_readable(fig: Any, kwargs: dict[str, Any]) -> None:
    """At least 100 dpi, no visible text under 9 pt, no two titles or legends overlapping."""
    from matplotlib.text import Text

    assert kwargs.get("dpi", 0) >= 100
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < 9}
    assert not small, small
    renderer = kwargs["renderer"]
    boxes = [ax.title for ax in fig.axes if ax.get_visible() and ax.get_title()]
    titled = [fig, *fig.subfigs]
    boxes += [f._suptitle for f in titled if f._suptitle is not None and f._suptitle.get_text()]
    boxes += list(fig.legends)
    extents = [b.get_window_extent(renderer) for b in boxes]
    for i, a in enumerate(extents):
        for j in range(i + 1, len(extents)):
            assert not a.overlaps(extents[j]), (boxes[i], boxes[j])


def lines_of(ax: Any) -> list[Any]:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


# -- kernels ------------------------------------------------------------------------------


def test_kernel_figure_has_colour_bars_labelled_mtf_levels_and_the_truth(tmp_path, drawn):
    true = gaussian_kernel((1.6, 1.3, 1.1), 7)
    kernels = {"true": true, "l2": gaussian_kernel((1.7, 1.3, 1.0), 7)}
    kernel_figure(tmp_path / "k.png", kernels, VS)
    assert png_size(tmp_path / "k.png")[0] > 1000
    ((fig, kwargs),) = drawn
    assert_readable(fig, kwargs)
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 2  # one per kernel, its three slices on one scale
    assert all("kernel weight" in ax.get_ylabel() for ax in colour_bars)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "MTF 50 %" in texts and "MTF 10 %" in texts
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "true" in legend
    assert [sub._suptitle.get_text() for sub in fig.subfigs] == ["kernel true", "kernel l2"]
    for ax in fig.subfigs[1].axes:
        if ax.get_lines():  # profile and MTF: the truth black, on top of the estimates
            black = [ln for ln in ax.get_lines() if ln.get_color() == "black"]
            assert len(black) == 3
            assert min(ln.get_zorder() for ln in black) > max(
                ln.get_zorder() for ln in ax.get_lines() if ln.get_color() != "black"
            )


# -- iterations ---------------------------------------------------------------------------


def toy_history(shift: float) -> list[dict[str, float]]:
    """30 iterations of a super-resolution; Tb.Th every 10th iteration."""
    return [
        {
            "psnr": 12 + 3 * (1 - np.exp(-k / 5)) + shift,
            "dice": 0.8 + 0.05 * k / 30,
            "bv_tv": 0.35 - 0.002 * k,
            "conn_d": 12.0 + shift,
            "data": 1e6 / k,
            **({"tb_th": 200.0 - k} if k % 10 == 1 else {}),
        }
        for k in range(1, 31)
    ]


#: Two nearly equal runs (their curves overlap: the figure must still tell them apart).
SHIFTS = {"l2": 0.0, "mi": 0.01}


def toy_histories() -> dict[str, dict[str, np.ndarray]]:
    return {name: history_arrays(toy_history(shift)) for name, shift in SHIFTS.items()}


def toy_metrics() -> dict[str, Any]:
    units = {"psnr": "dB", "dice": "", "bv_tv": "", "conn_d": "1/mm³", "tb_th": "µm"}
    return {
        "volumes": {
            "hr": {"bv_tv": 0.26, "conn_d": 19.0, "tb_th": 140.0, "units": units},
            "lr_upsampled": {"psnr": 11.9, "dice": 0.78, "bv_tv": 0.36, "units": units},
        }
    }


def test_history_arrays_fill_gaps_with_nan():
    h = history_arrays([{"a": 1.0, "b": 2}, {"a": 3.0}, {"a": 4.0, "note": "x"}])
    assert h["iteration"].tolist() == [1, 2, 3]
    assert h["a"].tolist() == [1, 3, 4]
    assert h["b"][0] == 2 and np.isnan(h["b"][1:]).all()
    assert "note" not in h


def test_iteration_figure_tells_the_runs_apart(tmp_path, drawn):
    metrics = toy_metrics()
    iteration_figure(tmp_path / "it.png", toy_histories(), metrics)
    png_size(tmp_path / "it.png")
    ((fig, kwargs),) = drawn
    assert_readable(fig, kwargs)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["SR l2", "SR mi", "LR upsampled", "high resolution"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 6
    for ax in panels:
        assert re.search(r"\(.+\)$", ax.get_ylabel()), ax.get_ylabel()
        runs = [ln for ln in lines_of(ax) if ln.get_label().startswith("SR ")]
        styles = {(ln.get_color(), str(ln.get_linestyle()), ln.get_marker()) for ln in runs}
        assert len(runs) == 2 and len(styles) == 2
        colours = {ln.get_color() for ln in runs}
        dashes = {str(ln.get_linestyle()) for ln in runs}
        assert len(colours) == 2 and len(dashes) == 2  # colour AND line style
        assert all(ln.get_markevery() is not None for ln in runs)
    # each panel's axis label is the report's header for that metric: one unit for both
    labels = [ax.get_ylabel() for ax in panels]
    assert {"PSNR (dB)", "DICE (–)", "BV/TV (–)", "Conn.D (1/mm³)", "Tb.Th (µm)"} <= set(labels)
    headers = set(volume_table(metrics["volumes"])[0])
    assert all(lab in headers for lab in labels if not lab.startswith("data term"))


# -- slices -------------------------------------------------------------------------------


def toy_volumes(calibrated: bool = False) -> dict[str, Volume]:
    rng = np.random.default_rng(0)
    base = (rng.random((16, 16, 16)) > 0.7).astype(np.float32)
    meta = {"calibration_slope": 1000.0, "calibration_intercept": -100.0} if calibrated else {}
    return {
        name: Volume(
            base + noise * rng.standard_normal(base.shape).astype(np.float32),
            voxel_size=VS,
            metadata=meta,
        )
        for name, noise in (("hr", 0.0), ("lr_upsampled", 0.3), ("sr_l2", 0.1))
    }


@pytest.mark.parametrize(("calibrated", "unit"), [(False, "grey level"), (True, "mg HA/cm³")])
def test_slices_figure_shows_grey_levels_with_their_unit_and_a_scale_bar(
    tmp_path, drawn, calibrated, unit
):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    volumes = toy_volumes(calibrated)
    slices_figure(tmp_path / "s.png", volumes, dict.fromkeys(volumes, 0.5))
    png_size(tmp_path / "s.png")
    ((fig, kwargs),) = drawn
    assert_readable(fig, kwargs)
    assert fig._suptitle.get_text() == "axis 0 (z), slice 8 of 16, z = 0.33 mm"
    images = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(images) == 6  # grey levels above, binarised beneath
    grey = [ax.get_images()[0] for ax in images[:3]]
    assert len({im.get_clim() for im in grey}) == 1  # one grey scale
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert colour_bars[0].get_ylabel() == unit
    for ax in images:
        bars = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
        assert len(bars) == 1
    assert [ax.get_title() for ax in images[:3]] == ["HR (reference)", "LR upsampled", "SR l2"]


# -- thickness, registration --------------------------------------------------------------


def test_thickness_and_registration_figures_are_written(tmp_path, drawn):
    volumes = {n: v.numpy() for n, v in toy_volumes().items()}
    thickness_figure(tmp_path / "t.png", volumes, dict.fromkeys(volumes, 0.5), 41.0)
    hr = volumes["hr"]
    overlay_figure(tmp_path / "r.png", hr, hr[::2, ::2, ::2], (2, 2, 2), VS)
    png_size(tmp_path / "t.png"), png_size(tmp_path / "r.png")
    for fig, kwargs in drawn:
        assert_readable(fig, kwargs)


# -- regional FWHM ------------------------------------------------------------------------


def regional(grid: tuple[int, int, int], ci: bool, widen: float = 0.0) -> dict[str, Any]:
    """A regional kernel sidecar on a 16 x 16 x 32 low-resolution grid: the FWHM grows
    with the distance from the centre of the slice."""
    lr, regions = (16, 16, 32), []
    for index in np.ndindex(*grid):
        box = [[i * n // g, (i + 1) * n // g] for i, n, g in zip(index, lr, grid, strict=True)]
        centre = [(a + b - 1) / 2 * 82.0 for a, b in box]
        r = np.hypot(centre[1] - 615.0, centre[2] - 1271.0) / 1000.0
        fwhm = [154 + 10 * r + widen, 126 + 12 * r + widen, 106 + 14 * r + widen]
        region = {
            "index": list(index),
            "lr_box": box,
            "centre_um": centre,
            "fwhm_um": fwhm,
            "mtf50_lpmm": [2.9, 3.5, 4.2],
            "mtf10_lpmm": [5.2, 6.4, 7.6],
            "gain": 0.9,
            "offset": 0.05,
        }
        if ci:
            region["fwhm_um_ci"] = [[w - 5.0, w + 6.0] for w in fwhm]
        regions.append(region)
    return {"grid": list(grid), "voxel_size_um": list(VS), "p": [2, 2, 2], "regions": regions}


@pytest.mark.parametrize("grid", [(1, 1, 1), (1, 1, 4), (2, 2, 2)])
@pytest.mark.parametrize("extras", [False, True], ids=["bare", "ci-and-truth"])
def test_regional_fwhm_figure(tmp_path, drawn, grid, extras):
    truth = regional(grid, ci=False, widen=-2.0) if extras else None
    regional_fwhm_figure(tmp_path / "r.png", regional(grid, ci=extras), truth)
    png_size(tmp_path / "r.png")
    ((fig, kwargs),) = drawn
    assert_readable(fig, kwargs)
    line = fig.axes[0]
    assert line.get_xlabel().endswith("(mm)") and line.get_ylabel() == "FWHM (µm)"
    assert len(line.containers) == (3 if extras else 0)  # error bars, one per axis
    black = [ln for ln in line.get_lines() if ln.get_color() == "black"]
    assert len(black) == (3 if extras else 0)
    heat_maps = [ax for ax in fig.axes if ax.get_images()]
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    expected = 3 if sorted(grid)[1] > 1 else 0
    assert len(heat_maps) == len(colour_bars) == expected
    assert all(ax.get_ylabel() == "FWHM (µm)" for ax in colour_bars)


def test_regional_fwhm_figure_tolerates_missing_values(tmp_path):
    side = regional((1, 2, 2), ci=True)
    side["regions"][0]["fwhm_um"][1] = None
    side["regions"][1]["fwhm_um_ci"] = None
    side["regions"][2]["fwhm_um_ci"][0] = None
    regional_fwhm_figure(tmp_path / "r.png", side)
    png_size(tmp_path / "r.png")


def test_regional_fwhm_figure_refuses_a_grid_its_regions_do_not_fill(tmp_path):
    side = regional((1, 1, 4), ci=False)
    side["grid"] = [1, 2, 4]
    with pytest.raises(InputError, match="needs 8 regions, got 4"):
        regional_fwhm_figure(tmp_path / "r.png", side)


# -- report.md ----------------------------------------------------------------------------

#: The physical quantity of each column of report.md, by the header's name: columns of
#: one quantity must carry one unit.
QUANTITY = {
    "Tb.Th": "length",
    "Tb.Sp": "length",
    "FWHM z, y, x": "length",
    "FWHM 95 % interval z, y, x": "length",
    "true FWHM z, y, x": "length",
    "centre z, y, x": "position",
    "Tb.N": "per length",
    "Conn.D": "per volume",
    "Conn.D BoneJ": "per volume",
    "MTF 50 % z, y, x": "spatial frequency",
    "MTF 10 % z, y, x": "spatial frequency",
    "PSNR": "level",
    "offset": "grey level",
    "DICE": "ratio",
    "BV/TV": "ratio",
    "DA": "ratio",
    "gain": "ratio",
    "error vs true": "ratio",
    "α": "ratio",
}
#: The units the README promises.
EXPECTED = {
    "length": "µm",
    "position": "mm",
    "per length": "1/mm",
    "per volume": "1/mm³",
    "spatial frequency": "lp/mm",
    "level": "dB",
    "grey level": "grey level",
    "ratio": quantities.DIMENSIONLESS,
}


def table_headers(markdown: str) -> list[list[str]]:
    """The header cells of every table (the line before a ``|---|`` line)."""
    lines = markdown.splitlines()
    return [
        [c.strip() for c in lines[i - 1].strip().strip("|").split("|")]
        for i, line in enumerate(lines)
        if line.startswith("|---")
    ]


def split_unit(header: str) -> tuple[str, str]:
    match = re.fullmatch(r"(.+) \(([^()]+)\)", header)
    assert match, f"column {header!r} carries no unit"
    return match[1], match[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """write_report on a hand-made run: a 16³ phantom, the true kernel, an L2-like one
    and a regional one (1 x 1 x 4), two super-resolutions with toy histories."""
    import boneframe as bf
    from boneframe.metrics import measure

    hr, lr = bf.simulate_pair(16, seed=0).volumes()
    m = measure(hr, hr)
    true = gaussian_kernel((1.6, 1.3, 1.1), 7)
    estimate = Kernel(gaussian_kernel((1.7, 1.3, 1.0), 7), 0.05, VS, (2, 2, 2))
    histories = {
        name: SimpleNamespace(history=toy_history(shift)) for name, shift in SHIFTS.items()
    }
    result = SimpleNamespace(
        inputs=SimpleNamespace(hr=hr, lr=lr, p=(2, 2, 2), true_kernel=true, registration=None),
        kernels={"l2": estimate, "local": SimpleNamespace(mean_kernel=lambda: estimate)},
        superresolutions=histories,
        volumes={"hr": hr, "lr_upsampled": hr, "sr_l2": hr, "sr_mi": hr},
        metrics={
            "volumes": dict.fromkeys(("hr", "lr_upsampled", "sr_l2", "sr_mi"), m),
            "kernels": {
                "true": Kernel(true, 0.0, VS, (2, 2, 2)).summary(),
                "l2": {**estimate.sidecar(), "kernel_error": 0.07, "alpha": 0.1},
                "local": {
                    **regional((1, 1, 4), ci=True),
                    "offset": 0.05,
                    "true_regions": regional((1, 1, 4), ci=False)["regions"],
                },
            },
        },
    )
    spec = SimpleNamespace(metrics=SimpleNamespace(structure=False))
    out = tmp_path_factory.mktemp("report")
    write_report(out, spec, result)
    return out


def test_report_writes_its_figures(report):
    text = (report / "report.md").read_text()
    for name in ("kernels.png", "iterations.png", "slices.png", "regional_fwhm_local.png"):
        png_size(report / name)
        assert f"({name})" in text


def test_every_report_column_carries_a_unit(report):
    tables = table_headers((report / "report.md").read_text())
    assert len(tables) == 3  # kernels, the regional kernel's regions, volumes
    for header in tables:
        for cell in header[1:]:  # the first column names the row
            split_unit(cell)


def test_one_unit_per_quantity_in_the_report(report):
    seen: dict[str, set[str]] = {}
    for header in table_headers((report / "report.md").read_text()):
        for cell in header[1:]:
            name, unit = split_unit(cell)
            assert name in QUANTITY, f"column {name!r}: which quantity is it?"
            seen.setdefault(QUANTITY[name], set()).add(unit)
    assert {q: units for q, units in seen.items() if len(units) > 1} == {}
    assert {q: units.pop() for q, units in seen.items()} == EXPECTED


@pytest.mark.parametrize("module", ["boneframe.figures.quantities", "boneframe.figures.regional"])
def test_docstring_examples_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
