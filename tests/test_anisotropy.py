"""MIL fabric tensor and degree of anisotropy (DA)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.interfaces import MetricInput
from boneframe.metrics import measure
from boneframe.metrics.anisotropy import (
    DegreeOfAnisotropy,
    MilFabric,
    MilRatio,
    fit_fabric,
    mil_fabric,
    sphere_directions,
)

FAST = {"directions": 64, "lines": 900}


def plates(axis: int = 2, n: int = 40, period: int = 8, thickness: int = 3) -> np.ndarray:
    vol = np.zeros((n, n, n), dtype=bool)
    index = [slice(None)] * 3
    for start in range(2, n, period):
        index[axis] = slice(start, start + thickness)
        vol[tuple(index)] = True
    return vol


def isotropic(n: int = 48, seed: int = 0) -> np.ndarray:
    """Thresholded Gaussian-smoothed noise: a random structure with no preferred direction."""
    g = ndimage.gaussian_filter(
        np.random.default_rng(seed).standard_normal((n,) * 3), 2, mode="wrap"
    )
    return g > np.quantile(g, 0.75)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_parallel_plates_are_anisotropic(axis):
    fabric = mil_fabric(plates(axis), **FAST)
    assert fabric.da > 0.9
    assert fabric.mil_ratio > 3
    # the most intercepts (largest eigenvalue) across the plates, along `axis`
    assert abs(fabric.eigenvectors[axis, 2]) > 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_isotropic_random_structure(seed):
    fabric = mil_fabric(isotropic(seed=seed), **FAST)
    assert fabric.da < 0.15
    assert fabric.mil_ratio < 1.1


def test_rods_are_anisotropic_but_less_than_plates():
    vol = np.zeros((40, 40, 40), dtype=bool)
    for a in range(3, 40, 8):
        for b in range(3, 40, 8):
            vol[:, a : a + 3, b : b + 3] = True  # rods along axis 0
    fabric = mil_fabric(vol, **FAST)
    assert fabric.da > 0.9  # no intercepts along the rods
    assert abs(fabric.eigenvectors[0, 0]) > 0.99  # the longest MIL runs along them


def test_da_is_seeded_and_repeatable():
    vol = isotropic()
    a = mil_fabric(vol, seed=3, **FAST)
    b = mil_fabric(vol, seed=3, **FAST)
    c = mil_fabric(vol, seed=4, **FAST)
    assert a.da == b.da and np.array_equal(a.changes, b.changes)
    assert a.da != c.da


def test_fit_recovers_a_known_tensor():
    # exact data from a known positive tensor is fitted exactly
    m = np.array([[3.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 1.0]])
    d = sphere_directions(50, seed=1)
    y = np.einsum("ni,ij,nj->n", d, m, d)
    assert np.allclose(fit_fabric(d, y), m)


def test_sphere_directions_are_unit_and_on_one_half():
    d = sphere_directions(100, seed=0)
    assert np.allclose(np.linalg.norm(d, axis=1), 1)
    assert (d[:, 2] >= 0).all()
    assert np.array_equal(d, sphere_directions(100, seed=0))


def test_counts_along_an_axis_by_hand():
    # lines along axis 2 through 3 plates of thickness 2: 6 changes per line
    vol = np.zeros((10, 10, 30), dtype=bool)
    for s in (4, 14, 24):
        vol[:, :, s : s + 2] = True
    from boneframe.metrics.thickness_kernels import intercept_counts

    d = np.array([[0.0, 0.0, 1.0]])
    changes, lengths = intercept_counts(vol, d, np.array([[0.5, 0.5, 0.5]]), 1.0, 1.0)
    lines = changes[0] // 6
    assert changes[0] == 6 * lines and lines > 0
    assert lengths[0] == pytest.approx(30 * lines)


def test_errors():
    with pytest.raises(InputError, match="too few"):
        mil_fabric(np.zeros((10, 10, 10), dtype=bool), **FAST)
    with pytest.raises(InputError):
        mil_fabric(plates(), directions=3)
    with pytest.raises(InputError):
        mil_fabric(plates(), increment=0)
    with pytest.raises(InputError):
        mil_fabric(np.zeros((4, 4)))


def test_metric_strategies_share_one_fabric():
    from pydantic import ValidationError

    metric, ratio = DegreeOfAnisotropy(**FAST), MilRatio(**FAST)
    assert metric.name == "da" and metric.description and not metric.has_block_form()
    data = MetricInput(plates().astype(np.float32) * 100, voxel_size=(50.0,) * 3, threshold=50.0)
    assert metric(data) > 0.9 and ratio(data) > 3
    assert list(data.values) == [MilFabric(**FAST)]  # one fabric for both
    m = measure(plates(), voxel_size=50.0, names=[metric, ratio])
    assert (m["da"], m["mil_ratio"]) == (metric(data), ratio(data))
    with pytest.raises(InputError, match="isotropic"):
        metric(MetricInput(plates(), voxel_size=(50.0, 50.0, 100.0), threshold=0.5))
    with pytest.raises(ValidationError):
        DegreeOfAnisotropy(directions=2)
    with pytest.raises(ValidationError):
        DegreeOfAnisotropy(bogus=1)
