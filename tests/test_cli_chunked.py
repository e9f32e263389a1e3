"""The command line on zarr volumes: the chunked paths, wired, give the in-memory numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from boneframe.cli import main
from boneframe.io import read_volume, write_volume


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiled") / "ph"
    assert main(["phantom", str(out), "--size", "48", "--tile", "24", "--format", "zarr"]) == 0
    return out


def _npy_copy(src: Path, dst: Path) -> Path:
    vol = read_volume(src)
    write_volume(vol.with_data(vol.numpy()), dst)
    return dst


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_tiled_phantom_is_written_chunk_by_chunk(tiled):
    hr, lr = read_volume(tiled / "hr.zarr"), read_volume(tiled / "lr.zarr")
    assert hr.is_lazy and hr.shape == (48, 48, 48) and lr.shape == (24, 24, 24)
    assert lr.voxel_size == (82.0, 82.0, 82.0)
    data = hr.numpy()
    np.testing.assert_array_equal(data[:24], data[24:])  # the 24³ tile repeats
    assert json.loads((tiled / "phantom.json").read_text())["tile"] == 24


def test_large_phantom_needs_zarr(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "p"), "--size", "48", "--tile", "24"]) == 2
    assert "--format zarr" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_metrics_on_zarr_are_the_in_memory_ones(tiled, tmp_path, capsys):
    lazy = _json(capsys, ["metrics", str(tiled / "hr.zarr"), "--json"])
    whole = _json(
        capsys, ["metrics", str(_npy_copy(tiled / "hr.zarr", tmp_path / "hr.npy")), "--json"]
    )
    assert set(whole) == set(lazy)
    # DA and the MIL ratio have no chunk-by-chunk form: not loaded unless named
    assert set(lazy["skipped"]) - set(whole["skipped"]) == {"da", "mil_ratio"}
    assert lazy["da"] is None and whole["da"] > 0
    for key, value in lazy.items():
        if key in ("skipped", "da", "mil_ratio"):
            continue
        if isinstance(value, float):
            assert value == pytest.approx(whole[key], rel=1e-6), key
        else:
            assert value == whole[key], key


def test_thickness_on_zarr_is_the_in_memory_map(tiled, tmp_path):
    assert main(["thickness", str(tiled / "hr.zarr"), "--out", str(tmp_path / "t_lazy.zarr")]) == 0
    npy = _npy_copy(tiled / "hr.zarr", tmp_path / "hr.npy")
    assert main(["thickness", str(npy), "--out", str(tmp_path / "t_whole.npy")]) == 0
    a, b = (
        read_volume(tmp_path / "t_lazy.zarr").numpy(),
        read_volume(tmp_path / "t_whole.npy").numpy(),
    )
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=1e-6)


def test_kernel_and_superresolution_on_zarr(tiled, tmp_path):
    lazy_k, whole_k = tmp_path / "k_lazy.npy", tmp_path / "k_whole.npy"
    hr, lr = tiled / "hr.zarr", tiled / "lr.zarr"
    assert main(["estimate-kernel", str(hr), str(lr), "--out", str(lazy_k), "--quiet"]) == 0
    hr_npy = _npy_copy(hr, tmp_path / "hr.npy")
    lr_npy = _npy_copy(lr, tmp_path / "lr.npy")
    assert (
        main(["estimate-kernel", str(hr_npy), str(lr_npy), "--out", str(whole_k), "--quiet"]) == 0
    )
    a, b = np.load(lazy_k), np.load(whole_k)
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
    out = tmp_path / "sr.zarr"
    argv = ["super-resolve", str(lr), "--kernel", str(lazy_k), "--out", str(out), "--quiet"]
    assert main([*argv, "--max-iter", "20"]) == 0
    sr = read_volume(out)
    assert sr.shape == (48, 48, 48) and sr.voxel_size == (41.0, 41.0, 41.0)
    assert sr.metadata["blockwise"] is True  # the settings live in the zarr's attributes
    assert not (tmp_path / "sr.json").exists()


def test_a_bad_scheduler_address_is_one_clear_error(tiled, capsys):
    assert main(["--scheduler", "nonsense", "metrics", str(tiled / "hr.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "tcp://" in err and "Traceback" not in err
