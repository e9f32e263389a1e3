"""local-mi: gradients by finite differences (including the moment terms of the
placement of u), equality with the global MI for a whole-volume window, the
separable compiled passes against a literal per-window splat, affine invariance,
parameters and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from boneframe_localmi import LocalMutualInformation
from boneframe_localmi.local_mi import window_matrix
from pydantic import ValidationError

from boneframe.errors import InputError
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.similarity.mi import MutualInformation


@pytest.fixture(scope="module")
def pair_uv() -> tuple[np.ndarray, np.ndarray]:
    """A blurred micro-CT-like ``u`` and an LR ``g`` with a slow gain across x."""
    pair = simulate_pair(24, 1, kernel=gaussian_kernel(1.0, 5), noise=0.01, hr_noise=0.01)
    u = pair.hr[::2, ::2, ::2].astype(np.float64)
    g = pair.lr.astype(np.float64)
    # a slow gain across the last axis: the case local-mi is for
    g = g * (1.0 + 0.3 * np.linspace(-1.0, 1.0, g.shape[2]))
    return u, g


def _voxel_derivative(sim, u, g, index: int, eps: float = 1e-6) -> float:
    """Central difference of ``sim(., g)`` along the flat voxel ``index`` of ``u``."""
    d = np.zeros(u.size)
    d[index] = eps
    d = d.reshape(u.shape)
    return (sim(u + d, g) - sim(u - d, g)) / (2 * eps)


def _fd_errors(sim, u, g, rng, directions: int = 3, eps: float = 1e-6) -> list[float]:
    value, grad = sim.value_and_grad(u, g)
    assert value == pytest.approx(sim(u, g), abs=1e-14)
    assert np.array_equal(grad, sim.grad(u, g))
    errors = []
    for _ in range(directions):
        d = rng.normal(size=u.shape)
        num = (sim(u + eps * d, g) - sim(u - eps * d, g)) / (2 * eps)
        errors.append(abs(num - float(np.vdot(grad, d))) / abs(num))
    return errors


@pytest.mark.parametrize(
    "params",
    [
        {"bins": 16, "window": 3.0},
        {"bins": 24, "parzen_width": 1.5, "window": 2.5, "spacing": 4.0, "truncate": 2.0},
        {"bins": 16, "window": None},
        {"bins": 16, "window": 3.0, "spacing": 3.0, "truncate": 3.0},  # the former geometry
        {"bins": 20, "window": 2.0, "oversampling": 2},
    ],
)
def test_gradient_matches_finite_differences(pair_uv, params):
    u, g = pair_uv
    rng = np.random.default_rng(7)
    errors = _fd_errors(LocalMutualInformation(**params), u, g, rng)
    print(f"local-mi {params}: FD relative errors {[f'{e:.1e}' for e in errors]}")
    assert max(errors) < 1e-4


def test_gradient_carries_the_moment_terms(pair_uv):
    """u is placed by its global mean and std: every voxel moves every coordinate.

    The gradient sums to zero (offset) and is orthogonal to u - mean (scale), which
    holds only with the two global terms of the chain rule (the per-voxel part
    alone does neither); a direction that changes the mean and the spread of u a
    lot (random ones barely do) is checked against finite differences.
    """
    u, g = pair_uv
    sim = LocalMutualInformation(bins=16, window=3.0)
    _, grad = sim.value_and_grad(u, g)
    scale = float(np.abs(grad).sum())
    assert abs(float(grad.sum())) < 1e-10 * scale
    assert abs(float(np.vdot(grad, u - u.mean()))) < 1e-10 * scale * float(u.std())
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, u.shape[2]) ** 2, u.shape) * u
    eps = 1e-6
    num = (sim(u + eps * ramp, g) - sim(u - eps * ramp, g)) / (2 * eps)
    assert float(np.vdot(grad, ramp)) == pytest.approx(num, rel=1e-4)


def test_value_is_smooth_where_the_extremes_tie(pair_uv):
    """No kink where two voxels share the minimum or maximum of u (binning u by its
    own extremes had one there: the gradient then held one voxel's one-sided slope)."""
    u, g = pair_uv
    tied = u.copy().ravel()
    order = np.argsort(tied)
    tied[order[1]] = tied[order[0]]  # two voxels at the minimum
    tied[order[-2]] = tied[order[-1]]  # two at the maximum
    tied = tied.reshape(u.shape)
    sim = LocalMutualInformation(bins=16, window=3.0)
    _, grad = sim.value_and_grad(tied, g)
    for idx in (order[0], order[1], order[-2], order[-1]):
        num = _voxel_derivative(sim, tied, g, int(idx))
        assert num == pytest.approx(grad.flat[idx], rel=1e-4, abs=1e-4 * np.abs(grad).max())


def test_clipped_outlier_moves_the_others_through_the_moments(pair_uv):
    """A far outlier of u lands on the last bin (its own slope is zero) instead of
    squeezing every other voxel into a few bins; its gradient is the moment terms."""
    u, g = pair_uv
    spiked = u.copy()
    spiked.flat[0] = u.max() + 50 * u.std()
    sim = LocalMutualInformation(bins=16, window=3.0)
    value, grad = sim.value_and_grad(spiked, g)
    num = _voxel_derivative(sim, spiked, g, 0)
    assert grad.flat[0] != 0.0
    assert grad.flat[0] == pytest.approx(num, rel=1e-4, abs=1e-12)
    # binned by the extremes of u the other voxels would share a few bins and
    # the value would collapse (to 8 % of the unspiked one, measured); placed by
    # the moments it keeps 90 %
    assert abs(value) > 0.8 * abs(sim(u, g))


@pytest.mark.parametrize(
    ("window", "spiked", "oversampling"),
    [(None, False, 1), (float("inf"), False, 1), (1e6, False, 1), (None, True, 1),
     (None, False, 2), (None, True, 2)],
)  # fmt: skip
def test_whole_volume_window_equals_the_global_mi(pair_uv, window, spiked, oversampling):
    u, g = pair_uv
    if spiked:  # one voxel clipped to the last bin: no slope of its own on either side
        u = u.copy()
        u.flat[5] = u.max() + 20 * u.std()
    # the same placement (moments of u matched to g's) and the same splatted Parzen
    # estimate (the core mi's default method; its default oversampling is 2)
    glob = MutualInformation(bins=24, parzen_width=1.2, oversampling=oversampling)
    assert glob.params.method == "splat"
    loc = LocalMutualInformation(
        bins=24, parzen_width=1.2, window=window, oversampling=oversampling
    )
    vg, gg = glob.value_and_grad(u, g)
    vl, gl = loc.value_and_grad(u, g)
    # a huge finite window is not the same estimator: weights vary by (n / 1e6)^2
    # (measured 5e-14 on the value, 2e-11 on the gradient); a whole-volume one agrees
    # to rounding (measured 6e-16 at most on the value, 2e-15 on the gradient)
    tol = 1e-12 if window is None or np.isinf(window) else 1e-8
    print(f"window={window}, spiked={spiked}, S={oversampling}: |dvalue| = {abs(vg - vl):.1e}, "
          f"max|dgrad|/max|grad| = {np.abs(gg - gl).max() / np.abs(gg).max():.1e}")  # fmt: skip
    assert vl == pytest.approx(vg, abs=tol)
    assert np.abs(gg - gl).max() <= tol * np.abs(gg).max()


def _literal_local_values(u, g, sim):
    """Per-window MI the slow way: each window's weighted spline splat, one at a
    time, smoothed and turned into MI by the core's helpers."""
    from boneframe.parzen import GreyStatistics, bin_coordinates, information, node_matrix

    prm = sim.params
    s = prm.oversampling
    grey = GreyStatistics.of(g)
    a = grey.place(u, prm.bins, float(u.mean()), float(u.std()))[0]
    b = bin_coordinates(g, prm.bins, grey.lo, grey.hi)[0]
    phi = node_matrix(prm.bins, prm.parzen_width, s)
    nodes = phi.shape[1]

    def spline(t):  # first node and the three quadratic B-spline weights
        first = np.floor(t + 0.5).astype(int)
        d = t - first
        return first, np.stack([0.5 * (0.5 - d) ** 2, 0.75 - d**2, 0.5 * (0.5 + d) ** 2])

    ra, wa = spline(a * s)
    rb, wb = spline(b * s)
    w0, w1, w2 = sim.window_weights(u.shape)
    out = np.empty((w0.shape[0], w1.shape[0], w2.shape[0]))
    for k in np.ndindex(out.shape):
        w = np.einsum("i,j,k->ijk", w0[k[0]], w1[k[1]], w2[k[2]]).ravel()
        hist = np.zeros((nodes, nodes))
        for i in range(3):
            for j in range(3):
                np.add.at(hist, (ra + i, rb + j), w * wa[i] * wb[j])
        out[k] = information(phi @ hist @ phi.T)[0]
    return out


@pytest.mark.parametrize(
    "params",
    [{"bins": 12, "window": 2.0}, {"bins": 10, "window": 1.5, "spacing": 2.0, "truncate": 3.0},
     {"bins": 12, "window": 2.5, "oversampling": 2}],
)  # fmt: skip
def test_separable_passes_are_the_literal_windowed_splat(params):
    rng = np.random.default_rng(5)
    u = rng.random((9, 11, 13))
    g = u**2 + 0.1 * rng.random(u.shape)
    sim = LocalMutualInformation(**params)
    mi, _ = sim.local_values(u, g)
    ref = _literal_local_values(u, g, sim)
    np.testing.assert_allclose(mi, ref, rtol=1e-12, atol=1e-14)


def test_thread_split_does_not_change_the_sums(pair_uv, monkeypatch):
    """The histograms are split over threads by window column and the gradient by
    slice: every sum runs in the same order whatever the split, so the value and
    gradient are identical bit for bit."""
    import boneframe_localmi.local_mi as module

    import boneframe.parallel

    u, g = pair_uv
    sim = LocalMutualInformation(bins=16, window=2.0)
    monkeypatch.setattr(module, "PARALLEL_MIN_VOXELS", 0)  # threads even on 12³
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(boneframe.parallel, "num_threads", lambda t=threads: t)
        results.append(sim.value_and_grad(u, g))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_affine_invariance(pair_uv):
    u, g = pair_uv
    sim = LocalMutualInformation(bins=16, window=3.0)
    v, grad = sim.value_and_grad(u, g)
    for s, t in [(3.7, -2.0), (1e-3, 5.0), (250.0, 0.1)]:
        vs, gs = sim.value_and_grad(s * u + t, g)
        assert vs == pytest.approx(v, abs=1e-12)
        # D(s u + t) = D(u): the gradient scales by 1 / s
        np.testing.assert_allclose(gs * s, grad, rtol=1e-7, atol=1e-9 * np.abs(grad).max())
        assert sim(u, s * g + t) == pytest.approx(v, abs=1e-12)


def test_local_values_and_windows():
    rng = np.random.default_rng(3)
    u = rng.random((10, 12, 14))
    g = u**2 + 0.05 * rng.random(u.shape)
    sim = LocalMutualInformation(bins=8, window=2.0)  # centres at most 2 * 2 voxels apart
    mi, weight = sim.local_values(u, g)
    assert mi.shape == weight.shape == (4, 4, 5)
    assert weight.sum() == pytest.approx(1.0) and np.all(mi > 0)
    assert -float(np.sum(mi * weight)) == pytest.approx(sim(u, g))
    mi1, _ = LocalMutualInformation(bins=8, window=2.0, spacing=2.0).local_values(u, g)
    assert mi1.shape == (6, 7, 8)
    w = window_matrix(14, 2.0, 2.0, 3.0)
    assert w.shape == (8, 14) and np.all(w.max(axis=1) > np.exp(-0.5 * (0.5 / 2.0) ** 2))
    assert np.all(w[:, :][np.abs(np.arange(14)[None] - np.linspace(0, 13, 8)[:, None]) > 6] == 0)
    assert window_matrix(14, 2.0, None, 3.0).shape == (5, 14)
    # the default cut at 2 sigma: with centres 2 sigma apart a voxel lies in two or
    # three windows per axis, and away from the borders the windows' total weight
    # varies by about 10 % (measured 7-12 % for 20-200 voxels)
    wd = window_matrix(60, 4.0, None, 2.0)
    reach = (wd > 0).sum(axis=0)
    assert reach.min() == 2 and reach.max() == 3
    total = wd.sum(axis=0)[8:-8]
    assert total.max() / total.min() < 1.15
    # 2D and 1D inputs are volumes with leading axes of one voxel
    assert np.isfinite(sim(u[0], g[0])) and np.isfinite(sim(u[0, 0], g[0, 0]))


def test_parameters_are_validated():
    with pytest.raises(ValidationError):
        LocalMutualInformation(bins=2)
    with pytest.raises(ValidationError):
        LocalMutualInformation(window=-1.0)
    with pytest.raises(ValidationError):
        LocalMutualInformation(window=None, spacing=3.0)
    with pytest.raises(ValidationError):
        LocalMutualInformation(unknown=1)
    with pytest.raises(ValidationError):
        LocalMutualInformation(oversampling=0)
    assert LocalMutualInformation(window=float("inf")).params.window is None
    for field in LocalMutualInformation.Params.model_fields.values():
        assert field.description


def test_input_errors():
    sim = LocalMutualInformation(bins=8, window=2.0)
    u = np.random.default_rng(0).random((6, 6, 6))
    with pytest.raises(InputError, match="same shape"):
        sim(u, u[:-1])
    with pytest.raises(InputError, match="constant"):
        sim(np.ones_like(u), u)
    bad = u.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        sim(u, bad)


def test_kernel_gradient_through_the_forward_model():
    # d/dh of D(U(h * (f + c)), g) + alpha ||grad h||^2, as estimate_kernel sees it
    from boneframe.kernel import KernelProblem, project_simplex
    from boneframe.registry import get_registry

    small = simulate_pair(16, 1, kernel=gaussian_kernel(1.0, 5), noise=0.01, hr_noise=0.01)
    sim = LocalMutualInformation(bins=16, window=2.0)
    reg = get_registry().create("regularizer", "gradient-l2", weight=0.01)
    prob = KernelProblem(small.hr.astype(float), small.lr.astype(float), sim, reg, 5, 2)
    rng = np.random.default_rng(11)
    h = project_simplex(gaussian_kernel(1.2, 5) + 0.01 * rng.random((5, 5, 5)))
    _, grad_h, grad_c = prob.objective(h, 0.03)
    d = rng.normal(size=h.shape)
    eps = 1e-6
    num = (prob.objective(h + eps * d, 0.03)[0] - prob.objective(h - eps * d, 0.03)[0]) / (2 * eps)
    assert abs(num - np.vdot(grad_h, d)) <= 1e-4 * abs(num)
    assert abs(grad_c) < 1e-8  # invariant to the offset
