"""Spatially variant kernels from the command line: a phantom whose blur widens, regional
kernels estimated and summarised, a super-resolution with them; bad grids refused."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

from boneframe.cli import main
from boneframe.kernel import RegionalKernel, estimate_regional_kernels, load_kernel
from boneframe.phantom import simulate_pair
from boneframe.volume import Volume


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("regional") / "ph"
    assert main(["phantom", str(out), "--size", "32", "--kernel-variation", "1.6",
                 "--regions", "1,1,2", "--seed", "2"]) == 0  # fmt: skip
    return out


def test_phantom_writes_its_true_regional_kernels(phantom):
    info = json.loads((phantom / "phantom.json").read_text())
    assert info["kernel_variation"] == 1.6 and info["regions"] == [1, 1, 2]
    truth = load_kernel(phantom / info["files"]["kernel_true_regional"])
    assert isinstance(truth, RegionalKernel) and truth.grid == (1, 1, 2)
    fw = [r["fwhm_um"][2] for r in truth.region_summaries()]
    assert fw[1] > fw[0]


def test_estimate_info_and_super_resolve(phantom, tmp_path, capsys):
    k = tmp_path / "k.npy"
    code, out, err = run(capsys, "estimate-kernel", str(phantom / "hr.npy"),
                         str(phantom / "lr.npy"), "--regions", "1,1,2", "--out", str(k),
                         "--quiet")  # fmt: skip
    assert code == 0, err
    assert "2 regional kernels" in out
    side = json.loads(k.with_suffix(".json").read_text())
    assert side["kind"] == "regional" and side["grid"] == [1, 1, 2]
    assert {"fwhm_um", "centre_um", "gain", "offset"} <= set(side["regions"][0])
    code, out, _ = run(capsys, "info", str(k))
    assert code == 0 and "regional kernel: 1x1x2 regions" in out and "FWHM" in out
    sr = tmp_path / "sr.npy"
    code, out, err = run(capsys, "super-resolve", str(phantom / "lr.npy"), "--kernel", str(k),
                         "--out", str(sr), "--max-iter", "5", "--quiet")  # fmt: skip
    assert code == 0, err
    assert np.load(sr).shape == (32, 32, 32)


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ("1,0,2", "greater than or equal to 1"),
        ("1,a", "three integers"),
        ("1,1,40", "more regions"),
    ],
)
def test_bad_grids_are_refused(phantom, tmp_path, capsys, regions, message):
    out = tmp_path / "k.npy"
    hr, lr = str(phantom / "hr.npy"), str(phantom / "lr.npy")
    code, _, err = run(capsys, "estimate-kernel", hr, lr, "--regions", regions, "--out", str(out))
    assert code == 2 and err.startswith("error:") and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_regional_estimate_for_another_similarity_and_chunked_input():
    pair = simulate_pair(32, 5, noise=0.01, kernel_variation=1.5)
    hr, lr = pair.volumes()
    mem = estimate_regional_kernels(hr, lr, (1, 1, 2), support=7)
    lazy = estimate_regional_kernels(
        Volume(da.from_array(pair.hr, chunks=16), voxel_size=hr.voxel_size),
        Volume(da.from_array(pair.lr, chunks=8), voxel_size=lr.voxel_size),
        (1, 1, 2), support=7,
    )  # fmt: skip
    np.testing.assert_allclose(lazy.arrays, mem.arrays, atol=1e-5 * np.abs(mem.arrays).max())
    mi = estimate_regional_kernels(hr, lr, (1, 1, 2), support=7, similarity="mi", max_iter=15)
    assert mi.kernels[0].similarity == "mi" and mi.grid == (1, 1, 2)
    fw = [r["fwhm_um"][2] for r in mi.region_summaries()]
    assert fw[1] > fw[0]


def test_bootstrap_intervals_go_into_the_sidecar(phantom, tmp_path, capsys):
    k = tmp_path / "kb.npy"
    hr, lr = str(phantom / "hr.npy"), str(phantom / "lr.npy")
    code, _, err = run(capsys, "estimate-kernel", hr, lr, "--bootstrap", "20", "--support", "7",
                       "--out", str(k), "--quiet")  # fmt: skip
    assert code == 0, err
    side = json.loads(k.with_suffix(".json").read_text())
    assert side["bootstrap"]["replicates"] == 20 and side["bootstrap"]["seed"] == 0
    for axis, (lo, hi) in enumerate(side["fwhm_um_ci"]):  # None: an unbounded end
        assert (lo is None or lo <= side["fwhm_um"][axis]) and (hi is None or hi >= lo)
    assert set(side["alpha_sensitivity"]) == {"alpha", "fwhm_um_half_alpha", "fwhm_um_double_alpha"}
    code, _, err = run(capsys, "estimate-kernel", hr, lr, "--bootstrap", "3", "--out", str(k))
    assert code == 2 and err.startswith("error:") and "at least 10" in err, err
