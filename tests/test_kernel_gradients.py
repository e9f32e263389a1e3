"""The kernel problem: forward model, gradients in h and c, normal equations."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.kernel import KernelProblem
from boneframe.operators import forward_model
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.similarity.l2 import L2


@pytest.fixture(scope="module")
def pair():
    h = gaussian_kernel((1.6, 1.3, 1.1), 7, shift=(0.3, -0.2, 0.1), gain=0.9)
    # odd HR shape (p*n - 1): the last LR voxel sits on the last HR voxel
    pr = simulate_pair(32, seed=3, kernel=h, offset=0.05, noise=0.01)
    return pr.hr[:31].astype(np.float64), pr.lr.astype(np.float64)


def make_problem(pair, support=(7, 5, 7), alpha=0.3, p=2) -> KernelProblem:
    f, g = pair
    return KernelProblem(f, g, L2(), GradientL2(weight=alpha), support, p)


def test_forward_model_matches_operators(pair) -> None:
    f, _ = pair
    prob = make_problem(pair)
    h = np.random.default_rng(0).random(prob.support)
    expected = forward_model(f, h, 0.07, 2, mode="valid")
    np.testing.assert_allclose(prob.predict(h, 0.07), expected, rtol=1e-10, atol=1e-12)


def test_forward_model_per_axis_factor() -> None:
    rng = np.random.default_rng(4)
    f = rng.random((20, 17, 24))
    p = (2, 1, 3)
    g = rng.random(tuple(-(-n // q) for n, q in zip(f.shape, p, strict=True)))
    prob = KernelProblem(f, g, L2(), GradientL2(weight=0.0), (5, 3, 5), p)
    h = rng.random((5, 3, 5))
    np.testing.assert_allclose(
        prob.predict(h, -0.2), forward_model(f, h, -0.2, p, mode="valid"), rtol=1e-10
    )


def directional_check(fun, grad, x, rng, eps=1e-4) -> float:
    v = rng.standard_normal(np.shape(x))
    fd = (fun(x + eps * v) - fun(x - eps * v)) / (2 * eps)
    an = float(np.vdot(grad, v))
    return abs(fd - an) / abs(an)


def test_gradient_wrt_h_and_c(pair) -> None:
    prob = make_problem(pair)
    rng = np.random.default_rng(1)
    h = gaussian_kernel(1.5, prob.support, gain=0.8) + 0.01 * rng.standard_normal(prob.support)
    c = 0.03
    _, grad_h, grad_c = prob.objective(h, c)
    for _ in range(3):
        err = directional_check(lambda x: prob.objective(x, c)[0], grad_h, h, rng)
        assert err < 1e-5
    # single coefficients too (centre and a corner)
    for idx in [(3, 2, 3), (0, 4, 6)]:
        e = np.zeros(prob.support)
        e[idx] = 1e-4
        fd = (prob.objective(h + e, c)[0] - prob.objective(h - e, c)[0]) / 2e-4
        assert fd == pytest.approx(grad_h[idx], rel=1e-5)
    fd_c = (prob.objective(h, c + 1e-4)[0] - prob.objective(h, c - 1e-4)[0]) / 2e-4
    assert fd_c == pytest.approx(grad_c, rel=1e-5)


def test_profiled_gradient(pair) -> None:
    prob = make_problem(pair)
    rng = np.random.default_rng(2)
    h = gaussian_kernel(1.2, prob.support, gain=0.85)
    value, grad = prob.value_and_grad(h)
    assert value == pytest.approx(prob.objective(h, prob.best_offset(h))[0])
    assert directional_check(lambda x: prob.value_and_grad(x)[0], grad, h, rng) < 1e-5
    # the profiled offset is the minimiser over c: dJ/dc = 0 there
    c = prob.best_offset(h)
    _, _, grad_c = prob.objective(h, c)
    assert abs(grad_c) < 1e-10
    assert prob.objective(h, c + 1e-3)[0] > value
    assert prob.objective(h, c - 1e-3)[0] > value


def test_gradient_l2_regularizer_gradient() -> None:
    rng = np.random.default_rng(3)
    reg = GradientL2(weight=0.7)
    h = rng.random((5, 7, 3))
    assert directional_check(reg, reg.grad(h), h, rng) < 1e-5
    # by hand: one step of height 1 between two voxels -> weight * 1
    x = np.zeros((1, 1, 2))
    x[0, 0, 1] = 1.0
    assert reg(x) == pytest.approx(0.7)


def test_normal_equations_describe_the_objective(pair) -> None:
    prob = make_problem(pair)
    a, b = prob.normal_equations()
    assert np.allclose(a, a.T)
    rng = np.random.default_rng(5)
    h1 = gaussian_kernel(1.3, prob.support, gain=0.9)
    h2 = h1 + 0.02 * rng.standard_normal(prob.support)
    # a quadratic with Hessian A and linear part -b: differences of values
    # and gradients must follow, J(h2) - J(h1) = <A (h1+h2)/2 - b, h2 - h1>
    d = (h2 - h1).ravel()
    mid = 0.5 * (h1 + h2).ravel()
    expected = float(d @ (a @ mid - b))
    assert prob.value(h2) - prob.value(h1) == pytest.approx(expected, rel=1e-4)
    _, g1 = prob.value_and_grad(h1)
    np.testing.assert_allclose(
        g1.ravel(), a @ h1.ravel() - b, rtol=1e-4, atol=1e-6 * np.abs(b).max()
    )
    # the exact solution zeroes the gradient
    h_star = np.linalg.solve(a, b).reshape(prob.support)
    _, g_star = prob.value_and_grad(h_star)
    assert np.linalg.norm(g_star) < 1e-4 * np.linalg.norm(b)


def test_fixed_offset_when_not_fitted(pair) -> None:
    f, g = pair
    prob = KernelProblem(f, g, L2(), GradientL2(weight=0.3), 5, 2, fit_offset=False, offset=0.05)
    h = gaussian_kernel(1.3, 5, gain=0.9)
    assert prob.best_offset(h) == pytest.approx(0.05, abs=1e-15)
    a, b = prob.normal_equations()
    _, grad = prob.value_and_grad(h)
    np.testing.assert_allclose(
        grad.ravel(), a @ h.ravel() - b, rtol=1e-4, atol=1e-6 * np.abs(b).max()
    )


@pytest.mark.parametrize(("support", "p"), [((5, 3, 7), (2, 1, 3)), ((7, 7, 7), 2), ((3, 5, 5), 3)])
def test_gram_matches_the_design_matrix(support, p) -> None:
    rng = np.random.default_rng(6)
    f = rng.random((23, 19, 26))
    q = (p,) * 3 if np.isscalar(p) else p
    g = rng.random(tuple(-(-n // s) for n, s in zip(f.shape, q, strict=True)))
    prob = KernelProblem(f, g, L2(), GradientL2(weight=0.0), support, p)
    # the design matrix column by column: X e_k, through the forward model
    n = int(np.prod(support))
    x = np.empty((prob.n_valid, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        x[:, k] = prob.predict(e.reshape(support), c=-prob.f_mean).ravel()
    gram = prob.boxes.gram()
    xtx, xt1, xtg = gram["xtx"], gram["xt1"], gram["xtg"]
    g_valid = np.asarray(g)[prob.boxes.lr_slices]
    np.testing.assert_allclose(xtx, x.T @ x, rtol=1e-5, atol=1e-5 * np.abs(x.T @ x).max())
    np.testing.assert_allclose(xt1, x.sum(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xtg, x.T @ g_valid.ravel(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("support", "p"), [(5, 2), ((5, 3, 7), (2, 1, 3))])
def test_the_design_is_the_forward_model_and_its_adjoint(rng, support, p) -> None:
    """One forward model: a box's design matrix applied to a kernel is the valid
    part of ``U(h * f)`` of the operator family, and its transpose passes the
    shared dot test."""
    from boneframe.operators import ForwardModel, dottest

    f = rng.random((23, 20, 25))
    q = (p,) * 3 if isinstance(p, int) else p
    g = rng.random(tuple(-(-n // s) for n, s in zip(f.shape, q, strict=True)))
    prob = KernelProblem(f, g, L2(), GradientL2(weight=0.0), support, p)
    h = rng.random(prob.support)
    expected = ForwardModel(h, p, f.shape, mode="valid").matvec(f)
    np.testing.assert_allclose(prob.predict(h, 0.0), expected, rtol=1e-10, atol=1e-12)
    (design, _, _), = prob.boxes.parts
    assert dottest(design, rng=1) < 1e-11
