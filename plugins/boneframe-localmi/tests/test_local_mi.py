"""local-mi: gradients by finite differences, equality with the global MI for a
whole-volume window, affine invariance, parameters and input errors."""

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
    """A blurred micro-CT-like ``u`` (noise makes its extremes unique) and an LR ``g``."""
    pair = simulate_pair(24, 1, kernel=gaussian_kernel(1.0, 5), noise=0.01, hr_noise=0.01)
    u = pair.hr[::2, ::2, ::2].astype(np.float64)
    g = pair.lr.astype(np.float64)
    # a slow gain across the last axis: the case local-mi is for
    g = g * (1.0 + 0.3 * np.linspace(-1.0, 1.0, g.shape[2]))
    assert np.sum(u == u.max()) == 1 and np.sum(u == u.min()) == 1
    return u, g


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
    ],
)
def test_gradient_matches_finite_differences(pair_uv, params):
    u, g = pair_uv
    rng = np.random.default_rng(7)
    errors = _fd_errors(LocalMutualInformation(**params), u, g, rng)
    print(f"local-mi {params}: FD relative errors {[f'{e:.1e}' for e in errors]}")
    assert max(errors) < 1e-4


def test_gradient_moves_the_extremes_through_the_range(pair_uv):
    # directions touching only the min / max voxel exercise the range terms alone
    u, g = pair_uv
    sim = LocalMutualInformation(bins=16, window=3.0)
    _, grad = sim.value_and_grad(u, g)
    for idx in (np.argmin(u), np.argmax(u)):
        d = np.zeros(u.size)
        d[idx] = 1.0
        d = d.reshape(u.shape)
        eps = 1e-6
        num = (sim(u + eps * d, g) - sim(u - eps * d, g)) / (2 * eps)
        assert num == pytest.approx(grad.ravel()[idx], rel=1e-4, abs=1e-9)
    # an offset of u changes nothing: the gradient sums to zero
    assert abs(float(grad.sum())) < 1e-10 * float(np.abs(grad).sum())


@pytest.mark.parametrize("window", [None, float("inf"), 1e6])
def test_whole_volume_window_equals_the_global_mi(pair_uv, window):
    u, g = pair_uv
    # local MI places u by the global extremes (the core mi's "extremes" placement)
    glob = MutualInformation(bins=24, parzen_width=1.2, method="exact", placement="extremes")
    loc = LocalMutualInformation(bins=24, parzen_width=1.2, window=window)
    vg, gg = glob.value_and_grad(u, g)
    vl, gl = loc.value_and_grad(u, g)
    # a huge finite window is not the same estimator: weights vary by (n / 1e6)^2
    tol = 1e-12 if window is None or np.isinf(window) else 1e-8
    print(f"window={window}: |dvalue| = {abs(vg - vl):.1e}, "
          f"max|dgrad|/max|grad| = {np.abs(gg - gl).max() / np.abs(gg).max():.1e}")  # fmt: skip
    assert vl == pytest.approx(vg, abs=tol)
    assert np.abs(gg - gl).max() <= tol * np.abs(gg).max() * 100


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
    sim = LocalMutualInformation(bins=8, window=2.0)
    mi, weight = sim.local_values(u, g)
    assert mi.shape == weight.shape == (6, 7, 8)
    assert weight.sum() == pytest.approx(1.0) and np.all(mi > 0)
    assert -float(np.sum(mi * weight)) == pytest.approx(sim(u, g))
    w = window_matrix(14, 2.0, None, 3.0)
    assert w.shape == (8, 14) and np.all(w.max(axis=1) > np.exp(-0.5 * (0.5 / 2.0) ** 2))
    assert np.all(w[:, :][np.abs(np.arange(14)[None] - np.linspace(0, 13, 8)[:, None]) > 6] == 0)
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
