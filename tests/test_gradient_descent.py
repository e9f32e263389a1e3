"""Gradient-descent and exact solvers on small problems with known minimisers."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.registry import get_registry
from boneframe.solvers import BUILTIN_SOLVERS
from boneframe.solvers.exact import Exact
from boneframe.solvers.gradient_descent import GradientDescent


class Quadratic:
    """J(x) = x^T A x / 2 - b^T x, minimiser A^{-1} b."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = a, b

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        ax = self.a @ x
        return float(0.5 * x @ ax - self.b @ x), ax - self.b

    def value(self, x: np.ndarray) -> float:
        return self.value_and_grad(x)[0]

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        return self.a, self.b


class NonNegative(Quadratic):
    def project(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


def ill_conditioned(n: int = 30, cond: float = 1e3) -> Quadratic:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.logspace(0, np.log10(cond), n)) @ q.T
    return Quadratic(a, rng.standard_normal(n))


def test_hand_case_one_step() -> None:
    # J = (x - 3)^2 / 2 with step 1 reaches the minimum in one step
    prob = Quadratic(np.eye(1), np.array([3.0]))
    res = GradientDescent(step="fixed", step_size=1.0, max_iter=5).solve(prob, np.zeros(1))
    assert res.x == pytest.approx([3.0])
    assert res.converged
    assert res.history[0]["objective"] == pytest.approx(-4.5)


@pytest.mark.parametrize(
    "params",
    [
        {"step": "bb"},
        {"step": "armijo"},
        {"step": "armijo", "nesterov": True},
        {"step": "fixed", "nesterov": True},
        {"step": "fixed"},
    ],
)
def test_converges_to_the_minimiser(params: dict) -> None:
    prob = ill_conditioned()
    x_star = np.linalg.solve(prob.a, prob.b)
    res = GradientDescent(params, max_iter=20000, tol=1e-14).solve(prob, np.zeros(30))
    assert np.linalg.norm(res.x - x_star) <= 1e-5 * np.linalg.norm(x_star)
    # and says so at the default tolerance (rounding at the minimum is no kink)
    default = GradientDescent(params, max_iter=20000).solve(prob, np.zeros(30))
    assert default.converged, default.message
    assert np.linalg.norm(default.x - x_star) <= 1e-5 * np.linalg.norm(x_star)
    objectives = [r["objective"] for r in res.history]
    assert objectives[-1] == pytest.approx(prob.value(x_star), rel=1e-9)
    if params["step"] != "bb" and not params.get("nesterov"):  # those are non-monotone
        assert all(
            b <= a + 1e-12 * abs(a) for a, b in zip(objectives, objectives[1:], strict=False)
        )


def test_acceleration_pays() -> None:
    prob = ill_conditioned()
    plain = GradientDescent(step="fixed", max_iter=20000, tol=1e-12).solve(prob, np.zeros(30))
    bb = GradientDescent(step="bb", max_iter=20000, tol=1e-12).solve(prob, np.zeros(30))
    fista = GradientDescent(step="fixed", nesterov=True, max_iter=20000, tol=1e-12).solve(
        prob, np.zeros(30)
    )
    assert bb.iterations * 5 < plain.iterations
    assert fista.iterations * 3 < plain.iterations


def test_projection_is_honoured() -> None:
    # minimiser of ||x - b||^2 / 2 over x >= 0 is max(b, 0)
    b = np.array([1.0, -2.0, 0.5, -0.1])
    prob = NonNegative(np.eye(4), b)
    for step in ("bb", "armijo", "fixed"):
        res = GradientDescent(step=step, max_iter=200, tol=1e-15).solve(prob, np.full(4, 5.0))
        np.testing.assert_allclose(res.x, np.maximum(b, 0), atol=1e-10)


def test_callback_stops_and_sees_records() -> None:
    seen: list[tuple[int, float]] = []

    def cb(it: int, x: np.ndarray, rec: dict) -> bool:
        seen.append((it, rec["objective"]))
        return it == 3

    res = GradientDescent(max_iter=100).solve(ill_conditioned(), np.zeros(30), cb)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert res.iterations == 3 and not res.converged
    assert "callback" in res.message
    assert len(res.history) == 3


def test_the_default_stop_is_near_the_minimiser() -> None:
    """Two small iterate changes stop BB close to the minimiser; a small objective
    change alone (``ftol``) stops it 100 times farther away."""
    prob = ill_conditioned()
    x_star = np.linalg.solve(prob.a, prob.b)
    res = GradientDescent(step="bb", max_iter=20000).solve(prob, np.zeros(30))
    assert res.converged
    assert np.linalg.norm(res.x - x_star) <= 1e-5 * np.linalg.norm(x_star)
    early = GradientDescent(step="bb", max_iter=20000, tol=0, ftol=1e-9).solve(prob, np.zeros(30))
    assert early.iterations < res.iterations
    assert np.linalg.norm(early.x - x_star) >= 1e-4 * np.linalg.norm(x_star)


class _Scripted:
    """Gradients from a script, whatever ``x``: step lengths chosen by the test."""

    def __init__(self, gradients: list[float]):
        self.gradients = iter(gradients)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.0, np.array([next(self.gradients)])


def test_one_small_step_does_not_stop() -> None:
    """A single short step (as a BB step can be by chance) is not convergence: the
    iterate must change by less than tol twice in a row."""
    # gradients at x0, x1, ...: steps small, large, small, small
    script = [1e-12, 1.0, 1e-12, 1e-12, 1e-12, 1.0, 1.0, 1.0]
    res = GradientDescent(step="fixed", step_size=1.0, max_iter=10).solve(
        _Scripted(script), np.array([10.0])
    )
    assert res.converged and res.iterations == 4


def test_max_iter_reported() -> None:
    res = GradientDescent(step="fixed", max_iter=2, tol=0).solve(ill_conditioned(), np.zeros(30))
    assert res.iterations == 2 and not res.converged


class _Ridge:
    """``|x0 - x1| + 0.01 |x|^2``: minimum at 0, on a kink along x0 = x1."""

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        d = float(x[0] - x[1])
        return abs(d) + 0.01 * float(x @ x), np.sign(d) * np.array([1.0, -1.0]) + 0.02 * x


def test_a_stuck_line_search_is_a_stall_not_convergence() -> None:
    res = GradientDescent({"step": "armijo", "tol": 1e-12}).solve(_Ridge(), np.array([1.0, -0.3]))
    assert not res.converged
    assert res.message.startswith("stalled after")
    assert np.linalg.norm(res.x) > 0.1  # far from the minimiser: reporting it converged lies


def test_bad_parameters_and_problems() -> None:
    with pytest.raises(ValueError, match="nesterov"):
        GradientDescent(step="bb", nesterov=True)
    with pytest.raises(ValueError):
        GradientDescent(step_size=-1.0)
    with pytest.raises(InputError, match="value_and_grad"):
        GradientDescent().solve(object(), np.zeros(2))


def test_exact_solver() -> None:
    prob = ill_conditioned(cond=1e6)
    res = Exact().solve(prob, np.zeros(30))
    np.testing.assert_allclose(prob.a @ res.x, prob.b, rtol=0, atol=1e-8)
    assert res.history[0]["objective"] == pytest.approx(prob.value(res.x))
    # singular: minimum-norm solution of [[1, 0], [0, 0]] x = [2, 0]
    res = Exact().solve(Quadratic(np.diag([1.0, 0.0]), np.array([2.0, 0.0])), np.zeros(2))
    np.testing.assert_allclose(res.x, [2.0, 0.0], atol=1e-12)
    with pytest.raises(InputError, match=r"QuadraticProblem \(normal_equations\)"):
        Exact().solve(object(), np.zeros(2))
    with pytest.raises(InputError, match="constraints"):
        Exact().solve(NonNegative(np.eye(2), np.ones(2)), np.zeros(2))


def test_registered() -> None:
    reg = get_registry()
    assert reg.get("solver", "gradient-descent") is GradientDescent
    assert reg.get("solver", "exact") is Exact
    assert GradientDescent in BUILTIN_SOLVERS and Exact in BUILTIN_SOLVERS
