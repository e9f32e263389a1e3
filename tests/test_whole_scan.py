"""The whole-scan walk-through: contour -> SR inside the periosteal mask -> evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneframe.cli import main
from boneframe.io import read_volume, write_volume
from boneframe.whole_scan import run_whole_scan, simulate_scan


def test_the_simulated_scan_follows_the_model() -> None:
    sim = simulate_scan((2, 448, 448), seed=3)
    assert sim.scan.dtype == np.int16 and sim.scan.voxel_size == (82.0,) * 3
    assert sim.truth.shape == (4, 896, 896) and sim.truth.voxel_size == (41.0,) * 3
    assert sim.kernel.voxel_size == (41.0,) * 3 and sim.kernel.array.sum() == pytest.approx(1.0)
    # g = U(h * f) + n in mg HA/cm³: the scan's mean density is the truth's (h has gain 1)
    from boneframe.calibration import to_density

    g = to_density(sim.scan).numpy()
    assert abs(float(g.mean()) - float(sim.truth.numpy().mean())) < 2.0


def test_run_whole_scan(tmp_path, capsys) -> None:
    out = tmp_path / "ws"
    result = run_whole_scan(out, shape=(2, 448, 448), seed=1, max_iter=40)
    names = {p.name for p in out.iterdir()}
    assert {"masks", "truth.zarr", "sr.zarr", "evaluation.json", "whole_scan.png"} <= names
    assert json.loads((out / "evaluation.json").read_text())["blocks"] == result["blocks"]
    assert result["dice"]["periosteal"] >= 0.98 and result["dice"]["trabecular"] >= 0.98
    assert 0 < result["blocks"]["solved"] < result["blocks"]["total"]  # the air is not solved
    sr = read_volume(out / "sr.zarr")
    scan = read_volume(next(out.glob("scan.*")))
    assert sr.voxel_size == (41.0,) * 3 and sr.origin == scan.origin
    assert sr.metadata["calibration_slope"] == pytest.approx(scan.metadata["calibration_slope"])
    rows = result["evaluation"]
    # super-resolution brings the trabecular thickness and spacing towards the truth
    for key in ("tb_th_um", "tb_sp_um"):
        assert abs(rows["sr"][key] - rows["truth"][key]) < 0.5 * abs(
            rows["scan"][key] - rows["truth"][key]
        ), key
    assert abs(rows["sr"]["tb_vbmd_mg_ha_cm3"] - rows["truth"]["tb_vbmd_mg_ha_cm3"]) < 5.0
    capsys.readouterr()
    code = main(["demo", "--whole-scan", "--out", str(tmp_path / "x"), "--moving", str(out)])
    assert code == 2 and "takes no --moving" in capsys.readouterr().err


def test_a_spec_contours_the_scan_and_measures_inside_a_compartment(tmp_path) -> None:
    from boneframe.pipeline import run_pipeline
    from boneframe.progress import Reporter
    from boneframe.spec import validate_spec

    sim = simulate_scan((2, 448, 448), seed=5)
    lr = write_volume(sim.scan, tmp_path / "scan.npy")
    hr = write_volume(sim.truth, tmp_path / "truth.npy")
    kernel = sim.kernel.save(tmp_path / "k.npy")
    spec = validate_spec({
        "version": 1,
        "inputs": {"files": {"hr": str(hr), "lr": str(lr)}, "p": 2},
        "compartments": {"contour": {"name": "dual-threshold", "params": {"bones": "largest"}},
                         "measure_in": "trabecular"},
        "superresolution": [{"name": "sr", "kernel": str(kernel),
                             "solver": {"name": "admm", "params": {"max_iter": 3}}}],
        "metrics": {"structure": False, "per_iteration": False},
    }, "test")  # fmt: skip
    out = tmp_path / "run"
    result = run_pipeline(spec, out, reporter=Reporter(quiet=True))
    masks = {p.stem: read_volume(p) for p in (out / "compartments").iterdir() if p.suffix == ".npy"}
    assert set(masks) == {"periosteal", "trabecular", "cortical"}
    trab_mm3 = float(masks["trabecular"].numpy().sum()) * 0.082**3
    for label, m in result.metrics["volumes"].items():  # scan, truth, SR: one region
        assert m["tv_mm3"] == pytest.approx(trab_mm3, rel=1e-9), label
    with pytest.raises(Exception, match="measure_in"):
        validate_spec({**spec.model_dump(mode="json"), "compartments": {"measure_in": "marrow"}})
