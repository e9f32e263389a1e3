"""One kernel problem for every input: over the chunks of a dask pair (many boxes)
it gives the in-memory estimate (one box), for L2, MI and a similarity that is not
additive (gathered)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import boneframe.kernel.boxes as boxes_module
from boneframe.errors import InputError
from boneframe.interfaces import Similarity
from boneframe.kernel import KernelProblem, estimate_kernel, gaussian_start, lr_boxes
from boneframe.operators import valid_lr_slices
from boneframe.phantom import simulate_pair
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.similarity.l2 import L2
from boneframe.similarity.mi import MutualInformation
from boneframe.volume import Volume

#: relative agreement required between the chunked and the in-memory estimates
RTOL = 1e-5


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(64, seed=0, offset=0.05, noise=0.01, hr_noise=0.01)


def _lazy(pair, chunks: int = 32):
    return da.from_array(pair.hr, chunks=chunks), da.from_array(pair.lr, chunks=chunks // 2)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_boxes_tile_the_valid_region() -> None:
    lr = valid_lr_slices((64, 60, 50), (9, 7, 5), 2)
    boxes = lr_boxes(lr, ((16, 16), (12, 12, 6), (25,)))
    covered = np.zeros((32, 30, 25), dtype=int)
    for b in boxes:
        covered[b] += 1
    expected = np.zeros_like(covered)
    expected[lr] = 1
    np.testing.assert_array_equal(covered, expected)
    assert len(boxes) == 2 * 3 * 1


@pytest.mark.parametrize("support", [9, (5, 7, 3)])
def test_l2_exact_equals_in_memory(pair, support) -> None:
    mem = estimate_kernel(pair.hr, pair.lr, support=support)
    f, g = _lazy(pair)
    chk = estimate_kernel(f, g, support=support)  # dispatches on dask arrays
    assert _rel(chk.array, mem.array) < RTOL
    assert chk.offset == pytest.approx(mem.offset, rel=RTOL, abs=1e-7)
    # GCV's score is flat at its minimum: the float32 rounding of the Gram matrix
    # moves alpha ~1e-5 relative while the kernel moves ~1e-6
    assert chk.alpha == pytest.approx(mem.alpha, rel=1e-4)
    assert chk.solver == "exact" and chk.converged
    assert chk.history[-1]["objective"] == pytest.approx(mem.history[-1]["objective"], rel=1e-6)


def test_l2_uneven_chunks_volume_and_fixed_alpha(pair) -> None:
    mem = estimate_kernel(pair.hr, pair.lr, support=7, alpha=0.05)
    f = Volume(da.from_array(pair.hr, chunks=(24, 40, 64)), voxel_size=0.041)
    g = Volume(da.from_array(pair.lr, chunks=(12, 20, 9)), voxel_size=0.082)
    chk = estimate_kernel(f, g, support=7, alpha=0.05)
    assert _rel(chk.array, mem.array) < RTOL
    assert chk.offset == pytest.approx(mem.offset, rel=RTOL)


def test_l2_statistics_equal_in_memory(pair) -> None:
    f, g = _lazy(pair)
    reg = GradientL2(weight=0.1)
    mem = KernelProblem(pair.hr.astype(float), pair.lr.astype(float), L2(), reg, 7, 2)
    chk = KernelProblem(f, g, L2(), reg, 7, 2)
    a, b = mem.quadratic_statistics(), chk.quadratic_statistics()
    assert len(mem.boxes.parts) == 1 and len(chk.boxes.parts) == 8
    assert chk.f_mean == pytest.approx(mem.f_mean, rel=1e-12)
    assert b.n_valid == a.n_valid
    assert b.g_sum == pytest.approx(a.g_sum, rel=1e-12)
    assert b.g_perp == pytest.approx(a.g_perp, rel=1e-12)
    assert _rel(b.xt1, a.xt1) < 1e-12 and _rel(b.xtg, a.xtg) < 1e-12
    assert _rel(b.xtx, a.xtx) < 1e-6  # float32 blocks summed in a different order
    h = gaussian_start(1.5, 7) * 0.9
    assert chk.best_offset(h) == pytest.approx(mem.best_offset(h), rel=1e-10)
    assert chk.value(h) == pytest.approx(mem.value(h), rel=1e-10)
    va, ga = mem.value_and_grad(h)
    vb, gb = chk.value_and_grad(h)
    assert vb == pytest.approx(va, rel=1e-10) and _rel(gb, ga) < 1e-10
    assert chk.start_scale(h) == pytest.approx(mem.start_scale(h), rel=1e-10)
    assert chk.fit_gain_offset(h) == pytest.approx(mem.fit_gain_offset(h), rel=1e-9)


def test_l2_gradient_descent_equals_in_memory(pair) -> None:
    kw = dict(support=5, alpha=0.1, solver="gradient-descent", max_iter=8)
    mem = estimate_kernel(pair.hr, pair.lr, **kw)
    chk = estimate_kernel(*_lazy(pair), **kw)
    assert _rel(chk.array, mem.array) < RTOL
    assert chk.offset == pytest.approx(mem.offset, rel=RTOL)


@pytest.mark.parametrize("cache_boxes", [False, True])
def test_mi_value_and_gradient_equal_in_memory(pair, cache_boxes) -> None:
    sim, reg = MutualInformation(), GradientL2(weight=0.01)
    mem = KernelProblem(pair.hr.astype(float), pair.lr.astype(float), sim, reg, 9, 2)
    chk = KernelProblem(*_lazy(pair), sim, reg, 9, 2, cache_boxes=cache_boxes)
    rng = np.random.default_rng(3)
    for sigma in (1.0, 2.0):
        h = mem.project(gaussian_start(sigma, 9) + 1e-3 * rng.random((9, 9, 9)))
        va, ga = mem.value_and_grad(h)
        vb, gb = chk.value_and_grad(h)
        assert vb == pytest.approx(va, rel=1e-12)
        assert _rel(gb, ga) < 1e-10
        assert chk.value(h) == pytest.approx(mem.value(h), rel=1e-12)
        assert chk.fit_gain_offset(h) == pytest.approx(mem.fit_gain_offset(h), rel=1e-9)


def test_mi_exact_method_gradient_equals_in_memory() -> None:
    small = simulate_pair(32, seed=2, noise=0.01, hr_noise=0.01)
    sim, reg = MutualInformation(method="exact", bins=32), GradientL2(weight=0.0)
    mem = KernelProblem(small.hr.astype(float), small.lr.astype(float), sim, reg, 5, 2)
    f, g = da.from_array(small.hr, chunks=16), da.from_array(small.lr, chunks=8)
    chk = KernelProblem(f, g, sim, reg, 5, 2)
    h = gaussian_start(1.2, 5)
    va, ga = mem.value_and_grad(h)
    vb, gb = chk.value_and_grad(h)
    assert vb == pytest.approx(va, rel=1e-12) and _rel(gb, ga) < 1e-10


@pytest.mark.parametrize("method", ["splat", "exact"])
def test_mi_converged_estimate_equals_in_memory(method) -> None:
    # the quadratic splat, like the literal sums, makes the loss continuously
    # differentiable, and gradient descent stops within ~1e-6 of the minimiser, so
    # rounding differences of the chunked sums do not move the converged kernel
    # (a linear splat left it spread by ~3e-5; benchmarks/bench_chunked_kernel.py)
    small = simulate_pair(40, seed=1, offset=0.05, noise=0.01, hr_noise=0.01)
    kw = dict(similarity="mi", solver="gradient-descent", support=7, max_iter=600)
    if method == "exact":
        kw["similarity_params"] = {"method": "exact", "bins": 32, "parzen_width": 1.0}
    mem = estimate_kernel(small.hr, small.lr, **kw)
    f, g = da.from_array(small.hr, chunks=20), da.from_array(small.lr, chunks=10)
    chk = estimate_kernel(f, g, **kw)
    assert mem.converged and chk.converged, (mem.message, chk.message)
    assert _rel(chk.array, mem.array) < RTOL
    assert chk.offset == pytest.approx(mem.offset, rel=RTOL)
    assert chk.gain == pytest.approx(mem.gain, rel=RTOL)


def test_refusals(pair) -> None:
    f, g = _lazy(pair)
    with pytest.raises(InputError, match="shapes do not match"):
        estimate_kernel(f, g[:-1])
    with pytest.raises(InputError, match="fewer than"):
        estimate_kernel(f[:20, :20, :20], g[:10, :10, :10], support=9)
    with pytest.raises(InputError, match="needs a quadratic similarity"):
        estimate_kernel(f, g, similarity="mi", solver="exact")
    bad = da.from_array(np.where(np.arange(64)[:, None, None] == 3, np.nan, pair.hr), chunks=32)
    with pytest.raises(InputError, match="NaN"):
        estimate_kernel(bad, g)
    with pytest.raises(InputError, match="constant"):
        estimate_kernel(f, da.ones_like(g))


class Cubic(Similarity):
    """Sum of cubed absolute residuals: smooth, scale-sensitive, not additive
    (no ``evaluate``), so blocked input gathers ``u`` and ``g``."""

    name = "cubic-test"

    def __call__(self, u, g):
        return float(np.sum(np.abs(u - g) ** 3)) / u.size

    def grad(self, u, g):
        r = u - g
        return 3.0 * r * np.abs(r) / u.size


def test_a_similarity_without_sums_runs_on_chunks(pair, monkeypatch) -> None:
    calls = {"boxes": 0}
    gather = boxes_module._gather_box

    def counted(*args):
        calls["boxes"] += 1
        return gather(*args)

    monkeypatch.setattr(boxes_module, "_gather_box", counted)
    reg = GradientL2(weight=0.05)
    mem = KernelProblem(pair.hr.astype(float), pair.lr.astype(float), Cubic(), reg, 5, 2)
    chk = KernelProblem(*_lazy(pair), Cubic(), reg, 5, 2)
    h = gaussian_start(1.3, 5)
    calls["boxes"] = 0
    va, ga = mem.value_and_grad(h)
    assert calls["boxes"] >= 1
    in_memory_calls, calls["boxes"] = calls["boxes"], 0
    vb, gb = chk.value_and_grad(h)
    # the chunked pass gathered u over the 8 boxes, the in-memory one over its one box
    assert calls["boxes"] == 8 * in_memory_calls
    assert vb == pytest.approx(va, rel=1e-12) and _rel(gb, ga) < 1e-10
    assert chk.best_offset(h) == pytest.approx(mem.best_offset(h), rel=1e-8, abs=1e-10)
