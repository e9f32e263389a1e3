"""Metrics inside a mask: against independent numpy/scipy computations on the masked voxels,
chunked (dask, zarr) equal to in memory, a scan's mask on its super-resolution, the CLI."""

from __future__ import annotations

import json
import math

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from boneframe.cli import main
from boneframe.errors import InputError
from boneframe.metrics import local_thickness, measure
from boneframe.phantom import micro_ct, trabecular_occupancy
from boneframe.volume import Volume

VS = 41.0
SLOPE, INTERCEPT = 1000.0, -150.0  # stored grey 0.15..1 -> 0..850 mg HA/cm³
INTEGERS = ("euler", "betti0", "betti1", "betti2")


@pytest.fixture(scope="module")
def scan() -> Volume:
    occupancy = trabecular_occupancy(40, 3)
    grey = micro_ct(occupancy, noise=0.02, seed=1)
    meta = {"calibration_slope": SLOPE, "calibration_intercept": INTERCEPT}
    return Volume(grey, voxel_size=VS, metadata=meta)


@pytest.fixture(scope="module")
def ball() -> np.ndarray:
    z, y, x = np.indices((40, 40, 40))
    return (z - 19.5) ** 2 + (y - 21) ** 2 + (x - 18) ** 2 < 15.5**2


def betti(bone: np.ndarray) -> tuple[int, int, int]:
    """(χ, β0, β2) of a binary volume: scikit-image's χ, scipy's labellings."""
    from skimage.measure import euler_number

    chi = euler_number(bone, connectivity=3)
    beta0 = ndimage.label(bone, structure=np.ones((3, 3, 3)))[1]
    labels, n = ndimage.label(~bone)  # 6-connected marrow
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                       labels[:, :, [0, -1]].ravel()]))  # fmt: skip
    beta2 = n - np.count_nonzero(border)
    return chi, beta0, beta2


def test_inside_a_mask_equals_numpy_on_the_masked_voxels(scan, ball):
    m = measure(scan, mask=ball)
    bone = (scan.data > m["threshold"]) & ball
    voxels = np.count_nonzero(ball)
    assert m["bv_tv"] == np.count_nonzero(bone) / voxels  # exactly
    tv = voxels * VS**3 * 1e-9
    assert m["tv_mm3"] == pytest.approx(tv, rel=1e-12) and m["units"]["tv_mm3"] == "mm³"
    density = scan.data.astype(np.float64) * SLOPE + INTERCEPT
    assert abs(m["bmd"] - density[ball].mean()) < 0.1 and m["units"]["bmd"] == "mg HA/cm³"
    chi, beta0, beta2 = betti(bone)
    assert (m["euler"], m["betti0"], m["betti2"]) == (chi, beta0, beta2)
    assert m["conn_d"] == pytest.approx((beta0 + beta2 - chi) / tv, rel=1e-12)
    assert m["betti1"] > 0 and m["conn_d_bonej"] is None  # its edge correction is the box's
    # BoneJ's convention: the thickness of the bone inside the mask; the marrow's, limited to it
    tb_th = local_thickness(bone, VS).mean
    tb_sp = local_thickness(ball & ~bone, VS).mean
    assert m["tb_th"] == pytest.approx(tb_th, rel=1e-9)
    assert m["tb_sp"] == pytest.approx(tb_sp, rel=1e-9)
    assert m["tb_n"] == pytest.approx(1000.0 / (tb_th + tb_sp), rel=1e-9)
    assert set(m["skipped"]) == {"psnr", "dice", "conn_d_bonej"}


def test_marrow_spacing_ends_at_the_mask(scan):
    plates = np.zeros((30, 30, 28), bool)
    plates[:, :, 0:4] = plates[:, :, 24:28] = True  # a 20-voxel marrow gap between plates
    whole = measure(plates, voxel_size=10.0, names=["tb_sp"])["tb_sp"]
    slab = np.zeros_like(plates)
    slab[:, :, 4:10] = True  # a mask 6 voxels deep into the gap
    inside = measure(plates, mask=slab, voxel_size=10.0, names=["tb_sp", "tb_th"])
    assert whole == pytest.approx(200.0, rel=0.05) and inside["tb_sp"] == pytest.approx(60.0)
    assert inside["tb_th"] is None and "bone" in inside["skipped"]["tb_th"]  # no bone inside


def test_da_inside_a_mask_ignores_its_boundary():
    plates = np.zeros((40, 40, 40), bool)
    for start in range(2, 40, 8):
        plates[:, :, start : start + 3] = True
    z, y, x = np.indices(plates.shape)
    ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 < 18**2
    names = ["da"]
    inside = measure(plates, mask=ball, voxel_size=10.0, names=names)["da"]
    cut_out = measure(plates & ball, voxel_size=10.0, names=names)["da"]  # its surface counts
    assert inside > 0.99 and cut_out < inside - 0.03


def assert_same(chunked: dict, memory: dict) -> None:
    assert list(chunked) == list(memory)
    for key, want in memory.items():
        got = chunked[key]
        if key in INTEGERS or not isinstance(want, float):
            assert got == want, (key, got, want)
        else:
            assert math.isclose(got, want, rel_tol=1e-12), (key, got, want)


def test_chunked_and_zarr_equal_in_memory(scan, ball, tmp_path):
    from boneframe.io import read_volume, write_volume

    memory = measure(scan, mask=ball, names=None, structure=True)
    lazy = scan.with_data(da.from_array(scan.data, chunks=(16, 20, 13)))
    chunked = measure(lazy, mask=da.from_array(ball, chunks=8))
    whole = {"da", "mil_ratio"}  # no chunk-by-chunk form: not loaded by default
    assert {k for k, why in chunked["skipped"].items() if "chunk-by-chunk" in why} == whole
    strip = lambda m: {k: v for k, v in m.items() if k not in whole | {"skipped"}}  # noqa: E731
    assert_same(strip(chunked), strip(memory))
    path = write_volume(lazy, tmp_path / "scan.zarr")
    mask_path = write_volume(scan.with_data(ball.astype(np.uint8), metadata={}),
                             tmp_path / "ball.zarr")  # fmt: skip
    from_zarr = measure(read_volume(path), mask=read_volume(mask_path), names=["bv_tv", "bmd"])
    assert read_volume(path).is_lazy and from_zarr["bv_tv"] == memory["bv_tv"]
    assert from_zarr["bmd"] == pytest.approx(memory["bmd"], rel=1e-12)


def test_a_scan_mask_measures_its_super_resolution(scan, ball):
    from boneframe.superres import upsample_spline

    lr = Volume(scan.data[::2, ::2, ::2], voxel_size=2 * VS, metadata=scan.metadata)
    mask = Volume(ball[::2, ::2, ::2], voxel_size=2 * VS)
    sr = upsample_spline(lr, 2)  # the p-times finer grid, boneframe's origin convention
    m = measure(sr, mask=mask, names=["bv_tv", "tv_mm3"], threshold=0.5)
    on_sr = mask.data.repeat(2, 0).repeat(2, 1).repeat(2, 2)  # SR voxel j in LR voxel j // 2
    assert m["bv_tv"] == np.count_nonzero((sr.data > 0.5) & on_sr) / np.count_nonzero(on_sr)
    assert m["tv_mm3"] == pytest.approx(np.count_nonzero(mask.data) * (2 * VS) ** 3 * 1e-9)
    other = Volume(ball[::2, ::2, ::2], voxel_size=2 * VS, origin=(0.0, 0.0, 10 * VS))
    with pytest.raises(InputError, match="Mask: shape .*Volume: shape"):
        measure(sr, mask=other, names=["bv_tv"])


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_metrics_inside_a_mask(scan, ball, tmp_path, capsys):
    from boneframe.io import write_volume

    path = write_volume(scan, tmp_path / "scan.zarr")  # calibration kept in its attributes
    mask_path = write_volume(Volume(ball.astype(np.uint8), voxel_size=VS), tmp_path / "m.nii.gz")
    names = ["bv_tv", "tv_mm3", "bmd", "conn_d"]
    api = measure(scan, mask=ball, structure=False)
    code, out, err = run(capsys, "metrics", str(path), "--mask", str(mask_path), "--json",
                         "--no-structure")  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    for name in names:
        assert got[name] == pytest.approx(api[name], rel=1e-6), name
    code, out, err = run(capsys, "metrics", str(path), "--mask", str(mask_path), "--json",
                         "--no-structure", "--segmentation", "gauss-threshold",
                         "--param", "threshold=300", "--param", "sigma=1.0")  # fmt: skip
    assert code == 0, err
    seg = json.loads(out)
    assert seg["segmentation"] == {"name": "gauss-threshold", "sigma": 1.0, "support": 1,
                                   "threshold": 300.0}  # fmt: skip
    assert seg["threshold"] is None and seg["bmd"] == got["bmd"]
    shifted = write_volume(Volume(ball.astype(np.uint8), voxel_size=VS, origin=(0, 0, 5 * VS)),
                           tmp_path / "s.nii.gz")  # fmt: skip
    code, _, err = run(capsys, "metrics", str(path), "--mask", str(shifted))
    assert code == 2 and err.startswith("error: the mask does not fit") and err.count("\n") == 1
    code, _, err = run(capsys, "metrics", str(path), "--param", "sigma=1")
    assert code == 2 and "--segmentation" in err
