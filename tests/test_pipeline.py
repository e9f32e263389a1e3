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
    for name in ("kernels.png", "iterations.png", "slices.png", "report.md"):
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
        "superresolution": [{"name": "s", "kernel": str(bad)}],
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert main(["run", str(tmp_path / "s.json"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "odd" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel.npy", "s.json"]
