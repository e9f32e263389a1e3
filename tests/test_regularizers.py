"""A regulariser is a penalty of the differences: R(x) = phi(D x), grad R = D^T grad phi(D x)."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.operators import Gradient
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.regularizers.tv import TV


def test_gradient_l2_gradient_by_finite_differences(rng) -> None:
    reg = GradientL2(weight=0.7)
    x = rng.standard_normal((5, 4, 6))
    d = rng.standard_normal(x.shape)
    eps = 1e-6
    fd = (reg(x + eps * d) - reg(x - eps * d)) / (2 * eps)
    assert np.vdot(reg.grad(x), d) == pytest.approx(fd, rel=1e-7)


def test_gradient_l2_by_hand() -> None:
    """A unit step between two halves: one difference of 1 per column, 4 x 4 of them."""
    x = np.zeros((4, 4, 4))
    x[2:] = 1.0
    assert GradientL2(weight=2.0)(x) == 2.0 * 16
    # grad = 2 w D^T D x: the two slices at the step pull towards each other
    g = GradientL2(weight=2.0).grad(x)
    np.testing.assert_allclose(g[1], -4.0)
    np.testing.assert_allclose(g[2], 4.0)
    np.testing.assert_allclose(g[[0, 3]], 0.0)


@pytest.mark.parametrize("reg", [GradientL2(weight=0.3), TV(weight=1.5)])
def test_value_is_the_penalty_of_the_neumann_differences(rng, reg) -> None:
    x = rng.random((6, 5, 4))
    d = Gradient(x.shape, "neumann").matvec(x)
    assert reg(x) == pytest.approx(reg.penalty(d), rel=1e-12)


def test_gradient_l2_prox_minimises_its_objective(rng) -> None:
    reg, tau = GradientL2(weight=0.4), 0.8
    v = rng.standard_normal((3, 4, 4, 4))
    z = reg.prox_penalty(v, tau)

    def objective(w):
        return reg.penalty(w) + np.vdot(w - v, w - v) / (2 * tau)

    for _ in range(5):
        assert objective(z) <= objective(z + 1e-3 * rng.standard_normal(v.shape))
