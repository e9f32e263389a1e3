"""The block bootstrap of a kernel estimate: cell weights count a cell's voxels
several times (checked against hand-built duplicated data), the exact and the
solver paths agree, and the intervals are reproducible, chunk-independent and
refuse bad input."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

from boneframe.additive import evaluate_similarity
from boneframe.errors import InputError
from boneframe.kernel import KernelProblem, estimate_kernel, gaussian_start
from boneframe.kernel.bootstrap import (
    KernelUncertainty,
    _ExactReplicates,
    _regularizers,
    _SolverReplicates,
    bootstrap_kernel,
)
from boneframe.kernel.estimate import _solver
from boneframe.kernel.quadratic import regularizer_hessian
from boneframe.kernel.summary import summarize_kernel
from boneframe.operators import valid_lr_slices
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.similarity.l2 import L2
from boneframe.similarity.mi import MutualInformation

#: a kernel narrow enough for a 5³ support (its FWHM and MTF are defined there)
KERNEL = gaussian_kernel((1.1, 1.0, 0.95), 5, (0.2, -0.1, 0.0))
SIDECAR_KEYS = {"fwhm_um_ci", "mtf50_lpmm_ci", "mtf10_lpmm_ci", "alpha_sensitivity", "bootstrap"}


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(32, seed=0, noise=0.01, offset=0.05, kernel=KERNEL)


@pytest.fixture(scope="module")
def small():
    """A 16³ pair: 7³ valid voxels for a 3³ kernel, small enough to write X out."""
    return simulate_pair(16, seed=1, noise=0.02, kernel=gaussian_kernel(0.7, 3))


@pytest.fixture(scope="module")
def boot(pair) -> KernelUncertainty:
    hr, lr = pair.volumes()
    return bootstrap_kernel(hr, lr, replicates=20, support=5, seed=3)


def design_matrix(f: np.ndarray, support: int, p: int = 2) -> np.ndarray:
    """``X`` with ``(X h)_i = sum_k h_k f[p i + r - k]`` over the valid voxels, by hand."""
    r = support // 2
    lr = valid_lr_slices(f.shape, (support,) * 3, (p,) * 3)
    cols = []
    for k in np.ndindex(support, support, support):
        sl = tuple(
            slice(p * s.start + r - kk, p * (s.stop - 1) + r - kk + 1, p)
            for s, kk in zip(lr, k, strict=True)
        )
        cols.append(f[sl].ravel())
    return np.stack(cols, axis=1)


def duplicated(x: np.ndarray, cell: tuple[slice, ...]) -> np.ndarray:
    """The valid-region values ``x`` (3D) with those of ``cell`` once more (flat)."""
    return np.concatenate([x.ravel(), x[cell].ravel()])


def local(problem: KernelProblem, j: int) -> tuple[slice, ...]:
    """Cell ``j`` in valid-region coordinates."""
    origin = [s.start for s in problem.boxes.lr_slices]
    return tuple(
        slice(s.start - o, s.stop - o) for s, o in zip(problem.boxes.cells[j], origin, strict=True)
    )


# -- weights ----------------------------------------------------------------------------
@pytest.mark.parametrize("sim", [L2(), MutualInformation()], ids=["l2", "mi"])
def test_no_weights_is_bit_identical(pair, sim) -> None:
    h = gaussian_start(1.2, 5)
    plain = KernelProblem(pair.hr, pair.lr, sim, GradientL2(weight=0.1), 5, 2)
    cells = KernelProblem(pair.hr, pair.lr, sim, GradientL2(weight=0.1), 5, 2, box=4)
    v0, g0 = plain.value_and_grad(h)
    v1, g1 = cells.value_and_grad(h)
    assert v0 == v1 and np.array_equal(g0, g1)
    cells.weights = np.arange(cells.boxes.n_cells) % 3
    cells.value_and_grad(h)
    cells.weights = None  # back to the plain passes
    v2, g2 = cells.value_and_grad(h)
    assert v0 == v2 and np.array_equal(g0, g2)
    assert cells.n_valid == plain.n_valid and cells.data == plain.data


@pytest.mark.parametrize("sim", [L2(), MutualInformation()], ids=["l2", "mi"])
def test_all_ones_is_the_unweighted_problem(pair, sim) -> None:
    h = gaussian_start(1.2, 5)
    plain = KernelProblem(pair.hr, pair.lr, sim, GradientL2(weight=0.1), 5, 2)
    cells = KernelProblem(pair.hr, pair.lr, sim, GradientL2(weight=0.1), 5, 2, box=4)
    cells.weights = np.ones(cells.boxes.n_cells, dtype=int)
    v0, g0 = plain.value_and_grad(h)
    v1, g1 = cells.value_and_grad(h)
    assert v1 == pytest.approx(v0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-13 * np.abs(g0).max())
    if sim.quadratic:
        a0, b0 = plain.normal_equations()
        a1, b1 = cells.normal_equations()
        # Gram matrices are float32 products summed in float64 (ValidDesign.gram):
        # by pieces or whole, they agree to that precision
        np.testing.assert_allclose(a1, a0, rtol=0, atol=1e-5 * np.abs(a0).max())
        np.testing.assert_allclose(b1, b0, rtol=0, atol=1e-12 * np.abs(b0).max())
        stats = cells.quadratic_cells().statistics(None)
        xtx = plain.quadratic_statistics().xtx
        np.testing.assert_allclose(stats.xtx, xtx, rtol=0, atol=1e-5 * np.abs(xtx).max())


def test_weight_two_is_the_cell_twice_l2(small) -> None:
    """L2 normal equations with cell j counted twice = least squares on hand-built
    rows with cell j's rows appended."""
    f, g = small.hr.astype(float), small.lr.astype(float)
    reg = GradientL2(weight=0.05)
    problem = KernelProblem(f, g, L2(), reg, 3, 2, box=(4, 7, 7))
    assert problem.boxes.n_cells == 2
    j = 1
    weights = np.array([1, 2])
    cell = local(problem, j)
    x = design_matrix(f, 3)
    lr = valid_lr_slices(f.shape, (3,) * 3, (2,) * 3)
    np.testing.assert_allclose(
        x @ KERNEL[1:4, 1:4, 1:4].ravel(), problem.predict(KERNEL[1:4, 1:4, 1:4], 0.0).ravel()
    )
    rows = np.arange(x.shape[0]).reshape(problem.boxes.valid_shape)
    x_dup = x[duplicated(rows, cell)]
    g_dup = duplicated(g[lr], cell)
    # the profiled problem: ||P (X h - g)||^2 / Z + alpha ||grad h||^2, Z the energy of g
    centre = x_dup - x_dup.mean(axis=0)
    gc = g_dup - g_dup.mean()
    kappa = 2.0 / float(gc @ gc)
    hess, _ = regularizer_hessian(reg, (3, 3, 3))
    h_hand = np.linalg.solve(kappa * centre.T @ centre + hess, kappa * centre.T @ gc)

    tol = 1e-5 * np.abs(h_hand).max()  # float32 Gram products (ValidDesign.gram)
    problem.weights = weights  # the generic weighted passes
    a, b = problem.normal_equations()
    np.testing.assert_allclose(np.linalg.solve(a, b), h_hand, rtol=0, atol=tol)
    stats = problem.quadratic_cells().statistics(weights)  # the per-cell sums
    a2, b2 = stats.normal_equations(hess, np.zeros(27))
    np.testing.assert_allclose(np.linalg.solve(a2, b2), h_hand, rtol=0, atol=tol)
    assert problem.n_valid == stats.n_valid == x_dup.shape[0]


def test_weight_two_is_the_cell_twice_mi(small) -> None:
    """MI value and gradient with cell j counted twice = those of the hand-built data
    set holding cell j's voxels twice; the gradient also by finite differences."""
    f, g = small.hr.astype(float), small.lr.astype(float)
    sim = MutualInformation(bins=32)
    reg = GradientL2(weight=0.1)
    problem = KernelProblem(f, g, sim, reg, 3, 2, box=(4, 7, 7))
    h = gaussian_start(0.8, 3)
    cell = local(problem, 0)
    u = problem.predict(h, 0.0)  # unweighted: the valid region
    lr = valid_lr_slices(f.shape, (3,) * 3, (2,) * 3)
    u_dup, g_dup = duplicated(u, cell), duplicated(g[lr], cell)
    value_hand, w_dup = sim.value_and_grad(u_dup, g_dup)
    w = w_dup[: u.size].reshape(u.shape)
    w[cell] += w_dup[u.size :].reshape(u[cell].shape)
    grad_hand = design_matrix(f, 3).T @ w.ravel() + reg.grad(h).ravel()

    problem.weights = [2, 1]
    value = evaluate_similarity(sim, problem.blocks(h, 0.0), False)[0]
    assert value == pytest.approx(value_hand, rel=1e-12)
    objective, grad_h, grad_c = problem.objective(h, 0.0)
    assert objective == pytest.approx(value_hand + reg(h), rel=1e-12)
    np.testing.assert_allclose(
        grad_h.ravel(), grad_hand, rtol=0, atol=1e-9 * np.abs(grad_hand).max()
    )
    rng = np.random.default_rng(0)
    d = rng.standard_normal(h.shape) * 1e-5
    fd = (problem.objective(h + d, 0.0)[0] - problem.objective(h - d, 0.0)[0]) / 2
    assert fd == pytest.approx(float(np.vdot(grad_h, d)), rel=1e-5)
    fd_c = (problem.objective(h, 1e-6)[0] - problem.objective(h, -1e-6)[0]) / 2e-6
    assert fd_c == pytest.approx(grad_c, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("weights", [[1, 1, 1], [1, -1], [1.5, 1], [0, 0], [[1, 1]]], ids=str)
def test_bad_weights(small, weights) -> None:
    problem = KernelProblem(small.hr, small.lr, L2(), GradientL2(weight=0.1), 3, 2, box=(4, 7, 7))
    with pytest.raises(InputError, match="box weights"):
        problem.weights = weights


def test_weights_refuse_a_gathered_volume(small) -> None:
    problem = KernelProblem(small.hr, small.lr, L2(), GradientL2(weight=0.1), 3, 2, box=(4, 7, 7))
    problem.weights = [1, 1]
    assert problem.predict(gaussian_start(0.8, 3)).shape == problem.boxes.valid_shape
    problem.weights = [2, 0]
    with pytest.raises(InputError, match="additive"):
        problem.predict(gaussian_start(0.8, 3))


def test_solver_path_equals_exact_path(pair) -> None:
    """One replicate and its bias correction: gradient descent (the penalty centred
    on the replicate) and the per-cell normal equations agree."""
    est = estimate_kernel(pair.hr, pair.lr, support=5, alpha=0.05)
    make = _regularizers({"regularizer": "gradient-l2", "regularizer_params": None})
    problem = KernelProblem(pair.hr, pair.lr, L2(), make(0.05), 5, 2, box=4)
    weights = np.random.default_rng(0).multinomial(problem.boxes.n_cells, [1 / 64] * 64)
    h, hd = _ExactReplicates(problem, make).solve(weights, 0.05, True)
    slv = _solver("gradient-descent", 20000, 1e-12, None)
    h2, hd2 = _SolverReplicates(problem, slv, est, make).solve(weights, 0.05, True)
    assert hd is not None and hd2 is not None
    np.testing.assert_allclose(h2, h, rtol=0, atol=1e-5 * np.abs(h).max())
    np.testing.assert_allclose(hd2, hd, rtol=0, atol=1e-5 * np.abs(hd).max())
    assert not np.allclose(hd, h, atol=1e-3 * np.abs(h).max())  # the correction acts


# -- the bootstrap ----------------------------------------------------------------------
def test_sidecar(boot) -> None:
    side = boot.sidecar()
    assert set(side) == SIDECAR_KEYS
    assert json.loads(json.dumps(side)) == side
    how = side["bootstrap"]
    assert how["replicates"] == 20 and how["seed"] == 3 and how["level"] == 0.95
    assert how["box"] == [3, 3, 3] and boot.cells == [5, 5, 5]
    assert how["interval"] == "bias-aware"
    assert set(side["alpha_sensitivity"]) == {
        "alpha",
        "fwhm_um_half_alpha",
        "fwhm_um_double_alpha",
    }
    for key in ("fwhm_um_ci", "mtf50_lpmm_ci", "mtf10_lpmm_ci"):
        assert len(side[key]) == 3
        for lo, hi in side[key]:
            assert lo is not None and hi is not None and 0 < lo < hi
    assert how["alpha"] == boot.estimate.alpha > 0


def test_intervals_contain_the_estimate(pair, boot) -> None:
    """Percentile: the estimate; debiased: the corrected estimate; the default
    (bias-aware): both, as the union of the two."""
    hr, lr = pair.volumes()
    options = {"replicates": 20, "support": 5, "seed": 3, "estimate": boot.estimate}
    plain = bootstrap_kernel(hr, lr, interval="percentile", **options)
    corrected = bootstrap_kernel(hr, lr, interval="debiased", **options)
    assert boot.interval == "bias-aware" and plain.debiased is None
    assert corrected.debiased == boot.debiased is not None
    summary = boot.estimate.summary()
    for key in ("fwhm_um", "mtf50_lpmm", "mtf10_lpmm"):
        cis = [getattr(out, f"{key}_ci") for out in (plain, corrected, boot)]
        for axis, ((a, b), (c, d), (lo, hi)) in enumerate(zip(*cis, strict=True)):
            assert a <= summary[key][axis] <= b, (key, axis)
            assert c <= boot.debiased[key][axis] <= d, (key, axis)
            assert (lo, hi) == (min(a, c), max(b, d))
            assert lo <= summary[key][axis] <= hi and lo <= boot.debiased[key][axis] <= hi


def test_alpha_sensitivity_is_the_estimate_at_half_and_double(pair, boot) -> None:
    sens = boot.alpha_sensitivity
    alpha = boot.alpha
    for factor, key in ((0.5, "fwhm_um_half_alpha"), (2.0, "fwhm_um_double_alpha")):
        k = estimate_kernel(pair.hr, pair.lr, support=5, alpha=factor * alpha, voxel_size=41.0)
        np.testing.assert_allclose(sens[key], k.summary()["fwhm_um"], rtol=1e-4)


def test_seeded(pair, boot) -> None:
    hr, lr = pair.volumes()
    again = bootstrap_kernel(hr, lr, replicates=20, support=5, seed=3, estimate=boot.estimate)
    other = bootstrap_kernel(hr, lr, replicates=20, support=5, seed=4, estimate=boot.estimate)
    a, b = again.sidecar(), boot.sidecar()
    a["bootstrap"].pop("seconds"), b["bootstrap"].pop("seconds")
    assert a == b
    assert other.fwhm_um_ci != boot.fwhm_um_ci
    assert np.array_equal(again.samples["fwhm_um"], boot.samples["fwhm_um"])


def test_dask_pair_gives_the_same_intervals(pair, boot) -> None:
    """Chunks that cut across the cells: the same cells are drawn, the same figures."""
    f = da.from_array(pair.hr, chunks=(12, 20, 32))
    g = da.from_array(pair.lr, chunks=(6, 10, 16))
    # GCV's alpha moves by 1e-4 with the float32 rounding of the Gram matrix: fix it
    lazy = bootstrap_kernel(
        f, g, replicates=20, support=5, seed=3, voxel_size=41.0, alpha=boot.alpha
    )
    for key in boot.samples:
        np.testing.assert_allclose(lazy.samples[key], boot.samples[key], rtol=1e-5)
    np.testing.assert_allclose(lazy.fwhm_um_ci, boot.fwhm_um_ci, rtol=1e-5)


def test_solver_bootstrap_mi_runs_and_stops(pair) -> None:
    hr, lr = pair.volumes()
    seen = []

    def stop_after_twelve(b: int, record: dict) -> bool:
        seen.append((b, record))
        return b == 11

    est = estimate_kernel(hr, lr, support=5, similarity="mi", max_iter=10)
    out = bootstrap_kernel(
        hr, lr, replicates=30, support=5, similarity="mi", max_iter=10, seed=0,
        estimate=est, callback=stop_after_twelve,
    )  # fmt: skip
    assert out.replicates == 12 and [b for b, _ in seen] == list(range(12))
    assert set(seen[0][1]) == {"fwhm_um", "mtf50_lpmm", "mtf10_lpmm", "seconds"}
    assert out.alpha == est.alpha and out.samples["fwhm_um"].shape == (12, 3)
    for lo, hi in out.fwhm_um_ci:
        assert lo is not None and hi is not None and lo < hi


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"replicates": 5}, "replicates must be at least 10"),
        ({"replicates": 10.5}, "replicates must be an integer"),
        ({"level": 1.0}, "level must be a number in"),
        ({"level": 0}, "level must be a number in"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"interval": "bca"}, "interval must be one of"),
        ({"box": 0}, "box must be one or three positive integers"),
        ({"box": (3, 3)}, "box must be one or three positive integers"),
        ({"box": 20}, "fewer than 8: use a smaller box"),
        ({"callback_every": 2}, "unknown option"),
        ({"alpha": -1.0}, "alpha must be"),
    ],
)
def test_bad_input(pair, kwargs, match) -> None:
    hr, lr = pair.volumes()
    with pytest.raises(InputError, match=match):
        bootstrap_kernel(hr, lr, **{"support": 5, **kwargs})


def test_needs_a_voxel_size(pair) -> None:
    with pytest.raises(InputError, match="voxel size is unknown"):
        bootstrap_kernel(pair.hr, pair.lr, support=5)


def test_estimate_must_match(pair, boot) -> None:
    hr, lr = pair.volumes()
    with pytest.raises(InputError, match="does not match"):
        bootstrap_kernel(hr, lr, support=7, estimate=boot.estimate)


def test_true_kernel_figures_are_comparable(pair, boot) -> None:
    """The intervals are in the units of the summary of the true kernel."""
    truth = summarize_kernel(KERNEL, 41.0)["fwhm_um"]
    for (lo, hi), t in zip(boot.fwhm_um_ci, truth, strict=True):
        assert 0.8 * t < lo < hi < 1.2 * t
