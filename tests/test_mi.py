"""Negative mutual information: literal formula, gradients, invariances, kernel minimum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import BSpline
from scipy.signal import fftconvolve

from boneframe.errors import InputError
from boneframe.operators import decimate_adjoint, forward_model, valid_lr_slices
from boneframe.parzen import node_window
from boneframe.phantom import DEFAULT_SHIFT, DEFAULT_SIGMA, gaussian_kernel, simulate_pair
from boneframe.similarity.l2 import L2
from boneframe.similarity.mi import MutualInformation


def _bin_coordinates(x: np.ndarray, bins: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return (bins - 1) * (x - x.min()) / (x.max() - x.min())


def _placed(u: np.ndarray, g: np.ndarray, bins: int) -> np.ndarray:
    """Bin coordinates of u: matched to g's mean and std and binned over g's range
    (clipped to the grid)."""
    u, g = np.ravel(u).astype(np.float64), np.ravel(g).astype(np.float64)
    matched = g.mean() + g.std() * (u - u.mean()) / u.std()
    return np.clip((bins - 1) * (matched - g.min()) / (g.max() - g.min()), 0, bins - 1)


def _gauss(t: np.ndarray, beta: float) -> np.ndarray:
    return np.exp(-(t**2) / beta**2)


def _mi_literal(u, g, bins: int, beta: float, window=None) -> float:
    """-MI straight from the definition: every voxel against every pair of bins.

    ``window(a, i)`` is the Parzen window of a sample at bin coordinate ``a`` for
    bin ``i``; the default is the Gaussian ``exp(-(a - i)^2 / beta^2)``.
    """
    a, b = _placed(u, g, bins), _bin_coordinates(g, bins)
    centres = np.arange(bins)
    if window is None:
        wa, wb = _gauss(a[:, None] - centres, beta), _gauss(b[:, None] - centres, beta)
    else:
        wa, wb = window(a, centres), window(b, centres)
    q = (wa[:, :, None] * wb[:, None, :]).sum(axis=0)  # N x B x B, small volumes only
    p = q / q.sum()
    pu, pg = p.sum(axis=1), p.sum(axis=0)
    mass = p > 0  # 0 log 0 = 0 (a clipped window can leave empty cells)
    return -float(np.sum(p[mass] * np.log(p[mass] / np.outer(pu, pg)[mass])))


def _interpolated_window(beta: float, s: int):
    """The window the splatting estimator uses: node values at (k - 1)/s interpolated
    by a quadratic B-spline (scipy's, an independent implementation)."""

    def window(a: np.ndarray, centres: np.ndarray) -> np.ndarray:
        count = s * (len(centres) - 1) + 3
        tau = (np.arange(count) - 1.0) / s
        knots = (np.arange(count + 3) - 2.5) / s  # each basis centred on its node
        return np.stack(
            [BSpline(knots, node_window(tau - i, beta, s), 2)(a) for i in centres], axis=1
        )

    return window


@pytest.fixture
def small_pair(rng) -> tuple[np.ndarray, np.ndarray]:
    """A dependent, non-linear, noisy pair on a 7 x 6 x 5 grid."""
    g = rng.random((7, 6, 5))
    u = np.sin(3.0 * g) + 0.2 * rng.standard_normal(g.shape)
    return u, g


@pytest.fixture(scope="module")
def phantom():
    """Prediction with the true kernel and the LR scan on the valid region (size 48)."""
    pair = simulate_pair(size=48, seed=0, noise=0.01)
    g = pair.lr[valid_lr_slices(pair.hr.shape, pair.kernel.shape, 2)].astype(np.float64)
    return pair, forward_model(pair.hr, pair.kernel, 0.0, 2, "valid"), g


def test_defaults_and_flags():
    mi = MutualInformation()
    assert (mi.params.bins, mi.params.parzen_width, mi.params.oversampling) == (128, 1.5, 2)
    assert mi.params.method == "splat"
    assert MutualInformation.name == "mi"
    assert MutualInformation.scale_sensitive is False
    assert MutualInformation.quadratic is False


@pytest.mark.parametrize(("bins", "beta"), [(8, 0.7), (16, 1.0), (32, 1.5)])
def test_exact_mode_is_the_literal_formula(small_pair, bins, beta):
    u, g = small_pair
    mi = MutualInformation(bins=bins, parzen_width=beta, method="exact")
    ref = _mi_literal(u, g, bins, beta)
    assert mi(u, g) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(("bins", "beta", "s"), [(8, 0.7, 2), (16, 1.0, 4), (32, 1.5, 8)])
def test_splat_mode_is_the_literal_formula_with_its_window(small_pair, bins, beta, s):
    """Splatting + smoothing is exact for the spline-interpolated window."""
    u, g = small_pair
    mi = MutualInformation(bins=bins, parzen_width=beta, oversampling=s)
    ref = _mi_literal(u, g, bins, beta, _interpolated_window(beta, s))
    assert mi(u, g) == pytest.approx(ref, rel=1e-10)


def test_moments_placement_clips_outliers_to_the_grid_ends(small_pair):
    """A far outlier of u lands on the last bin (no gradient) instead of squeezing
    every other voxel into a few bins, as binning u by its own range would."""
    u, g = small_pair
    spiked = u.copy()
    spiked.flat[0] = u.max() + 50 * u.std()
    mi = MutualInformation(bins=16, method="exact")
    value, grad = mi.value_and_grad(spiked, g)
    assert value == pytest.approx(_mi_literal(spiked, g, 16, 1.5), rel=1e-10)
    # binned by its own range instead, the outlier squeezes the others together
    a, b = _bin_coordinates(spiked, 16), _bin_coordinates(g, 16)
    by_range = MutualInformation(bins=16, method="exact").information_and_slope(a, b, False)[0]
    assert abs(value) > 1.5 * abs(by_range)
    # its own slope is zero; it still moves the others through the mean and std
    eps = 1e-6
    e = np.zeros(u.size)
    e[0] = 1.0
    e = e.reshape(u.shape)
    fd = (mi(spiked + eps * e, g) - mi(spiked - eps * e, g)) / (2 * eps)
    assert grad.flat[0] == pytest.approx(fd, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("bad", [-0.2, np.nan, 7.6])
def test_splat_refuses_coordinates_off_the_grid(bad):
    """The compiled splat would index outside its grid: refused, not wrapped."""
    mi = MutualInformation(bins=8, oversampling=3)
    with pytest.raises(InputError, match="outside the grid or not finite"):
        mi.joint_histogram(np.array([bad, 1.0]), np.array([1.0, 2.0]))
    edge = np.array([0.0, 7.0, np.nextafter(7.0, 8.0)])  # rounding above B - 1 is fine
    assert mi.joint_histogram(edge, edge).sum() == pytest.approx(3.0)


def test_two_voxels_by_hand():
    """Two voxels at the ends of both ranges: P is known in closed form."""
    u = np.array([0.0, 1.0]).reshape(2, 1, 1)
    beta, bins = 1.0, 4
    w = _gauss(np.arange(bins) - 0.0, beta), _gauss(np.arange(bins) - 3.0, beta)
    q = np.outer(w[0], w[0]) + np.outer(w[1], w[1])
    p = q / q.sum()
    m = p.sum(axis=1)
    expected = -float(np.sum(p * np.log(p / np.outer(m, m))))
    got = MutualInformation(bins=bins, parzen_width=beta, method="exact")(u, 5.0 * u + 2.0)
    assert got == pytest.approx(expected, rel=1e-12)
    assert expected < -0.5  # the two clusters are well separated: MI near log 2


def test_splat_approximation_error(phantom, small_pair):
    """The fast estimator vs the literal Gaussian sums, values and gradients.

    Measured at the defaults (oversampling 2): value 5e-8, gradient 0.12 %.
    """
    gradient_error = 2.5e-3
    _, u, g = phantom
    exact = MutualInformation(method="exact")
    fast = MutualInformation()
    v_exact, g_exact = exact.value_and_grad(u, g)
    v_fast, g_fast = fast.value_and_grad(u, g)
    assert abs(v_fast - v_exact) <= 2e-6 * abs(v_exact)
    assert np.linalg.norm(g_fast - g_exact) <= gradient_error * np.linalg.norm(g_exact)
    # the error falls as 1/oversampling^2 (a linear splat's would halve only)
    finer = MutualInformation(oversampling=4).grad(u, g)
    assert np.linalg.norm(finer - g_exact) <= 0.35 * np.linalg.norm(g_fast - g_exact)
    # Few voxels: the bias correction cannot lean on averaging; still 1e-3.
    su, sg = small_pair
    assert fast(su, sg) == pytest.approx(exact(su, sg), rel=1e-3)


@pytest.mark.parametrize("method", ["splat", "exact"])
@pytest.mark.parametrize(("bins", "beta"), [(16, 1.0), (128, 1.5)])
def test_gradient_matches_finite_differences(rng, method, bins, beta):
    g = rng.random((9, 8, 7))
    u = np.sqrt(g) + 0.1 * rng.standard_normal(g.shape)
    mi = MutualInformation(bins=bins, parzen_width=beta, method=method)
    value, grad = mi.value_and_grad(u, g)
    assert value == mi(u, g)
    np.testing.assert_array_equal(grad, mi.grad(u, g))
    eps = 1e-7

    def directional(d: np.ndarray) -> float:
        return (mi(u + eps * d, g) - mi(u - eps * d, g)) / (2 * eps)

    d = rng.standard_normal(u.shape)
    assert np.vdot(grad, d) == pytest.approx(directional(d), rel=1e-4)
    # Single voxels, including the extremes (clipped to the grid ends, maybe).
    picks = list(rng.choice(u.size, 3, replace=False)) + [int(u.argmin()), int(u.argmax())]
    for flat in picks:
        e = np.zeros(u.size)
        e[flat] = 1.0
        fd = directional(e.reshape(u.shape))
        assert grad.flat[flat] == pytest.approx(fd, rel=1e-4, abs=1e-9 * abs(value))


@pytest.mark.parametrize("method", ["splat", "exact"])
def test_invariant_to_affine_maps(small_pair, method):
    u, g = small_pair
    mi = MutualInformation(bins=16, method=method)
    value, grad = mi.value_and_grad(u, g)
    assert mi(3.0 * u - 7.0, g) == pytest.approx(value, rel=1e-12)
    assert mi(u, 0.5 * g + 100.0) == pytest.approx(value, rel=1e-12)
    # Hence the gradient is orthogonal to shifts (so dD/dc = 0) and to scalings.
    scale = np.linalg.norm(grad) * np.sqrt(u.size)
    assert abs(grad.sum()) <= 1e-12 * scale
    assert abs(np.vdot(grad, u)) <= 1e-12 * scale * np.abs(u).max()


def test_dependence_lowers_the_loss(rng):
    g = rng.random((10, 10, 10))
    mi = MutualInformation(bins=32)
    same = mi(g, g)
    monotone = mi(np.exp(2.0 * g), g)
    independent = mi(rng.random(g.shape), g)
    assert same < independent
    assert monotone < 0.5 * independent
    assert abs(independent) < 0.25 * abs(same)


def test_monotone_grey_map_changes_mi_little_and_l2_a_lot(phantom):
    """Curved maps move the Parzen MI by a few per cent, L2 by orders of magnitude."""
    _, u, g = phantom
    unit = (g - g.min()) / (g.max() - g.min())
    mi, l2 = MutualInformation(), L2()
    mi0, l20 = mi(u, g), l2(u, g)
    for mapped, tolerance in [(unit**0.5, 0.05), (np.log(unit + 0.05), 0.1), (unit**2, 0.2)]:
        assert abs(mi(u, mapped) - mi0) <= tolerance * abs(mi0)
        assert l2(u, mapped) >= 50.0 * l20
    assert mi(u, 4.0 * g - 1.0) == pytest.approx(mi0, rel=1e-12)


def test_loss_is_smallest_at_the_true_kernel_width(phantom):
    """Also after a monotone grey map of g, which misleads L2 but not MI."""
    pair, _, g = phantom
    unit = (g - g.min()) / (g.max() - g.min())
    widths = {t: tuple(t * s for s in DEFAULT_SIGMA) for t in (0.85, 1.0, 1.15)}
    preds = {
        t: forward_model(pair.hr, gaussian_kernel(w, 9, DEFAULT_SHIFT), 0.0, 2, "valid")
        for t, w in widths.items()
    }
    mi, l2 = MutualInformation(), L2()
    for data in (g, np.log(unit + 0.05)):
        loss = {t: mi(u, data) for t, u in preds.items()}
        assert loss[1.0] < min(loss[0.85], loss[1.15])
    l2_loss = {t: l2(u, np.log(unit + 0.05)) for t, u in preds.items()}
    assert l2_loss[0.85] < l2_loss[1.0]


def _kernel_gradient(f: np.ndarray, grad_u: np.ndarray, support: tuple[int, int, int]):
    """dD/dh = crop_K(F ⋆ U^T dD/du) for u = U(h * F) on the valid LR region."""
    valid = valid_lr_slices(f.shape, support, 2)
    full = np.zeros(tuple(-(-n // 2) for n in f.shape))
    full[valid] = grad_u
    r = decimate_adjoint(full, 2, f.shape)
    corr = fftconvolve(r, f[::-1, ::-1, ::-1], mode="full")  # sum_y r[y] f[y - d] at n-1+d
    centre = [n - 1 for n in f.shape]
    half = [k // 2 for k in support]
    # (h * f)[y] = sum_k h[k] f[y - k + K//2], so dD/dh[k] reads the shift d = k - K//2.
    return corr[tuple(slice(c - h0, c + h0 + 1) for c, h0 in zip(centre, half, strict=True))]


def test_gradient_chains_to_the_kernel(rng):
    """The kernel-estimation chain rule, checked against finite differences in h."""
    f = rng.random((16, 14, 12))
    h = gaussian_kernel(1.0, 5) + 0.01 * rng.random((5, 5, 5))
    g = forward_model(f, gaussian_kernel(1.3, 5), 0.0, 2, "valid") ** 2
    mi = MutualInformation(bins=16, parzen_width=1.0)
    _, grad_u = mi.value_and_grad(forward_model(f, h, 0.0, 2, "valid"), g)
    grad_h = _kernel_gradient(f, grad_u, h.shape)
    d = rng.standard_normal(h.shape)
    eps = 1e-6

    def loss(k: np.ndarray) -> float:
        return mi(forward_model(f, k, 0.0, 2, "valid"), g)

    fd = (loss(h + eps * d) - loss(h - eps * d)) / (2 * eps)
    assert np.vdot(grad_h, d) == pytest.approx(fd, rel=1e-4)


def test_deterministic(small_pair):
    u, g = small_pair
    mi = MutualInformation()
    a, b = mi.value_and_grad(u, g), mi.value_and_grad(u.copy(), g.copy())
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_float32_inputs_give_float64_gradient(small_pair):
    u, g = small_pair
    value, grad = MutualInformation().value_and_grad(u.astype(np.float32), g.astype(np.float32))
    assert grad.dtype == np.float64 and grad.shape == u.shape
    assert np.isfinite(value)


def test_input_errors(small_pair):
    u, g = small_pair
    mi = MutualInformation()
    with pytest.raises(InputError, match="same shape"):
        mi(u, g[:-1])
    with pytest.raises(InputError, match="constant"):
        mi(np.ones_like(u), g)
    with pytest.raises(InputError, match="constant"):
        mi.grad(u, np.zeros_like(g))
    bad = u.copy()
    bad.flat[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        mi(bad, g)
    with pytest.raises(ValueError):
        MutualInformation(bins=2)
    with pytest.raises(ValueError):
        MutualInformation(parzen_width=0.0)
    with pytest.raises(ValueError):
        MutualInformation(bin_count=64)


def test_information_of_stacked_histograms_is_each_ones():
    """Leading axes of a joint histogram are independent histograms (the windows of
    a local MI): each is normalised and measured on its own, empty cells included."""
    from boneframe.parzen import information

    rng = np.random.default_rng(5)
    q = rng.random((2, 3, 1, 6, 6)) ** 4
    q[q < 0.05] = 0.0  # underflowed cells: no mass, no gradient
    mi, centred, z = information(q)
    assert mi.shape == z.shape == (2, 3, 1) and centred.shape == q.shape
    for k in np.ndindex(q.shape[:3]):
        p = q[k] / q[k].sum()
        outer = np.outer(p.sum(axis=1), p.sum(axis=0))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(p > 0, np.log(p / outer), 0.0)
        expected = float(np.sum(p * log_ratio))
        assert mi[k] == pytest.approx(expected, rel=1e-13)
        assert z[k] == pytest.approx(q[k].sum(), rel=1e-14)
        np.testing.assert_allclose(centred[k], log_ratio - expected, rtol=1e-12, atol=1e-14)
        single = information(q[k])
        assert isinstance(single[0], float) and single[0] == pytest.approx(expected, rel=1e-13)
