"""End to end: the demo, a spec run reproducing it, atomic output directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from boneframe.cli import main
from boneframe.demo import demo_spec

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "d"
    assert main(["demo", "--out", str(out), "--size", str(SIZE), "--quiet"]) == 0
    return out


def test_demo_writes_the_report(demo_dir):
    metrics = json.loads((demo_dir / "metrics.json").read_text())
    volumes = metrics["volumes"]
    assert {"hr", "lr_upsampled", "sr_l2"} <= set(volumes)
    assert volumes["sr_l2"]["psnr"] > volumes["lr_upsampled"]["psnr"]
    assert metrics["kernels"]["l2"]["kernel_error"] < 0.2
    for name in ("kernels.png", "iterations.png", "slices.png", "thickness.png", "report.md"):
        assert (demo_dir / name).is_file(), name
    history = (demo_dir / "history_sr_l2.csv").read_text().splitlines()
    assert history[0].startswith("iteration") and "psnr" in history[0] and len(history) > 2
    assert np.load(demo_dir / "sr_l2.npy").shape == (SIZE,) * 3


def test_paper_spec_is_the_demo_at_the_papers_size():
    spec = yaml.safe_load((ROOT / "examples" / "paper.yaml").read_text())
    assert spec == demo_spec(200)


def test_run_reproduces_the_demo(demo_dir, tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "examples" / "paper.yaml").read_text())
    spec["inputs"]["phantom"]["size"] = SIZE
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "small.yaml"), "--out", str(out), "--quiet"]) == 0
    a = json.loads((demo_dir / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a == b
    assert np.array_equal(np.load(demo_dir / "sr_l2.npy"), np.load(out / "sr_l2.npy"))


def test_existing_output_is_refused(demo_dir, capsys):
    before = sorted(p.name for p in demo_dir.iterdir())
    assert main(["demo", "--out", str(demo_dir), "--size", "16", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in demo_dir.iterdir()) == before


def test_failed_run_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "kernel.npy"
    np.save(bad, np.ones((4, 4, 4)))  # even support: fails inside the SR stage
    spec = {
        "version": 1,
        "inputs": {"phantom": {"size": 16}},
        "superresolution": [{"name": "s", "kernel": str(bad), "offset": 0.0}],
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert main(["run", str(tmp_path / "s.json"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "odd" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.npy", "s.json"]


@pytest.fixture
def raw_scans(tmp_path) -> Path:
    """A misregistered micro-CT (uct.npy) / HR-pQCT (hrpqct.npy) pair in ``tmp_path``."""
    pytest.importorskip("SimpleITK")
    from boneframe.io import write_volume
    from boneframe.registration.phantom import simulate_pair, synthetic_structure

    pair = simulate_pair(
        synthetic_structure(150, seed=3),
        angle_deg=3.0,
        axis=(1, 0.5, -1),
        translation_um=(150, -100, 200),
        lr_shape=28,
    )
    write_volume(pair.moving, tmp_path / "uct.npy")
    write_volume(pair.fixed, tmp_path / "hrpqct.npy")
    return tmp_path


def test_run_with_a_registration_stage(raw_scans, tmp_path):
    from boneframe.io import read_json

    spec = {
        "version": 1,
        "inputs": {"registration": {"moving": "uct.npy", "fixed": "hrpqct.npy"}},
        "kernels": [{"name": "l2", "support": 7}],
        "superresolution": [
            {"name": "l2", "kernel": "l2", "solver": {"name": "admm", "params": {"max_iter": 5}}}
        ],  # fmt: skip
        "metrics": {"structure": False},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(out), "--quiet"]) == 0
    report = read_json(out / "registration.json")
    assert report["metric_final"] < report["metric_initial"]
    assert (out / "registration.tfm").is_file() and (out / "registration.png").is_file()
    assert "registration.png" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kernels"]["l2"]["gain"] > 0


def test_registration_stage_must_keep_the_grid(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((8, 8, 8)))
    spec = {
        "version": 1,
        "inputs": {"registration": {"moving": "a.npy", "fixed": "a.npy", "params": {"pad": 2}}},
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert main(["run", str(tmp_path / "s.json"), "--out", str(tmp_path / "o")]) == 2
    assert "pad = 0" in capsys.readouterr().err


def test_demo_on_raw_scans_registers_them(raw_scans, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--moving", str(tmp_path / "uct.npy")]) == 2
    assert "--fixed" in capsys.readouterr().err
    out = tmp_path / "d"
    args = ["demo", "--out", str(out), "--quiet", "--moving", str(tmp_path / "uct.npy"),
            "--fixed", str(tmp_path / "hrpqct.npy")]  # fmt: skip
    assert main(args) == 0
    assert (out / "registration.png").is_file() and (out / "kernel_mi.npy").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "true" not in metrics["kernels"] and {"sr_l2", "sr_mi"} <= set(metrics["volumes"])


def test_structure_metrics_join_the_history_every_kth_iteration():
    from boneframe.metrics import measure
    from boneframe.phantom import micro_ct, trabecular_occupancy
    from boneframe.superres.iteration_metrics import iteration_metrics as iteration_metric_fn

    ref = micro_ct(trabecular_occupancy(32, seed=1))
    est = ref + np.random.default_rng(0).normal(0, 0.05, ref.shape).astype(np.float32)
    fn = iteration_metric_fn(ref, (41.0, 41.0, 41.0), structure_every=3)
    records = [fn(est) for _ in range(5)]
    assert [("tb_th" in r, "tb_sp" in r) for r in records] == [
        (True, True),
        (False, False),
        (False, False),
        (True, True),
        (False, False),
    ]
    expected = measure(est, voxel_size=41.0, names=["tb_th", "tb_sp"])
    assert records[0]["tb_th"] == expected["tb_th"] and records[3]["tb_sp"] == expected["tb_sp"]
    assert all("psnr" in r and "conn_d" in r for r in records)
    # anisotropic voxels or 0: never
    assert "tb_th" not in iteration_metric_fn(ref, (41.0, 41.0, 82.0))(est)
    assert "tb_th" not in iteration_metric_fn(ref, 41.0, structure_every=0)(est)
