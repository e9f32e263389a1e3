"""``boneframe run`` is an adapter over the API: the same numbers as the CLI and
the library, the strategies' defaults decided once, zarr inputs kept lazy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import boneframe.pipeline as pipeline
from boneframe.cli import main
from boneframe.io import read_volume, write_volume
from boneframe.phantom import simulate_pair
from boneframe.spec import SpecError, validate_spec


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> Path:
    """A 32³ / 16³ phantom pair as npy files (with sidecars) and as zarr."""
    folder = tmp_path_factory.mktemp("pair")
    hr, lr = simulate_pair(32, seed=3, offset=0.05, noise=0.01).volumes()
    for name, vol in (("hr", hr), ("lr", lr)):
        write_volume(vol, folder / f"{name}.npy")
        write_volume(vol, folder / f"{name}.zarr")
    return folder


def _run(tmp_path: Path, spec: dict, name: str = "run") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / f"{name}-out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_a_spec_sr_stage_given_a_kernel_file_writes_what_the_cli_writes(pair_files, tmp_path):
    """The stage reads the kernel's offset from its sidecar, as the CLI does (it used
    to take 0: volumes 8.7 % apart)."""
    kernel = tmp_path / "k.npy"
    argv = ["estimate-kernel", str(pair_files / "hr.npy"), str(pair_files / "lr.npy")]
    assert main([*argv, "--support", "5", "--out", str(kernel), "--quiet"]) == 0
    assert abs(json.loads((tmp_path / "k.json").read_text())["offset"]) > 0.01
    cli = tmp_path / "sr.npy"
    assert main(["super-resolve", str(pair_files / "lr.npy"), "--kernel", str(kernel),
                 "--out", str(cli), "--quiet"]) == 0  # fmt: skip
    spec = {
        "version": 1,
        "inputs": {"files": {"hr": str(pair_files / "hr.npy"), "lr": str(pair_files / "lr.npy")}},
        "superresolution": [{"name": "file", "kernel": str(kernel)}],
        "metrics": {"per_iteration": False, "structure": False},
    }
    out = _run(tmp_path, spec)
    a, b = np.load(cli), np.load(out / "sr_file.npy")
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_a_kernel_file_without_its_offset_is_refused_unless_given(pair_files, tmp_path, capsys):
    bare = tmp_path / "bare.npy"
    np.save(bare, np.full((3, 3, 3), 1 / 27))
    out = tmp_path / "sr.npy"
    argv = ["super-resolve", str(pair_files / "lr.npy"), "--kernel", str(bare), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 2
    assert "offset" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--quiet", "--offset", "0", "--max-iter", "2"]) == 0
    assert out.is_file()


def test_the_solver_follows_the_similarity(pair_files):
    base = {"version": 1, "inputs": {"phantom": {"size": 16}}}
    spec = validate_spec({**base, "kernels": [{"name": "m", "similarity": "mi"}]})
    assert spec.kernels[0].solver is None  # decided by the API: gradient-descent for MI
    with pytest.raises(SpecError, match="quadratic similarity"):
        validate_spec({**base, "kernels": [{"name": "m", "similarity": "mi", "solver": "exact"}]})
    with pytest.raises(SpecError, match="not differentiable"):
        validate_spec({**base, "kernels": [{"name": "t", "regularizer": "tv"}]})


def test_kernel_stage_regularizer_weight_is_alpha(pair_files, tmp_path):
    base = {"version": 1, "inputs": {"phantom": {"size": 32}}}
    reg = {"name": "gradient-l2", "params": {"weight": 0.25}}
    spec = validate_spec({**base, "kernels": [{"name": "k", "regularizer": reg, "support": 5}]})
    assert spec.kernels[0].alpha == 0.25
    with pytest.raises(SpecError, match="give one of them"):
        validate_spec({**base, "kernels": [{"name": "k", "regularizer": reg, "alpha": 0.5}]})
    out = _run(tmp_path, {**base, "kernels": [{"name": "k", "regularizer": reg, "support": 5}],
                          "metrics": {"structure": False}})  # fmt: skip
    assert json.loads((out / "kernel_k.json").read_text())["alpha"] == 0.25


def test_zarr_inputs_run_chunk_by_chunk_with_the_npy_kernel(pair_files, tmp_path, monkeypatch):
    seen = {}
    estimate = pipeline.estimate_kernel

    def spy(hr, lr, **kwargs):
        seen["lazy"] = hr.is_lazy and lr.is_lazy
        seen["chunks"] = hr.data.chunksize if hr.is_lazy else None
        return estimate(hr, lr, **kwargs)

    monkeypatch.setattr(pipeline, "estimate_kernel", spy)
    kernels = [{"name": "l2", "support": 5}]
    common = {"kernels": kernels, "metrics": {"structure": False}, "compute": {"chunk_size": 16}}
    runs = {}
    for ext in ("npy", "zarr"):
        files = {"hr": str(pair_files / f"hr.{ext}"), "lr": str(pair_files / f"lr.{ext}")}
        out = _run(tmp_path, {"version": 1, "inputs": {"files": files}, **common}, ext)
        runs[ext] = (dict(seen), np.load(out / "kernel_l2.npy"), json.loads(
            (out / "metrics.json").read_text()))  # fmt: skip
    assert runs["npy"][0]["lazy"] is False
    assert runs["zarr"][0] == {"lazy": True, "chunks": (16, 16, 16)}
    a, b = runs["npy"][1], runs["zarr"][1]
    # the Gram matrix is summed in float32 blocks, box by box: 1.6e-5 apart here
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(a)
    ma, mb = runs["npy"][2]["volumes"], runs["zarr"][2]["volumes"]
    for volume in ("hr", "lr_upsampled"):
        for key in ("bv_tv", "euler", "conn_d"):
            assert mb[volume][key] == pytest.approx(ma[volume][key], rel=1e-9), (volume, key)
    assert read_volume(pair_files / "hr.zarr").is_lazy
