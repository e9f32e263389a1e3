"""Total variation: values by hand, proximal steps, registration."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.registry import get_registry
from boneframe.regularizers.tv import TV


def test_value_of_a_step_is_its_area():
    x = np.zeros((4, 4, 4))
    x[2:] = 3.0  # one jump of 3 across a 4 x 4 face
    assert TV()(x) == pytest.approx(48.0)
    assert TV(weight=0.5)(x) == pytest.approx(24.0)
    assert TV(anisotropic=True)(x) == pytest.approx(48.0)


def test_isotropic_and_anisotropic_differ_on_a_diagonal_ramp():
    i, j, _ = np.meshgrid(np.arange(3.0), np.arange(3.0), np.arange(2.0), indexing="ij")
    x = i + j
    # Neumann differences: D_0 = 1 on rows 0-1, D_1 = 1 on columns 0-1; per (i, j) cell
    # both components are 1 on 2 x 2 cells, exactly one on 2 + 2 cells; times 2 slices
    assert TV()(x) == pytest.approx(2 * (4 * np.sqrt(2) + 4))
    assert TV(anisotropic=True)(x) == pytest.approx(2 * (4 * 2 + 4))


def test_isotropic_shrinkage_by_hand():
    v = np.zeros((3, 2, 1, 1))
    v[:, 0, 0, 0] = (3.0, 4.0, 0.0)  # norm 5
    v[:, 1, 0, 0] = (0.3, 0.0, 0.4)  # norm 0.5, below the threshold
    out = TV(weight=2.0).prox_penalty(v, 0.5)  # threshold 1
    np.testing.assert_allclose(out[:, 0, 0, 0], (2.4, 3.2, 0.0))
    np.testing.assert_allclose(out[:, 1, 0, 0], 0.0)


def test_anisotropic_soft_threshold_by_hand():
    v = np.array([3.0, -0.5, -4.0]).reshape(3, 1, 1, 1)
    out = TV(anisotropic=True).prox_penalty(v, 1.0)
    np.testing.assert_allclose(out.ravel(), (2.0, 0.0, -3.0))


def test_shrinkage_of_zero_is_finite():
    out = TV().prox_penalty(np.zeros((3, 2, 2, 2), dtype=np.float32), 1.0)
    assert out.dtype == np.float32 and np.all(out == 0)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_prox_penalty_minimises_its_objective(anisotropic):
    rng = np.random.default_rng(0)
    tv = TV(weight=0.7, anisotropic=anisotropic)
    v = rng.standard_normal((3, 4, 4, 4))
    tau = 0.8
    z = tv.prox_penalty(v, tau)

    def objective(w):
        return tau * tv.penalty(w) + 0.5 * np.sum((w - v) ** 2)

    best = objective(z)
    for _ in range(20):
        assert objective(z + 0.05 * rng.standard_normal(z.shape)) > best


def test_tv_is_not_smooth_and_refuses_a_gradient():
    assert TV.smooth is False
    with pytest.raises(NotImplementedError):
        TV().grad(np.zeros((2, 2, 2)))
    with pytest.raises(InputError):
        TV().prox_penalty(np.zeros((3, 2, 2, 2)), -1.0)


def test_registered_as_tv():
    reg = get_registry().create("regularizer", "tv", {"weight": 2.0})
    assert isinstance(reg, TV) and reg.params.weight == 2.0
    with pytest.raises(ValueError):
        TV(weight=-1.0)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_value_of_a_shrunk_field_is_remembered_correctly(anisotropic):
    tv = TV(weight=1.3, anisotropic=anisotropic)
    v = np.random.default_rng(1).standard_normal((3, 5, 5, 5))
    out = tv.prox_penalty(v, 0.4)
    assert tv.penalty(out) == pytest.approx(tv.penalty(out.copy()), rel=1e-12)
