"""TV super-resolution on simulated bone: better than spline upsampling, scale-free."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from boneframe.errors import InputError
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.superres import SuperResolution, super_resolve, upsample_spline

INTERIOR = (slice(8, -8),) * 3


def psnr(f, estimate):
    """The paper's PSNR over the interior (8 voxels from each face)."""
    f, e = f[INTERIOR].astype(np.float64), estimate[INTERIOR].astype(np.float64)
    return -10 * np.log10(np.mean((f - e) ** 2) / (f.max() - f.min()) ** 2)


def dice(f, estimate):
    """DICE of the Otsu-binarised interiors."""
    a, b = f[INTERIOR], estimate[INTERIOR]
    a, b = a > threshold_otsu(a), b > threshold_otsu(b)
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(64, 0, noise=0.01)


@pytest.fixture(scope="module")
def result(pair):
    return super_resolve(pair.lr, pair.kernel, offset=pair.offset, p=pair.p)


def _baseline(pair):
    return upsample_spline(pair.lr, pair.p, float(pair.kernel.sum()), pair.offset)


def test_beats_spline_upsampling_with_the_defaults(pair, result):
    assert isinstance(result, SuperResolution)
    assert result.array.shape == pair.hr.shape and result.array.dtype == np.float32
    assert result.converged and 1 < result.iterations < 300
    base = _baseline(pair)
    assert psnr(pair.hr, result.array) >= psnr(pair.hr, base) + 2.5
    assert dice(pair.hr, result.array) > dice(pair.hr, base) + 0.03


def test_the_defaults_are_scale_free(pair, result):
    big = super_resolve(1000 * pair.lr, pair.kernel, offset=1000 * pair.offset, p=pair.p)
    assert big.iterations == result.iterations
    np.testing.assert_allclose(big.array / 1000, result.array, atol=1e-3)
    hr = 1000 * pair.hr
    assert psnr(hr, big.array) >= psnr(hr, 1000 * _baseline(pair)) + 2.5
    assert dice(hr, big.array) > dice(hr, 1000 * _baseline(pair))


def test_gain_offset_and_anisotropic_factor():
    kernel = gaussian_kernel((1.4, 1.1, 0.8), 7, shift=(0.2, 0.0, -0.3), gain=1.7)
    pair = simulate_pair((48, 48, 32), 1, kernel=kernel, offset=0.3, noise=0.01, p=(2, 2, 1))
    res = super_resolve(pair.lr, pair.kernel, offset=0.3, p=(2, 2, 1))
    base = _baseline(pair)
    assert res.array.shape == pair.hr.shape
    # f itself: the offset removed, the gain left in the model
    assert abs(np.median(res.array) - np.median(pair.hr)) < 0.05
    assert psnr(pair.hr, res.array) >= psnr(pair.hr, base) + 2.5
    assert dice(pair.hr, res.array) > dice(pair.hr, base)


def test_history_metrics_and_callback():
    pair = simulate_pair(32, 2, noise=0.01)
    seen = []

    def callback(it, volume, record):
        seen.append((it, volume.shape, record["psnr"]))

    res = super_resolve(pair.lr, pair.kernel, reference=pair.hr, max_iter=4, callback=callback)
    assert res.iterations == 4 and len(res.history) == 4 and not res.converged
    assert [s[0] for s in seen] == [1, 2, 3, 4] and seen[0][1] == pair.hr.shape
    assert {"psnr", "dice", "data", "augmented_lagrangian", "relative_change"} <= set(
        res.history[0]
    )
    # the default PSNR is the paper's on the whole volume
    f, e = pair.hr.astype(np.float64), res.array.astype(np.float64)
    expected = -10 * np.log10(np.mean((f - e) ** 2) / (f.max() - f.min()) ** 2)
    assert res.history[-1]["psnr"] == pytest.approx(expected, rel=1e-4)
    # any metric function, and no metrics without a reference
    custom = super_resolve(
        pair.lr, pair.kernel, reference=pair.hr, max_iter=2, metric_fn=lambda v: {"mean": v.mean()}
    )
    assert "mean" in custom.history[0] and "psnr" not in custom.history[0]
    assert "psnr" not in super_resolve(pair.lr, pair.kernel, max_iter=1).history[0]


def test_gradient_l2_regulariser_by_name():
    pair = simulate_pair(32, 3, noise=0.01)
    res = super_resolve(pair.lr, pair.kernel, regularizer="gradient-l2", max_iter=20)
    assert np.isfinite(res.array).all() and res.iterations >= 1


def test_upsample_spline_puts_hr_voxel_p_i_on_lr_voxel_i():
    rng = np.random.default_rng(0)
    g = rng.random((5, 6, 7))
    up = upsample_spline(g, p=(2, 3, 1), gain=2.0, offset=0.25)
    assert up.shape == (10, 18, 7) and up.dtype == np.float32
    np.testing.assert_allclose(up[::2, ::3, :], g / 2.0 - 0.25, atol=1e-6)
    # a linear ramp is reproduced between the samples (away from the mirrored border)
    ramp = np.broadcast_to(np.arange(16.0)[:, None, None], (16, 4, 4))
    np.testing.assert_allclose(upsample_spline(ramp)[12:18, 0, 0], np.arange(6, 9, 0.5), atol=1e-3)


def test_invalid_inputs_are_refused():
    g = np.zeros((8, 8, 8), dtype=np.float32)
    h = gaussian_kernel(1.0, 3)
    with pytest.raises(InputError, match="3D"):
        super_resolve(g[0], h)
    with pytest.raises(InputError, match="NaN"):
        super_resolve(np.full_like(g, np.nan), h)
    with pytest.raises(InputError, match="reference"):
        super_resolve(g, h, reference=np.zeros((8, 8, 8)))
    with pytest.raises(InputError, match="gain"):
        super_resolve(g, h - h.mean())
    with pytest.raises(InputError, match="odd"):
        super_resolve(g, np.ones((2, 3, 3)))
    with pytest.raises(InputError):
        upsample_spline(g, gain=0.0)


@pytest.mark.parametrize("p", [(2, 2, 2), (2, 3, 1)])
def test_upsample_spline_equals_the_3d_affine_transform(p):
    import scipy.ndimage

    g = np.random.default_rng(1).random((6, 7, 5))
    shape = tuple(n * q for n, q in zip(g.shape, p, strict=True))
    expected = scipy.ndimage.affine_transform(
        g, np.array([1.0 / q for q in p]), output_shape=shape, order=3, mode="mirror"
    )
    np.testing.assert_allclose(upsample_spline(g, p), expected, atol=1e-6)


def test_problem_from_scan_normalises_pads_and_crops():
    from boneframe.regularizers.tv import TV
    from boneframe.superres import GREY_RANGE, SuperResolutionProblem, padding_width

    rng = np.random.default_rng(2)
    g = 7.0 + 50.0 * rng.random((10, 12, 8))
    h = gaussian_kernel(1.0, 5, gain=2.0)
    problem = SuperResolutionProblem.from_scan(g, h, offset=1.5, regularizer=TV())
    assert padding_width(h.shape, 2) == problem.padding == (1 + 2, 1 + 2, 1 + 2)
    assert np.sum(problem.kernel) == pytest.approx(1.0)
    lo = [m for m in problem.padding]
    inner = problem.g[lo[0] : lo[0] + 10, lo[1] : lo[1] + 12, lo[2] : lo[2] + 8]
    np.testing.assert_allclose(inner / problem.scale, g / 2.0 - 1.5, rtol=1e-5)
    spread = np.subtract(*np.percentile(g / 2.0 - 1.5, [99.5, 0.5]))
    assert problem.scale == pytest.approx(GREY_RANGE / spread)
    # the padded sizes are FFT-friendly multiples of p, and the crop lands on voxel p*i
    assert all(n % 2 == 0 for n in problem.shape)
    x = problem.initial_estimate()
    np.testing.assert_allclose(problem.estimate(x)[::2, ::2, ::2], g / 2.0 - 1.5, rtol=1e-4)
