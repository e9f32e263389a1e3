"""Kernel estimation with mutual information: gradients through the forward model,
unit-sum constraint, gain/offset recovery, and accuracy beside L2 under grey maps."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.kernel import KernelProblem, estimate_kernel, project_simplex
from boneframe.kernel.summary import summarize_kernel
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.pipeline import kernel_error
from boneframe.registry import get_registry

TRUE = gaussian_kernel((1.6, 1.3, 1.1), 9, (0.3, -0.2, 0.1), gain=0.9)


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(64, 0, kernel=TRUE, offset=0.05, noise=0.01)


def test_simplex_projection(rng):
    h = rng.normal(size=(3, 3, 3))
    z = project_simplex(h)
    assert z.min() >= 0 and z.sum() == pytest.approx(1.0)
    # optimality: no feasible point from a random sample is closer
    for _ in range(200):
        y = project_simplex(rng.normal(size=h.shape))
        assert np.linalg.norm(h - z) <= np.linalg.norm(h - y) + 1e-12
    assert np.allclose(project_simplex(z), z)


@pytest.mark.parametrize("method", ["exact", "splat"])
def test_mi_gradients_with_respect_to_h_and_c_by_finite_differences(rng, method):
    # micro-CT noise breaks the ties of flat bone at the maximum of u (a kink of MI)
    small = simulate_pair(16, 1, kernel=gaussian_kernel(1.0, 5), noise=0.01, hr_noise=0.01)
    sim = get_registry().create("similarity", "mi", bins=24, method=method)
    reg = get_registry().create("regularizer", "gradient-l2", weight=0.01)
    prob = KernelProblem(small.hr.astype(float), small.lr.astype(float), sim, reg, 5, 2)
    h = project_simplex(gaussian_kernel(1.2, 5) + 0.01 * rng.random((5, 5, 5)))
    c = 0.03
    _, grad_h, grad_c = prob.objective(h, c)
    d = rng.normal(size=h.shape)
    eps = 1e-6
    num = (prob.objective(h + eps * d, c)[0] - prob.objective(h - eps * d, c)[0]) / (2 * eps)
    assert abs(num - np.vdot(grad_h, d)) <= 1e-4 * abs(num)
    num_c = (prob.objective(h, c + eps)[0] - prob.objective(h, c - eps)[0]) / (2 * eps)
    # MI is invariant to an offset of u: dJ/dc vanishes up to rounding
    assert abs(grad_c) < 1e-8 and abs(num_c) < 1e-6


def test_mi_refuses_the_exact_solver(pair):
    with pytest.raises(InputError, match="quadratic"):
        estimate_kernel(pair.hr, pair.lr, similarity="mi", solver="exact")


def _fwhm_error(h: np.ndarray) -> float:
    est = np.asarray(summarize_kernel(h, 41.0)["fwhm_um"])
    true = np.asarray(summarize_kernel(TRUE, 41.0)["fwhm_um"])
    return float(np.max(np.abs(est / true - 1)))


GREY_MAPS = {
    "identity": lambda g: g,
    "log": lambda g: np.log(g - g.min() + 0.05),
    "sigmoid": lambda g: 1.0 / (1.0 + np.exp(-(g - 0.45) / 0.08)),
}


@pytest.mark.parametrize("grey_map", list(GREY_MAPS))
def test_mi_recovers_the_kernel_where_l2_degrades(pair, grey_map):
    g = GREY_MAPS[grey_map](pair.lr.astype(np.float64)).astype(np.float32)
    mi = estimate_kernel(pair.hr, g, similarity="mi", solver="gradient-descent")
    l2 = estimate_kernel(pair.hr, g)
    err_mi, err_l2 = kernel_error(mi.array, TRUE), kernel_error(l2.array, TRUE)
    assert err_mi < 0.10 and _fwhm_error(mi.array) < 0.10, (err_mi, _fwhm_error(mi.array))
    assert mi.history and "mi_loss" in mi.history[-1]
    if grey_map == "identity":
        assert mi.gain == pytest.approx(0.9, rel=0.02)
        assert mi.offset == pytest.approx(0.05, abs=0.02)
    else:  # the non-linear map biases L2, not MI
        assert err_l2 > 2 * err_mi, (err_l2, err_mi)


def test_mi_can_start_from_the_l2_estimate(pair):
    l2 = estimate_kernel(pair.hr, pair.lr)
    mi = estimate_kernel(pair.hr, pair.lr, similarity="mi", solver="gradient-descent",
                         init=l2.array)  # fmt: skip
    assert kernel_error(mi.array, TRUE) < 0.08
