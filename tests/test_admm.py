"""ADMM on small super-resolution problems."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.fourier_solve import FourierNormalSolver
from boneframe.operators import decimate_adjoint
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.regularizers.tv import TV
from boneframe.solvers.admm import ADMM, SplitProblem
from boneframe.superres import SuperResolutionProblem, upsample_spline


def _kernel(sigma=1.0, support=5):
    r = np.arange(support) - support // 2
    k = np.exp(-0.5 * (r / sigma) ** 2)
    h = k[:, None, None] * k[None, :, None] * k[None, None, :]
    return h / h.sum()


def _lr(n=10, seed=0):
    rng = np.random.default_rng(seed)
    g = np.where(rng.random((n, n, n)) > 0.7, 300.0, 45.0)
    return g + rng.normal(0, 3.0, g.shape)


def _problem(reg, n=10):
    return SuperResolutionProblem(_lr(n), _kernel(), 2, reg, dtype=np.float64)


def _x0(problem):
    return upsample_spline(problem.g, 2).astype(np.float64)


def test_the_problem_follows_the_protocol():
    assert isinstance(_problem(TV()), SplitProblem)
    with pytest.raises(InputError, match="solve_split"):
        ADMM().solve(object(), np.zeros((2, 2, 2)))


def test_augmented_lagrangian_decreases_and_the_paper_rule_stops():
    problem = _problem(TV(), n=8)
    result = ADMM(tol=1e-3, max_iter=500, adapt_iter=0).solve(problem, _x0(problem))
    lagrangian = np.array([r["augmented_lagrangian"] for r in result.history])
    assert np.all(np.diff(lagrangian) <= 1e-9 * np.abs(lagrangian[1:]))
    assert lagrangian[-1] < 0.5 * lagrangian[0]
    changes = [r["relative_change"] for r in result.history]
    assert result.converged and result.iterations == len(result.history) > 5
    assert changes[-1] <= 1e-3 < min(changes[:-1])
    assert all(r["beta"] == 7.0 for r in result.history)


def test_history_records():
    problem = _problem(TV())
    result = ADMM(max_iter=3).solve(problem, _x0(problem))
    assert not result.converged and result.iterations == 3
    record = result.history[-1]
    assert set(record) >= {
        "data",
        "regularizer",
        "objective",
        "augmented_lagrangian",
        "relative_change",
        "primal_residual",
        "beta",
    }
    assert record["objective"] == pytest.approx(record["data"] + record["regularizer"])
    x = result.x
    residual = problem.residual_norm2(x.copy())  # recomputed, not the cached value
    assert record["data"] == pytest.approx(0.5 * 10.0 * residual, rel=1e-9)
    assert record["regularizer"] == pytest.approx(TV().penalty(problem.gradient(x)), rel=1e-9)


def test_quadratic_regulariser_converges_to_the_closed_form():
    # R(x) = w ||D x||²  =>  minimiser solves (mu H^T U^T U H + 2 w D^T D) x = mu H^T U^T g
    w, mu = 0.3, 10.0
    problem = _problem(GradientL2(weight=w))
    result = ADMM(mu=mu, beta=1.0, tol=1e-10, max_iter=2000).solve(problem, _x0(problem))
    exact = FourierNormalSolver(
        problem.kernel, problem.shape, 2, mu=mu, beta=2 * w, dtype=np.float64
    )
    expected = exact.solve(exact.inverse(exact.data_rhs(problem.g)))
    assert result.converged
    np.testing.assert_allclose(result.x, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    # the record of phi is missing for a regulariser without penalty
    last = result.history[-1]
    assert np.isfinite(last["augmented_lagrangian"]) and last["regularizer"] > 0


def test_residual_balancing_moves_beta_only_when_asked():
    problem = _problem(TV())
    adaptive = ADMM(max_iter=30, tol=0.0).solve(problem, _x0(problem))
    betas = {r["beta"] for r in adaptive.history}
    assert len(betas) > 1 and adaptive.history[-1]["beta"] < 7.0


def test_callback_sees_every_iteration_and_can_stop():
    problem = _problem(TV())
    seen = []

    def callback(it, x, record):
        seen.append((it, x.shape, record["relative_change"]))
        return it == 4

    result = ADMM(max_iter=50).solve(problem, _x0(problem), callback)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert seen[0][1] == problem.shape
    assert result.iterations == 4 and not result.converged and "callback" in result.message


def test_problem_operators_are_adjoint_and_periodic():
    from boneframe.operators import gradient

    problem = _problem(TV(), n=6)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(problem.shape)
    v = rng.standard_normal((3, *problem.shape))
    np.testing.assert_allclose(problem.gradient(x), gradient(x, "periodic"))
    assert np.vdot(problem.gradient(x), v) == pytest.approx(
        np.vdot(x, problem.gradient_adjoint(v)), rel=1e-12
    )
    # ||U H x - g||² against the spatial operators
    from boneframe.fourier_solve import circular_convolve
    from boneframe.operators import decimate

    r = decimate(circular_convolve(x, problem.kernel), 2) - problem.g
    assert problem.residual_norm2(x) == pytest.approx(float(np.sum(r**2)), rel=1e-10)
    assert decimate_adjoint(problem.g, 2, problem.shape).shape == x.shape


@pytest.mark.parametrize("shape", [(5, 6, 7), (19, 4, 9), (1, 3, 4)])
@pytest.mark.parametrize("aniso", [False, True])
def test_fused_kernels_are_the_periodic_differences(shape, aniso):
    from boneframe.operators import gradient, gradient_adjoint
    from boneframe.solvers import admm_kernels as kern

    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, *shape))
    expected = gradient_adjoint(w, "periodic")
    np.testing.assert_allclose(kern.adjoint(w), expected, rtol=1e-12, atol=1e-12)
    assert kern.adjoint_norm2(w) == pytest.approx(float(np.sum(expected**2.0)), rel=1e-12)
    # one fused step from any y (and v_old, for the dual residual): v+ = shrink(D x + y),
    # y+ = D x + y - v+, and D^T (v+ - y+), D^T v+ in place of D^T v_old; chunks of one
    # slice, of several, and a single chunk (its edge is its own last slice)
    x, x_old = rng.normal(size=shape), rng.normal(size=shape)
    y, v = rng.normal(size=(3, *shape)), rng.normal(size=(3, *shape))
    dtv = gradient_adjoint(v, "periodic")
    y1, dtw = y.copy(), np.empty(shape)
    sums = kern.split_update(x, x_old, y1, dtw, 0.3, anisotropic=aniso, dtv=dtv)
    tv = TV(anisotropic=aniso)
    d = gradient(x, "periodic")
    u = d + y
    v_new = tv.prox_penalty(u, 0.3)
    y_new = u - v_new
    np.testing.assert_allclose(y1, y_new, atol=1e-12)
    np.testing.assert_allclose(dtw, gradient_adjoint(v_new - y_new, "periodic"), atol=1e-12)
    np.testing.assert_allclose(dtv, gradient_adjoint(v_new, "periodic"), atol=1e-12)
    dual = gradient_adjoint(v - v_new, "periodic")
    gap = v_new - d
    assert sums["dual2"] == pytest.approx(float(np.sum(dual**2)), rel=1e-10)
    assert sums["step2"] == pytest.approx(float(np.sum((x - x_old) ** 2)), rel=1e-10)
    assert sums["size2"] == pytest.approx(float(np.sum(x**2)), rel=1e-10)
    assert sums["phi_v"] == pytest.approx(tv.penalty(v_new), rel=1e-10)
    assert sums["phi_dx"] == pytest.approx(tv.penalty(d), rel=1e-10)
    assert sums["dx2"] == pytest.approx(float(np.sum(d**2)), rel=1e-10)
    assert sums["gap2"] == pytest.approx(float(np.sum(gap**2)), rel=1e-10)
    assert sums["y_gap"] == pytest.approx(float(np.sum(y_new * gap)), rel=1e-9)
    # without dtv: no dual residual, the same update
    y2, dtw2 = y.copy(), np.empty(shape)
    kern.split_update(x, x_old, y2, dtw2, 0.3, anisotropic=aniso)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dtw2, dtw)


def test_fused_kernel_in_float32_and_refusals():
    from boneframe.operators import gradient, gradient_adjoint
    from boneframe.solvers import admm_kernels as kern

    rng = np.random.default_rng(4)
    x, x_old = rng.normal(size=(2, 6, 5, 7)).astype(np.float32)
    y = np.zeros((3, *x.shape), np.float32)
    dtw = np.empty_like(x)
    sums = kern.split_update(x, x_old, y, dtw, 0.3)
    d = gradient(x.astype(np.float64), "periodic")
    v = TV().prox_penalty(d, 0.3)
    np.testing.assert_allclose(y, d - v, atol=1e-5)
    np.testing.assert_allclose(dtw, gradient_adjoint(2 * v - d, "periodic"), atol=1e-5)
    assert sums["dual2"] == 0.0
    # y taken as y_scale * y: the same as scaling y first (a change of beta, for free)
    y_a, y_b = y.copy(), 0.25 * y
    dtw_a, dtw_b = np.empty_like(x), np.empty_like(x)
    kern.split_update(x, x_old, y_a, dtw_a, 0.3, y_scale=0.25)
    kern.split_update(x, x_old, y_b, dtw_b, 0.3)
    np.testing.assert_array_equal(y_a, y_b)
    np.testing.assert_array_equal(dtw_a, dtw_b)
    # a = alpha a + beta b
    a, b = x.copy(), x_old.copy()
    np.testing.assert_allclose(kern.scale_add(a, 0.5, b, -2.0), 0.5 * x - 2.0 * x_old, rtol=1e-6)
    with pytest.raises(ValueError, match="scale_add"):
        kern.scale_add(a, 1.0, b.astype(np.float64), 1.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        kern.split_update(x, x_old, y, dtw.astype(np.float64), 0.3)


@pytest.mark.parametrize("balance", ["sqrt", "double"])
@pytest.mark.parametrize("aniso", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_path_gives_the_generic_iterates(aniso, dtype, balance):
    g = _lr(12)
    runs = {}
    for fused in (False, True):
        problem = SuperResolutionProblem(g, _kernel(), 2, TV(anisotropic=aniso), dtype=dtype)
        x0 = upsample_spline(problem.g, 2).astype(dtype)
        admm = ADMM(max_iter=25, tol=0, adapt_iter=10, fused=fused, balance=balance)
        runs[fused] = admm.solve(problem, x0)
    a, b = runs[False], runs[True]
    tol = 2e-5 if dtype == np.float32 else 1e-10
    assert np.linalg.norm(a.x - b.x) <= tol * np.linalg.norm(a.x)
    betas = [r["beta"] for r in a.history]
    assert len(set(betas)) > 2
    if balance == "double":  # powers of 2 of the same decisions: equal
        assert betas == [r["beta"] for r in b.history]
    for ra, rb in zip(a.history, b.history, strict=True):
        for key in ra:
            assert rb[key] == pytest.approx(ra[key], rel=1e3 * tol, abs=1e-9), key


def test_balancing_steps():
    from boneframe.solvers.admm import _balance

    assert _balance(5.0, 1.0) == _balance(1.0, 5.0) == 1.0  # within a factor 10: kept
    assert _balance(400.0, 1.0) == 10.0  # sqrt(400) = 20, capped at 10
    assert _balance(50.0, 1.0) == pytest.approx(50.0**0.5)
    assert _balance(1.0, 50.0) == pytest.approx(50.0**-0.5)
    assert _balance(1.0, 1e6) == 0.1
    assert _balance(1.0, 0.0) == 10.0 and _balance(0.0, 0.0) == 1.0
    assert _balance(50.0, 1.0, "double") == 2.0 and _balance(1.0, 50.0, "double") == 0.5
