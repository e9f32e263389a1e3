"""L2 similarity: value, gradient, normalisation, registration."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.registry import get_registry
from boneframe.similarity import BUILTIN_SIMILARITIES
from boneframe.similarity.l2 import L2


def test_value_by_hand() -> None:
    g = np.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2)
    u = g + np.array([1.0, 0.0, -1.0, 2.0]).reshape(1, 2, 2)
    # ||u - g||² = 6; energy of g about its mean 1.5 = 5; N = 4
    assert L2()(u, g) == pytest.approx(6.0 / 5.0)
    assert L2(normalise="voxels")(u, g) == pytest.approx(6.0 / 4.0)
    assert L2(normalise="none")(u, g) == pytest.approx(6.0)


@pytest.mark.parametrize("normalise", ["variance", "voxels", "none"])
def test_gradient_matches_finite_differences(normalise: str) -> None:
    rng = np.random.default_rng(1)
    g = rng.random((4, 5, 6))
    u = rng.random((4, 5, 6))
    sim = L2(normalise=normalise)
    v = rng.standard_normal(u.shape)
    eps = 1e-4
    fd = (sim(u + eps * v, g) - sim(u - eps * v, g)) / (2 * eps)
    an = float(np.vdot(sim.grad(u, g), v))
    assert abs(fd - an) <= 1e-8 * abs(an)
    value, grad = sim.value_and_grad(u, g)
    assert value == sim(u, g)
    np.testing.assert_array_equal(grad, sim.grad(u, g))


def test_scale_free_by_default() -> None:
    rng = np.random.default_rng(2)
    g, u = rng.random((3, 4, 5)), rng.random((3, 4, 5))
    assert L2()(1000 * u, 1000 * g) == pytest.approx(L2()(u, g), rel=1e-12)
    assert L2(normalise="none")(1000 * u, 1000 * g) == pytest.approx(
        1e6 * L2(normalise="none")(u, g)
    )


def test_registered_and_quadratic() -> None:
    assert L2 in BUILTIN_SIMILARITIES
    cls = get_registry().get("similarity", "l2")
    assert cls is L2
    assert cls.quadratic and cls.scale_sensitive
    with pytest.raises(ValueError):
        L2(normalise="energy")
