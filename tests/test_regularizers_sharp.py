"""Non-convex gradient penalties (log-tv, mcp-tv): proximal steps against brute force,
gradients against finite differences, registration, scale-freeness, sharper than TV."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from boneframe.errors import InputError
from boneframe.metrics import measure
from boneframe.operators import Gradient
from boneframe.phantom import simulate_pair
from boneframe.registry import get_registry
from boneframe.regularizers import BUILTIN_REGULARIZERS
from boneframe.regularizers.sharp import MCPTV, LogTV, grey_range
from boneframe.regularizers.tv import TV
from boneframe.superres import GREY_RANGE, super_resolve

# weights, edge scales and steps chosen so that both the convex regime (tau * weight
# below the edge scale: a continuous shrinkage) and the non-convex one (a jump) occur
LOG_CASES = [
    LogTV(weight=1.0, epsilon=0.1),
    LogTV(weight=2.0, epsilon=0.01),
    LogTV(weight=1.5, epsilon=0.03, tv_share=0.4),
    LogTV(weight=0.7, epsilon=0.02, tv_share=1.0),
]
MCP_CASES = [MCPTV(weight=1.0, gamma=0.5), MCPTV(weight=3.0, gamma=0.05)]
TAUS = [0.5, 4.0, 20.0]


def _phi_norm(reg, t):
    """phi of a norm, through the penalty of a field holding it."""
    v = np.zeros((3, t.size, 1, 1))
    v[1, :, 0, 0] = t
    return np.array([reg.penalty(v[:, i : i + 1]) for i in range(t.size)])


def _phi_grid(reg, t):
    """phi on a grid of norms (vectorised, from the formulas of the docstrings)."""
    if isinstance(reg, LogTV):
        w, k, e = reg.params.weight, reg.params.tv_share, reg.eps
        return w * (k * t + (1 - k) * e * np.log1p(t / e))
    w, c = reg.params.weight, reg.height
    s = np.minimum(t, c)
    return w * (s - s * s / (2 * c))


def test_grey_range_is_the_normalised_scale_of_super_resolution():
    assert grey_range() == GREY_RANGE == 300.0


@pytest.mark.parametrize("reg", LOG_CASES + MCP_CASES, ids=repr)
def test_phi_by_the_penalty_matches_the_formula(reg):
    t = np.array([0.0, 0.5, 3.0, 20.0, 90.0, 400.0])
    np.testing.assert_allclose(_phi_norm(reg, t), _phi_grid(reg, t), rtol=1e-12)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("reg", LOG_CASES + MCP_CASES, ids=repr)
def test_prox_norm_is_the_brute_force_minimiser(reg, tau):
    """Against the minimum of phi(t) + (t - r)²/(2 tau) over a fine grid of t >= 0."""
    rs = np.concatenate([np.linspace(0.0, 200.0, 81), [1e-3, 7.3, 33.3, 151.0, 900.0]])
    got = reg.prox_norm(rs, tau)
    assert got.shape == rs.shape and np.all(got >= 0)
    for r, t in zip(rs, got, strict=True):
        grid = np.linspace(0.0, r + 1.0, 200_001)
        q = _phi_grid(reg, grid) + (grid - r) ** 2 / (2 * tau)
        q_t = float(_phi_grid(reg, np.array([t]))[0] + (t - r) ** 2 / (2 * tau))
        best = int(np.argmin(q))
        step = grid[1] - grid[0]
        # never worse than the grid's best (to the grid's resolution)
        assert q_t <= q[best] + 1e-9 * (1 + abs(q[best])), (r, t, grid[best])
        # the same minimiser, unless two minima tie to within the grid's resolution
        if abs(t - grid[best]) > 2 * step:
            assert abs(q_t - q[best]) <= 1e-6 * (1 + abs(q[best])), (r, t, grid[best])


@pytest.mark.parametrize("reg", LOG_CASES + MCP_CASES, ids=repr)
def test_prox_penalty_keeps_directions_and_maps_norms(reg, rng):
    v = 60.0 * rng.standard_normal((3, 5, 4, 3))
    v[:, 0, 0, 0] = 0.0  # a zero norm stays finite
    tau = 4.0
    out = reg.prox_penalty(v, tau)
    norm = np.sqrt(np.sum(v * v, axis=0))
    kept = np.sqrt(np.sum(out * out, axis=0))
    np.testing.assert_allclose(kept, reg.prox_norm(norm, tau), rtol=1e-12, atol=1e-12)
    # each kept vector is a non-negative multiple of its input
    cos = np.sum(out * v, axis=0)
    np.testing.assert_allclose(cos, kept * norm, rtol=1e-12, atol=1e-9)
    assert np.all(out[:, 0, 0, 0] == 0)
    # the value remembered for the output is its penalty
    assert reg.penalty(out) == pytest.approx(reg.penalty(out.copy()), rel=1e-12)


@pytest.mark.parametrize("reg", LOG_CASES + MCP_CASES, ids=repr)
def test_prox_penalty_beats_perturbations(reg, rng):
    v = 40.0 * rng.standard_normal((3, 4, 4, 4))
    tau = 3.0
    z = reg.prox_penalty(v, tau)

    def objective(w):
        return reg.penalty(w) + np.sum((w - v) ** 2) / (2 * tau)

    best = objective(z)
    for _ in range(10):
        assert best <= objective(z + 0.05 * rng.standard_normal(v.shape))


@pytest.mark.parametrize("reg", LOG_CASES + MCP_CASES, ids=repr)
def test_penalty_grad_by_finite_differences(reg, rng):
    # norms kept away from 0 (the kink) and, for MCP, from gamma (where phi'' jumps)
    v = rng.standard_normal((3, 4, 3, 5))
    v *= (rng.uniform(5.0, 80.0, v.shape[1:]) / np.sqrt(np.sum(v * v, axis=0)))[None]
    d = rng.standard_normal(v.shape)
    h = 1e-5
    fd = (reg.penalty(v + h * d) - reg.penalty(v - h * d)) / (2 * h)
    assert np.vdot(reg.penalty_grad(v), d) == pytest.approx(fd, rel=1e-6)
    assert np.all(reg.penalty_grad(np.zeros((3, 2, 2, 2))) == 0)


def test_value_is_the_penalty_of_the_neumann_differences(rng):
    x = 100.0 * rng.random((6, 5, 4))
    d = Gradient(x.shape, "neumann").matvec(x)
    for reg in (LogTV(epsilon=0.02), MCPTV(gamma=0.1)):
        assert reg(x) == pytest.approx(reg.penalty(d), rel=1e-12)


def test_limits_give_tv_back(rng):
    v = 50.0 * rng.standard_normal((3, 4, 4, 4))
    tv = TV(weight=0.8)
    for reg in (
        LogTV(weight=0.8, epsilon=0.3, tv_share=1.0),
        LogTV(weight=0.8, epsilon=100.0),
        MCPTV(weight=0.8, gamma=100.0),
    ):
        assert reg.penalty(v) == pytest.approx(tv.penalty(v), rel=3e-3)
        np.testing.assert_allclose(reg.prox_penalty(v, 2.0), tv.prox_penalty(v, 2.0), atol=0.02)


def test_large_steps_cost_less_than_in_tv_and_are_shrunk_less():
    v = np.zeros((3, 1, 1, 1))
    v[0] = 300.0
    tv, log, mcp = TV(), LogTV(weight=1.0, epsilon=0.03), MCPTV(weight=1.0, gamma=0.3)
    assert log.penalty(v) < 0.4 * tv.penalty(v)
    assert mcp.penalty(v) == pytest.approx(0.5 * 0.3 * 300.0)
    tau = 10.0  # TV shrinks by 10; the others much less, MCP not at all beyond gamma
    assert tv.prox_penalty(v, tau)[0, 0, 0, 0] == pytest.approx(290.0)
    assert log.prox_penalty(v, tau)[0, 0, 0, 0] > 299.0
    assert mcp.prox_penalty(v, tau)[0, 0, 0, 0] == 300.0


def test_mcp_firm_and_hard_thresholds_by_hand():
    mcp = MCPTV(weight=1.0, gamma=0.1)  # gamma = 30 grey units
    r = np.array([0.0, 5.0, 10.0, 20.0, 30.0, 40.0])
    # tau w = 10 < 30: firm, (r - 10) / (1 - 1/3) between 10 and 30
    np.testing.assert_allclose(mcp.prox_norm(r, 10.0), [0, 0, 0, 15.0, 30.0, 40.0])
    # tau w = 60 >= 30: hard threshold at sqrt(60 * 30) = 42.4
    np.testing.assert_allclose(mcp.prox_norm(np.array([40.0, 43.0]), 60.0), [0.0, 43.0])


def test_log_prox_by_hand():
    log = LogTV(weight=1.0, epsilon=0.01)  # eps = 3; tau w = 10: not convex
    # r = 10: roots of t² - 7 t + 0 = 0 -> t = 7; q(7) = 3 log(10/3) + 9/20 < q(0) = 5
    assert log.prox_norm(np.array([10.0]), 10.0)[0] == pytest.approx(7.0)
    # r = 9: t² - 6 t + 3 = 0 -> t+ = 3 + sqrt(6); q(t+) = 3.737 < q(0) = 4.05
    assert log.prox_norm(np.array([9.0]), 10.0)[0] == pytest.approx(3 + np.sqrt(6))
    # r = 8: t² - 5 t + 6 = 0 -> t+ = 3; q(3) = 3 log 2 + 25/20 = 3.33 > q(0) = 3.2 -> 0
    assert log.prox_norm(np.array([8.0]), 10.0)[0] == 0.0


@pytest.mark.parametrize("cls", [LogTV, MCPTV])
def test_params_are_validated(cls):
    with pytest.raises(ValidationError):
        cls(unknown=1.0)
    with pytest.raises(ValidationError):
        cls(weight=-1.0)
    field = "epsilon" if cls is LogTV else "gamma"
    with pytest.raises(ValidationError):
        cls(**{field: 0.0})
    with pytest.raises(InputError):
        cls().prox_penalty(np.zeros((3, 2, 2, 2)), -1.0)


def test_registered_and_not_smooth():
    reg = get_registry()
    assert {"log-tv", "mcp-tv"} <= set(reg.names("regularizer"))
    assert LogTV in BUILTIN_REGULARIZERS and MCPTV in BUILTIN_REGULARIZERS
    log = reg.create("regularizer", "log-tv", {"epsilon": 0.05})
    assert isinstance(log, LogTV) and log.params.epsilon == 0.05
    assert not LogTV.smooth and not MCPTV.smooth
    with pytest.raises(NotImplementedError):
        log.grad(np.zeros((3, 3, 3)))


def test_float32_fields_stay_float32():
    v = np.random.default_rng(0).standard_normal((3, 4, 4, 4)).astype(np.float32) * 50
    for reg in (LogTV(epsilon=0.01), MCPTV(gamma=0.1)):
        assert reg.prox_penalty(v, 10.0).dtype == np.float32


def test_on_the_strict_array_api_namespace():
    xs = pytest.importorskip("array_api_strict")
    from boneframe.device import array_namespace, to_numpy

    v = 50 * np.random.default_rng(2).standard_normal((3, 6, 5, 4)).astype(np.float32)
    v[:, 0, 0, 0] = 0.0
    for reg in (LogTV(epsilon=0.01, tv_share=0.3), MCPTV(gamma=0.1)):
        for tau in (1.0, 30.0):
            out, out_s = reg.prox_penalty(v, tau), reg.prox_penalty(xs.asarray(v), tau)
            assert array_namespace(out_s) is xs
            np.testing.assert_allclose(to_numpy(out_s), out, rtol=1e-5, atol=1e-4)
        assert reg.penalty(xs.asarray(v)) == pytest.approx(reg.penalty(v), rel=1e-5)


# -- in super-resolution ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair():
    return simulate_pair(48, 0, noise=0.01, offset=0.05)


@pytest.fixture(scope="module")
def solved(pair):
    """TV and the two defaults, solved to the stopping rule."""
    return {
        reg.name: super_resolve(pair.lr, pair.kernel, offset=pair.offset, p=pair.p, regularizer=reg)
        for reg in (TV(), LogTV(), MCPTV())
    }


@pytest.mark.parametrize("name", ["log-tv", "mcp-tv"])
def test_grey_scale_invariance(pair, solved, name):
    """x1000 of the scan (and its offset) gives 1000 x the estimate: the edge scale is a
    fraction of the normalised grey range."""
    small = solved[name]
    big = super_resolve(
        1000 * pair.lr, pair.kernel, offset=1000 * pair.offset, p=pair.p, regularizer=name
    )
    assert big.iterations == small.iterations
    # float32 rounding of the two normalisations only (an edge scale in absolute grey
    # units would be 1000 times smaller relative to the data: another estimate)
    span = float(np.ptp(small.array))
    np.testing.assert_allclose(big.array / 1000, small.array, atol=1e-3 * span)


def test_the_defaults_are_sharper_than_tv(pair, solved):
    """Thinner trabeculae and less excess bone than TV against the micro-CT."""
    names = ["bv_tv", "tb_th"]
    vs = pair.voxel_size_hr
    ref = measure(pair.hr, voxel_size=vs, names=names)
    errors = {}
    for name, sr in solved.items():
        m = measure(sr.array, voxel_size=vs, names=names)
        errors[name] = {k: m[k] / ref[k] - 1 for k in names}
    for name in ("log-tv", "mcp-tv"):
        for k in names:
            assert abs(errors[name][k]) < abs(errors["tv"][k]) - 0.02, (name, k, errors)
