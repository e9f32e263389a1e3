"""Kernel summaries against Gaussians with analytic FWHM and MTF."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.kernel.summary import fwhm, line_spread, mtf, mtf_crossing, summarize_kernel
from boneframe.phantom import gaussian_kernel

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548


def analytic_mtf_crossing(sigma_vox: float, level: float, voxel_um: float) -> float:
    """exp(-2 pi² sigma² nu²) = level, in lp/mm."""
    nu = np.sqrt(-np.log(level) / 2.0) / (np.pi * sigma_vox)
    return nu * 1000.0 / voxel_um


def test_triangle_by_hand() -> None:
    # a box of 5 ones: its band-limited interpolant crosses half height
    # half a sample outside the box's end samples -> FWHM 5 within a few %
    assert fwhm(np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])) == pytest.approx(
        5.0, rel=0.03
    )
    # a profile that never falls to half its maximum has no FWHM
    assert np.isnan(fwhm(np.array([1.0, 1.0, 1.0])))


def test_delta_kernel() -> None:
    h = np.zeros((5, 5, 5))
    h[2, 2, 2] = 2.0
    out = summarize_kernel(h, 50.0)
    assert out["gain"] == 2.0
    assert out["centroid"]["voxels"] == [0.0, 0.0, 0.0]
    # a perfect system: the MTF stays at 1 up to Nyquist
    assert out["mtf50_lpmm"] == [None, None, None]
    assert out["mtf10_lpmm"] == [None, None, None]


@pytest.mark.parametrize("sigma", [(1.5, 1.2, 2.0), (1.0, 1.8, 1.3)])
def test_gaussian_matches_analytic(sigma) -> None:
    vs = (41.0, 41.0, 20.0)
    shift = (0.3, 0.0, -0.5)
    h = gaussian_kernel(sigma, (15, 15, 21), shift=shift, gain=0.9)
    out = summarize_kernel(h, vs)
    assert out["gain"] == pytest.approx(0.9)
    np.testing.assert_allclose(out["centroid"]["voxels"], shift, atol=1e-4)
    np.testing.assert_allclose(out["centroid"]["um"], np.multiply(shift, vs), atol=1e-2)
    fw = FWHM_PER_SIGMA * np.multiply(sigma, vs)
    np.testing.assert_allclose(out["fwhm_um"], fw, rtol=0.006)
    for key, level in (("mtf50_lpmm", 0.5), ("mtf10_lpmm", 0.1)):
        expected = [analytic_mtf_crossing(s, level, v) for s, v in zip(sigma, vs, strict=True)]
        np.testing.assert_allclose(out[key], expected, rtol=1e-3)
    json.dumps(out)


def test_mtf_helpers() -> None:
    freqs, values = mtf(np.array([0.25, 0.5, 0.25]))
    # the 1-2-1 filter has MTF cos²(pi nu): 1/2 at nu = 1/4 cycle/voxel
    np.testing.assert_allclose(values, np.cos(np.pi * freqs) ** 2, atol=1e-12)
    assert mtf_crossing(freqs, values, 0.5) == pytest.approx(0.25, abs=1e-4)
    assert line_spread(np.ones((2, 3, 4)), 1).tolist() == [8.0, 8.0, 8.0]


def test_bad_input() -> None:
    with pytest.raises(InputError, match="odd"):
        summarize_kernel(np.ones((4, 5, 5)), 41.0)
    with pytest.raises(InputError, match="positive"):
        summarize_kernel(np.ones((3, 3, 3)), (41.0, 0.0, 41.0))
    h = np.zeros((3, 3, 3))
    h[0, 1, 1], h[2, 1, 1] = 1.0, -1.0
    with pytest.raises(InputError, match="sums to zero"):
        summarize_kernel(h, 41.0)
