"""The whole-scan walk-through: contour -> SR inside the periosteal mask -> evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneframe.cli import main
from boneframe.io import read_volume
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
