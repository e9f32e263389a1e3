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


def test_fused_kernels_are_the_periodic_differences():
    from boneframe.operators import gradient, gradient_adjoint
    from boneframe.solvers import admm_kernels as kern

    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 5, 6, 7)).astype(np.float32)
    expected = gradient_adjoint(w, "periodic")
    np.testing.assert_allclose(kern.adjoint(w), expected, rtol=1e-5, atol=1e-5)
    assert kern.adjoint_norm2(w) == pytest.approx(float(np.sum(expected**2.0)), rel=1e-5)
    # one fused step from y = 0, w = 0: v = shrink(D x), y = D x - v, w = v - y
    x = rng.normal(size=(5, 6, 7)).astype(np.float32)
    x_old = rng.normal(size=x.shape).astype(np.float32)
    for aniso in (False, True):
        y, w2 = np.zeros((3, *x.shape), np.float32), np.zeros((3, *x.shape), np.float32)
        dv = np.empty_like(y)
        sums = kern.split_update(x, x_old, y, w2, 0.3, anisotropic=aniso, dv=dv)
        d = gradient(x, "periodic")
        v = TV(anisotropic=aniso).prox_penalty(d, 0.3)
        np.testing.assert_allclose(y, d - v, atol=1e-6)
        np.testing.assert_allclose(w2, v - (d - v), atol=1e-6)
        np.testing.assert_allclose(dv, -v, atol=1e-6)  # v_old = w_old + y_old = 0
        assert sums["step2"] == pytest.approx(float(np.sum((x - x_old) ** 2.0)), rel=1e-5)
        assert sums["phi_v"] == pytest.approx(TV(anisotropic=aniso).penalty(v), rel=1e-5)
        assert sums["phi_dx"] == pytest.approx(TV(anisotropic=aniso).penalty(d), rel=1e-5)
        assert sums["gap2"] == pytest.approx(float(np.sum((v - d) ** 2.0)), rel=1e-5)


@pytest.mark.parametrize("aniso", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_path_gives_the_generic_iterates(aniso, dtype):
    g = _lr(12)
    runs = {}
    for fused in (False, True):
        problem = SuperResolutionProblem(g, _kernel(), 2, TV(anisotropic=aniso), dtype=dtype)
        x0 = upsample_spline(problem.g, 2).astype(dtype)
        runs[fused] = ADMM(max_iter=25, tol=0, adapt_iter=10, fused=fused).solve(problem, x0)
    a, b = runs[False], runs[True]
    tol = 2e-5 if dtype == np.float32 else 1e-10
    assert np.linalg.norm(a.x - b.x) <= tol * np.linalg.norm(a.x)
    assert [r["beta"] for r in a.history] == [r["beta"] for r in b.history]
    for ra, rb in zip(a.history, b.history, strict=True):
        for key in ra:
            assert rb[key] == pytest.approx(ra[key], rel=1e3 * tol, abs=1e-9), key
