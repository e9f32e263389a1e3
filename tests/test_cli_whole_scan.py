"""`super-resolve --mask` and `--device` on a whole (simulated) scan."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.cli import main
from boneframe.compartments import contour
from boneframe.device import cuda_available
from boneframe.io import read_volume, write_volume
from boneframe.whole_scan import simulate_scan


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    sim = simulate_scan((2, 448, 448), seed=4)
    scan = write_volume(sim.scan, folder / "scan.zarr")
    masks = contour(sim.scan)
    mask = write_volume(masks["periosteal"], folder / "periosteal.nii.gz")
    kernel = sim.kernel.save(folder / "k.npy")
    return scan, mask, kernel


def test_super_resolve_inside_a_mask_block_by_block(files, tmp_path, capsys) -> None:
    scan, mask, kernel = files
    out = tmp_path / "sr.zarr"
    code = main(["super-resolve", str(scan), "--kernel", str(kernel), "--mask", str(mask),
                 "--out", str(out), "--max-iter", "5"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "blocks solved" in captured.out and "blocks, " in captured.err  # progress
    sr, lr = read_volume(out), read_volume(scan)
    assert sr.voxel_size == (41.0,) * 3 and sr.shape == tuple(2 * n for n in lr.shape)
    assert sr.metadata["calibration_slope"] == pytest.approx(lr.metadata["calibration_slope"])
    solved, total = sr.metadata["blocks_solved"]
    assert 0 < solved < total
    assert np.isfinite(sr.numpy()).all()


def test_a_mask_of_another_grid_and_cuda_without_a_gpu_are_one_error_line(
    files, tmp_path, capsys
) -> None:
    scan, mask, kernel = files
    other = write_volume(read_volume(mask).with_data(read_volume(mask).numpy()[:, :-3]),
                         tmp_path / "cut.npy")  # fmt: skip
    capsys.readouterr()
    code = main(["super-resolve", str(scan), "--kernel", str(kernel), "--mask", str(other),
                 "--out", str(tmp_path / "a.zarr")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "a.zarr").exists()
    if not cuda_available():
        whole = read_volume(scan)
        lr = write_volume(whole.with_data(whole.numpy()), tmp_path / "l.npy")
        code = main(["super-resolve", str(lr), "--kernel", str(kernel), "--device", "cuda",
                     "--out", str(tmp_path / "b.npy")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "boneframe[gpu]" in err
    code = main(["super-resolve", str(scan), "--kernel", str(kernel), "--device", "tpu",
                 "--out", str(tmp_path / "c.zarr")])  # fmt: skip
    assert code == 2 and "device" in capsys.readouterr().err
