"""Spatially variant kernels: one kernel per region finds a blur that changes across x."""

from __future__ import annotations

import numpy as np
import pytest
from boneframe_localmi.regional import regional_kernels

from boneframe.errors import InputError
from boneframe.phantom import gaussian_kernel, simulate_pair

NARROW = gaussian_kernel((1.2, 1.2, 1.0), 9)
WIDE = gaussian_kernel((1.2, 1.2, 1.8), 9)


@pytest.fixture(scope="module")
def varying_pair():
    # the same structure (same seed) seen through two kernels; x < 12 narrow, x >= 12 wide
    a = simulate_pair(48, 3, kernel=NARROW, noise=0.01)
    b = simulate_pair(48, 3, kernel=WIDE, noise=0.01)
    assert np.array_equal(a.hr, b.hr)
    lr = a.lr.copy()
    lr[..., 12:] = b.lr[..., 12:]
    return a.hr, lr


def test_regional_kernels_follow_the_blur_across_x(varying_pair):
    hr, lr = varying_pair
    reg = regional_kernels(hr, lr, (1, 1, 2), similarity="l2")
    fw = reg.fwhm()
    assert reg.kernels().shape == (1, 1, 2, 9, 9, 9) and fw.shape == (1, 1, 2, 3)
    true_x = 2.3548 * 41.0 * np.array([1.0, 1.8])  # FWHM of the Gaussians, µm
    print("\n" + reg.report())
    np.testing.assert_allclose(fw[0, 0, :, 2], true_x, rtol=0.15)
    # z and y are the same in both halves
    assert abs(fw[0, 0, 0, 0] / fw[0, 0, 1, 0] - 1) < 0.1
    assert "range over regions" in reg.report()
    assert reg.deviation().max() > 0.1


def test_regional_kernels_errors(varying_pair):
    hr, lr = varying_pair
    with pytest.raises(InputError, match="grid"):
        regional_kernels(hr, lr, (1, 0, 2), similarity="l2")
    with pytest.raises(InputError, match="region"):
        regional_kernels(hr, lr, (1, 1, 12), similarity="l2")
