"""Phantom: shapes, BV/TV, determinism, the simulated acquisition."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.operators import ForwardModel
from boneframe.phantom import gaussian_kernel, simulate_acquisition, simulate_pair


def test_gaussian_kernel_moments():
    h = gaussian_kernel((1.5, 1.0, 0.8), (13, 11, 9), shift=(0.5, -0.25, 0.0), gain=0.9)
    assert h.shape == (13, 11, 9)
    assert h.sum() == pytest.approx(0.9)
    idx = np.indices(h.shape)
    centroid = [(h * idx[a]).sum() / h.sum() for a in range(3)]
    assert np.allclose(centroid, (6.5, 4.75, 4.0), atol=1e-3)
    var0 = (h * (idx[0] - centroid[0]) ** 2).sum() / h.sum()
    assert var0 == pytest.approx(1.5**2, rel=1e-3)


@pytest.mark.parametrize("p", [2, (2, 2, 1)])
def test_shapes_and_dtypes(p):
    pair = simulate_pair((24, 24, 20), 0, p=p, noise=0.01)
    expected_lr = (12, 12, 10) if p == 2 else (12, 12, 20)
    assert pair.hr.shape == (24, 24, 20) and pair.lr.shape == expected_lr
    assert pair.hr.dtype == np.float32 and pair.lr.dtype == np.float32


@pytest.mark.parametrize(("bv_tv", "thickness"), [(0.1, 2.0), (0.25, 3.0), (0.35, 5.0)])
def test_bv_tv_is_reached(bv_tv, thickness):
    pair = simulate_pair(48, 1, bv_tv=bv_tv, thickness=thickness)
    assert pair.params["bv_tv"] == pytest.approx(bv_tv, rel=0.05)


def test_same_seed_same_bytes_other_seed_differs():
    a, b, c = (simulate_pair(32, s, noise=0.01) for s in (7, 7, 8))
    assert a.hr.tobytes() == b.hr.tobytes() and a.lr.tobytes() == b.lr.tobytes()
    assert a.hr.tobytes() != c.hr.tobytes()


def test_acquisition_matches_forward_model_and_sees_beyond_the_crop():
    pair = simulate_pair(32, 2, offset=0.1, noise=0.0)
    h, m = pair.kernel, pair.params["margin"][0]
    # border LR voxels differ from a zero-padded simulation of the crop alone
    naive = ForwardModel(h, 2, pair.hr.shape).predict(pair.hr.astype(float), 0.1)
    assert np.abs(naive[0] - pair.lr[0]).max() > 1e-3
    # interior voxels equal it
    assert np.allclose(naive[3:-3, 3:-3, 3:-3], pair.lr[3:-3, 3:-3, 3:-3], atol=1e-5)
    assert m % 2 == 0 and m >= h.shape[0] // 2


def test_noise_level():
    clean = simulate_pair(32, 3, noise=0.0)
    noisy = simulate_pair(32, 3, noise=0.02)
    assert np.std(noisy.lr - clean.lr) == pytest.approx(0.02, rel=0.1)


def test_bad_parameters():
    with pytest.raises(InputError, match="multiple of p"):
        simulate_pair(33)
    with pytest.raises(InputError, match="bv_tv"):
        simulate_pair(32, bv_tv=0.9)
    with pytest.raises(InputError, match="odd"):
        gaussian_kernel(1.0, 4)
    with pytest.raises(InputError, match="margin"):
        simulate_acquisition(np.zeros((20, 20, 20)), np.ones((9, 9, 9)), margin=2)


def test_shading_multiplies_the_scan_by_a_linear_gain():
    from boneframe.phantom import shading_field, simulate_pair

    field = shading_field((2, 3, 5), 0.2)
    assert field.shape == (1, 1, 5)
    np.testing.assert_allclose(field.ravel(), [0.8, 0.9, 1.0, 1.1, 1.2])
    flat = simulate_pair(24, 3, noise=0.0)
    shaded = simulate_pair(24, 3, noise=0.0, shading=0.2)
    np.testing.assert_array_equal(shaded.hr, flat.hr)
    np.testing.assert_allclose(shaded.lr, flat.lr * shading_field(flat.lr.shape, 0.2), rtol=1e-6)
    assert shaded.params["shading"] == 0.2
    with pytest.raises(InputError, match="shading"):
        shading_field((4, 4, 4), 1.0)
