"""Spatially variant kernels: the partition of unity, the variant blur, regional
estimates, their files, and the phantom whose blur widens across the field of view."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.kernel import Kernel
from boneframe.kernel.regional import RegionalKernel, axis_positions, load_kernel
from boneframe.kernel.regional_estimate import estimate_regional_kernels, region_boxes
from boneframe.kernel.summary import summarize_kernel
from boneframe.operators import Blur, dottest
from boneframe.operators.partition import hat_weights, region_weight
from boneframe.operators.variant import VariantBlur
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.phantom_variation import KernelVariation, widen_kernel


def test_hat_weights_by_hand():
    w = hat_weights([10.0, 20.0, 40.0], [0.0, 10.0, 15.0, 25.0, 40.0, 50.0])
    expected = np.array(
        [
            [1.0, 1.0, 0.5, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.75, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.25, 1.0, 1.0],
        ]
    )
    np.testing.assert_allclose(w, expected, atol=1e-15)
    np.testing.assert_allclose(hat_weights([3.0], [-1.0, 7.0]), [[1.0, 1.0]])
    with pytest.raises(InputError, match="increasing"):
        hat_weights([2.0, 1.0], [0.0])


def test_region_weights_are_a_partition_of_unity():
    ws = [
        hat_weights(c, np.linspace(-3, 12, n))
        for c, n in (([0.0, 9.0], 7), ([4.0], 5), ([1.0, 5.0, 8.0], 9))
    ]
    total = sum(region_weight(ws, i) for i in np.ndindex(2, 1, 3))
    np.testing.assert_allclose(total, 1.0, atol=1e-14)


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_variant_blur_adjoint(boundary, rng):
    shape = (6, 9, 10)
    kernels = [rng.random((3, 3, 5)) for _ in range(4)]
    ws = [hat_weights([0.0], np.arange(6)), hat_weights([2.0, 6.0], np.arange(9)),
          hat_weights([1.0, 8.0], np.arange(10))]  # fmt: skip
    op = VariantBlur(kernels, ws, shape, boundary=boundary, dtype=np.float64)
    assert dottest(op, rng=0) < 1e-12


def test_variant_blur_of_one_kernel_is_the_blur(rng):
    shape = (6, 7, 8)
    h = rng.random((3, 3, 3))
    ws = [hat_weights([0.0, 5.0], np.arange(6)), hat_weights([3.0], np.arange(7)),
          hat_weights([0.0, 3.0, 7.0], np.arange(8))]  # fmt: skip
    x = rng.random(shape)
    op = VariantBlur([h] * 6, ws, shape, dtype=np.float64)
    np.testing.assert_allclose(op.matvec(x), Blur(h, shape, dtype=np.float64).matvec(x), atol=1e-13)


def test_variant_blur_is_each_kernel_at_its_centre(rng):
    # at a region centre the blend is that region's kernel alone
    shape = (5, 5, 12)
    hs = [rng.random((3, 3, 3)) for _ in range(2)]
    ws = [np.ones((1, 5)), np.ones((1, 5)), hat_weights([2.0, 9.0], np.arange(12))]
    x = rng.random(shape)
    out = VariantBlur(hs, ws, shape, dtype=np.float64).matvec(x)
    for h, c in zip(hs, (2, 9), strict=True):
        np.testing.assert_allclose(out[..., c], Blur(h, shape, dtype=np.float64).matvec(x)[..., c])


def test_region_boxes_tile_the_volume():
    grid, boxes = region_boxes((10, 7, 9), (2, 1, 3))
    assert grid == (2, 1, 3) and len(boxes) == 6
    covered = np.zeros((10, 7, 9), int)
    for box in boxes:
        covered[tuple(slice(a, b) for a, b in box)] += 1
    assert np.all(covered == 1)
    with pytest.raises(InputError, match="more regions than voxels"):
        region_boxes((4, 4, 4), (1, 1, 5))
    with pytest.raises(InputError, match="positive"):
        region_boxes((4, 4, 4), (1, 0, 2))


def test_widen_kernel_scales_a_gaussian():
    h = gaussian_kernel(1.0, 9)
    wide = widen_kernel(h, 1.5, (13, 13, 13))
    ratio = np.array(summarize_kernel(wide, 1.0)["fwhm_um"]) / np.array(
        summarize_kernel(h, 1.0)["fwhm_um"]
    )
    np.testing.assert_allclose(ratio, 1.5, rtol=0.02)
    assert wide.sum() == pytest.approx(h.sum())
    with pytest.raises(InputError):
        widen_kernel(h, 0.5, (9, 9, 9))


def test_phantom_without_variation_is_unchanged():
    a = simulate_pair(16, 2, noise=0.01)
    b = simulate_pair(16, 2, noise=0.01, kernel_variation=1.0)
    assert np.array_equal(a.lr, b.lr) and a.variation is None


def test_phantom_variation_widens_the_blur_along_x():
    pair = simulate_pair(32, 1, noise=0.0, kernel_variation=2.0)
    truth = pair.regional_truth((1, 1, 3))
    fw = np.array([r["fwhm_um"] for r in truth.region_summaries()])
    assert np.all(np.diff(fw, axis=0) > 0)  # every axis widens from region to region
    with pytest.raises(InputError, match=">= 1"):
        KernelVariation(gaussian_kernel(1.0, 5), 0.8, 100.0)


@pytest.fixture(scope="module")
def varying():
    pair = simulate_pair(48, 3, noise=0.01, kernel_variation=1.8)
    hr, lr = pair.volumes()
    return pair, estimate_regional_kernels(hr, lr, (1, 1, 2), support=11)


def test_regional_estimate_follows_the_true_regional_kernels(varying):
    pair, reg = varying
    truth = pair.regional_truth(reg)  # at the estimate's centres
    est = np.array([r["fwhm_um"] for r in reg.region_summaries()])
    tru = np.array([r["fwhm_um"] for r in truth.region_summaries()])
    assert np.all(est[1] > est[0])
    np.testing.assert_allclose(est, tru, rtol=0.08)
    # centres of the fitted voxels, LR 3..12 and 12..21 of 82 µm: a support of 11
    # reaches 3 LR voxels beyond the volume's faces (each box's margin adds a voxel)
    np.testing.assert_allclose([c[2] for c in reg.centres_um], [7.5 * 82, 16.5 * 82])


def test_regional_file_round_trip(varying, tmp_path):
    _, reg = varying
    for name in ("k.npy", "k.zarr"):
        path = reg.save(tmp_path / name)
        back = load_kernel(path)
        assert isinstance(back, RegionalKernel)
        np.testing.assert_allclose(back.arrays, reg.arrays)
        assert back.grid == reg.grid and back.lr_boxes == reg.lr_boxes
        np.testing.assert_allclose(back.offsets, reg.offsets)
        side = back.sidecar()
        assert side["kind"] == "regional" and len(side["regions"]) == 2
        for key in ("fwhm_um", "centre_um", "gain", "offset", "index", "lr_box"):
            assert key in side["regions"][0]
        with pytest.raises(InputError, match="load_kernel"):
            Kernel.load(path)
    single = Kernel(gaussian_kernel(1.0, 5), voxel_size=(41.0,) * 3)
    assert isinstance(load_kernel(single.save(tmp_path / "one.npy")), Kernel)


def test_regional_kernel_checks():
    k = Kernel(gaussian_kernel(1.0, 5), voxel_size=(41.0,) * 3)
    with pytest.raises(InputError, match="needs 2 kernels"):
        RegionalKernel([k], (1, 1, 2), [((0, 1),) * 3], [(0.0, 0.0, 0.0)], (4, 4, 4))
    with pytest.raises(InputError, match="increasing"):
        RegionalKernel([k, k], (1, 1, 2), [((0, 1),) * 3] * 2, [(0.0, 0.0, 5.0), (0.0, 0.0, 1.0)],
                       (4, 4, 4))  # fmt: skip


def test_axis_positions_follow_the_geometry():
    pos = axis_positions((2, 3, 4), (10.0, 20.0, 30.0), origin=(1.0, 2.0, 3.0), start=(0, -1, 2))
    # default direction: array axis 0 is world z (origin[2]), axis 2 is world x (origin[0])
    np.testing.assert_allclose(pos[0], [3.0, 13.0])
    np.testing.assert_allclose(pos[1], [-18.0, 2.0, 22.0])
    np.testing.assert_allclose(pos[2], [61.0, 91.0, 121.0, 151.0])
