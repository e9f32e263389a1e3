r"""How sure is a kernel estimate? A block bootstrap over cells of the valid region.

Every quantity kernel estimation uses is a sum over the valid low-resolution voxels
(:mod:`boneframe.kernel.boxes`). The bootstrap cuts that region into *cells* (about
4 per axis by default, or of ``box`` voxels), draws ``replicates`` data sets of as
many cells with replacement (multinomial counts, from a seeded
:class:`numpy.random.Generator`) and estimates the kernel of each with the
estimate's own similarity, regulariser, weight :math:`\alpha` and solver: the same
problem with each cell counted as often as it was drawn
(:attr:`KernelProblem.weights <boneframe.kernel.problem.KernelProblem.weights>`).
The spread of the replicates' FWHM and MTF 50 %/10 % per axis gives their
intervals. Cells rather than voxels are resampled because neighbouring voxels
share structure and footprints; a cell is several kernel radii wide, so the
dependence stays mostly within the cells [2]_.

**The regularisation bias.** The penalty :math:`\alpha\|\nabla h\|^2` widens the
kernel: the estimate is biased by about as much as it varies, and so is every
replicate, so the plain percentile interval of the replicates [3]_
(``interval="percentile"``) misses the true figure too often. The replicates are
therefore also corrected by one step of iterated Tikhonov regularisation [1]_,

.. math:: \tilde h = \arg\min_h D(h) + \alpha \|\nabla (h - \hat h)\|^2,

the penalty centred on the estimate :math:`\hat h` instead of on 0. For a
quadratic data term with curvature :math:`A = \kappa X^\top P_\perp X` and
penalty Hessian :math:`H`, :math:`\hat h = (A + H)^{-1} A h_0` up to noise, so
:math:`\tilde h = \hat h + (A + H)^{-1} H \hat h` has the bias
:math:`-[(A + H)^{-1} H]^2 h_0` instead of :math:`-(A + H)^{-1} H h_0`: second
order in :math:`\alpha`, at the price of more variance. ``"debiased"`` is the
percentile interval of the replicates' :math:`\tilde h` (it need not contain the
estimate's own figure; :attr:`KernelUncertainty.debiased` holds the corrected
full-sample figures) and the default ``"bias-aware"`` the union of both
intervals: it contains the estimate and reaches over its bias.

Measured with ``benchmarks/bench_kernel_bootstrap.py`` (``simulate_pair(64,
seed, noise)``, its anisotropic off-centre Gaussian, L2 ``exact``, 200
replicates, 64 cells; 20 seeds × 3 axes), the share of 95 % intervals holding the
true kernel's figure, FWHM / MTF50 / MTF10:

============  ======================  ======================
interval      noise 0.01              noise 0.03
============  ======================  ======================
percentile    73 / 92 / 68 %          70 / 88 / 70 %
debiased      98 / 95 / 85 %          97 / 95 / 82 %
bias-aware    98 / 97 / 95 %          97 / 97 / 92 %
============  ======================  ======================

(mean FWHM widths at noise 0.01: 5.7 / 5.7 / 4.5 µm percentile, 7.0 / 7.5 / 7.1
µm bias-aware, for true FWHMs of 154 / 126 / 106 µm).

**Cost.** For a quadratic similarity with the ``exact`` solver (L2, the default)
each cell's normal-equation sums are computed once (one pass and Gram products
of the cells: about one more estimate) and kept (:math:`K^3(K^3+1)/2` floats a
cell, 2.1 MB for :math:`K = 9`); a replicate is a weighted sum of them and a
Cholesky solve (:math:`K^9/3` flops), the correction a second back-substitution:
17 ms a replicate for :math:`9^3` taps whatever the volume's size (3.4 s for 200
replicates against 0.3 s for the estimate of the 64³ pair above). Otherwise
(mutual information, gradient descent) a replicate runs the solver on the
weighted problem from the estimate, and the correction runs it once more from
the replicate: each pass blurs each box whole and sums over its cells, about 1.5
times the cost of a pass of the estimate, so a replicate costs about three
estimates (``interval="percentile"`` skips the correction; a looser ``tol``
makes both cheaper, and ``estimate=`` keeps it from the estimate). The weight
:math:`\alpha` is the estimate's, held for every replicate (GCV is not re-run);
the FWHM of the full-sample estimate at :math:`\alpha/2` and :math:`2\alpha`
reports how much it depends on it.

A dask (zarr) pair runs every pass chunk by chunk as the estimate does, each
chunk's box summed over the pieces of the cells it meets: the same seed draws
the same cells and gives the same intervals as the pair in memory. A similarity
that gathers the volume (not an :class:`~boneframe.additive.AdditiveSimilarity`)
cannot be bootstrapped: a replicate is no volume.

References
----------
.. [1] H. W. Engl, M. Hanke, A. Neubauer, *Regularization of Inverse Problems*,
   Kluwer, 1996, §5.1 (iterated Tikhonov regularisation).
.. [2] H. R. Künsch, "The jackknife and the bootstrap for general stationary
   observations", Ann. Statist. 17 (1989) 1217–1241 (block bootstrap).
.. [3] B. Efron, R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman &
   Hall, 1993, ch. 13 (percentile intervals).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np
import scipy.linalg

from boneframe.errors import InputError
from boneframe.interfaces import Regularizer, Solver
from boneframe.kernel.estimate import _solver, default_solver, estimate_kernel, pair_voxel_size
from boneframe.kernel.pair import as_support, volume_data
from boneframe.kernel.problem import KernelProblem, _box_side
from boneframe.kernel.quadratic import QuadraticCells, regularizer_hessian
from boneframe.kernel.result import Kernel
from boneframe.kernel.summary import summarize_kernel
from boneframe.operators import as_factor, valid_lr_slices

__all__ = [
    "DEFAULT_CELLS_PER_AXIS",
    "Interval",
    "KernelUncertainty",
    "bootstrap_kernel",
]

#: Interval methods: the union of the two below (default), the percentile
#: interval of the bias-corrected replicates, of the replicates as they are.
Interval = Literal["bias-aware", "debiased", "percentile"]

#: Cells per axis when no ``box`` is given (64 cells).
DEFAULT_CELLS_PER_AXIS = 4
#: Fewest cells a bootstrap accepts.
MIN_CELLS = 8
#: Fewest replicates a bootstrap accepts.
MIN_REPLICATES = 10
#: Most memory (bytes) the per-cell normal-equation sums of the exact path may take.
MAX_CELL_BYTES = 4 * 2**30

#: The figures the intervals are given for, as named in a kernel's summary.
FIGURES = ("fwhm_um", "mtf50_lpmm", "mtf10_lpmm")

#: ``bootstrap_kernel``'s keywords that ``estimate_kernel`` also takes but that
#: mean something else here, or nothing.
_NOT_FORWARDED = ("callback",)

ReplicateCallback = Callable[[int, dict[str, Any]], bool | None]


@dataclass
class KernelUncertainty:
    """Bootstrap intervals of a kernel's resolution figures, per axis.

    Attributes
    ----------
    fwhm_um_ci, mtf50_lpmm_ci, mtf10_lpmm_ci : list of 3 [lo, hi]
        The ``level`` intervals of the FWHM (µm) and of the frequencies where the
        MTF falls to 50 % and 10 % (lp/mm), per axis. ``None`` for an end that is
        unbounded: replicates whose FWHM is undefined (wider than the support) or
        whose MTF stays above the level up to Nyquist.
    replicates : int
        Replicates run.
    box : list of 3 ints
        Low-resolution side of a cell asked for per axis (see ``cells``).
    seed : int
        Seed of the draws.
    level : float
        Confidence level.
    alpha : float
        Regularisation weight of the estimate, held for every replicate.
    seconds : float
        Wall time of the bootstrap (the estimate excluded).
    alpha_sensitivity : dict
        ``alpha`` and the full-sample FWHM (µm, per axis) at half and twice it:
        ``fwhm_um_half_alpha``, ``fwhm_um_double_alpha``.
    interval : str
        ``"bias-aware"``, ``"debiased"`` or ``"percentile"`` (see the module).
    cells : list of 3 ints
        Cells per axis (their product is the number resampled).
    estimate : Kernel
        The full-sample estimate.
    debiased : dict or None
        FWHM and MTF figures of the bias-corrected full-sample estimate (``None``
        with ``interval="percentile"``).
    samples : dict of ndarray
        Each replicate's figures, ``(replicates, 3)``, under the summary's names
        (``fwhm_um`` ...) and, when corrected, ``debiased_fwhm_um`` ...; undefined
        values are ``inf``.
    estimate_seconds : float or None
        Wall time of the estimate when the bootstrap ran it.
    """

    fwhm_um_ci: list[list[float | None]]
    mtf50_lpmm_ci: list[list[float | None]]
    mtf10_lpmm_ci: list[list[float | None]]
    replicates: int
    box: list[int]
    seed: int
    level: float
    alpha: float
    seconds: float
    alpha_sensitivity: dict[str, Any]
    interval: str = "bias-aware"
    cells: list[int] = field(default_factory=list)
    estimate: Kernel | None = None
    debiased: dict[str, Any] | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    estimate_seconds: float | None = None

    def sidecar(self) -> dict[str, Any]:
        """The intervals and how they were obtained, JSON-ready: a kernel sidecar's
        ``fwhm_um_ci``, ``mtf50_lpmm_ci``, ``mtf10_lpmm_ci`` (per axis ``[lo, hi]``),
        ``alpha_sensitivity`` and ``bootstrap`` (``replicates``, ``box``, ``seed``,
        ``level``, ``interval``, ``alpha``, ``seconds``)."""
        return {
            "fwhm_um_ci": [list(v) for v in self.fwhm_um_ci],
            "mtf50_lpmm_ci": [list(v) for v in self.mtf50_lpmm_ci],
            "mtf10_lpmm_ci": [list(v) for v in self.mtf10_lpmm_ci],
            "alpha_sensitivity": {
                "alpha": float(self.alpha_sensitivity["alpha"]),
                "fwhm_um_half_alpha": list(self.alpha_sensitivity["fwhm_um_half_alpha"]),
                "fwhm_um_double_alpha": list(self.alpha_sensitivity["fwhm_um_double_alpha"]),
            },
            "bootstrap": {
                "replicates": int(self.replicates),
                "box": [int(b) for b in self.box],
                "seed": int(self.seed),
                "level": float(self.level),
                "interval": str(self.interval),
                "alpha": float(self.alpha),
                "seconds": float(self.seconds),
            },
        }


def bootstrap_kernel(
    hr: Any,
    lr: Any,
    *,
    replicates: int = 100,
    box: int | Sequence[int] | None = None,
    level: float = 0.95,
    seed: int = 0,
    interval: Interval = "bias-aware",
    estimate: Kernel | None = None,
    callback: ReplicateCallback | None = None,
    **estimate_options: Any,
) -> KernelUncertainty:
    r"""Intervals of a kernel's FWHM and MTF 50 %/10 % per axis by a block bootstrap.

    Parameters
    ----------
    hr, lr : Volume, ndarray or dask array
        The pair, as for :func:`~boneframe.kernel.estimate.estimate_kernel` (a dask
        pair is processed chunk by chunk).
    replicates : int
        Bootstrap replicates (at least 10; 100 or more for 95 % intervals).
    box : int or 3 ints, optional
        Low-resolution side of the cells that are resampled, per axis: the valid
        region is cut into ``round(n / box)`` nearly equal cells along an axis of
        ``n`` valid voxels (:func:`~boneframe.kernel.boxes.cell_edges`). Default:
        4 cells per axis. At least 8 cells are needed; they should be several
        kernel radii wide.
    level : float
        Confidence level, in (0, 1).
    seed : int
        Seed of the draws (:func:`numpy.random.default_rng`): the same seed, the
        same intervals.
    interval : {"bias-aware", "debiased", "percentile"}
        The interval (see the module): the union of the two others, the
        percentile interval of the bias-corrected replicates, or of the
        replicates themselves (no correction: half the cost without the exact
        solver).
    estimate : Kernel, optional
        The full-sample estimate, when already computed with the same options
        (its ``alpha`` is used); by default it is estimated here.
    callback : callable, optional
        ``callback(replicate, record)`` after each replicate, ``record`` holding its
        ``fwhm_um``, ``mtf50_lpmm``, ``mtf10_lpmm`` and the ``seconds`` so far;
        returning ``True`` stops (the intervals then use the replicates run).
    **estimate_options
        Keywords of :func:`~boneframe.kernel.estimate.estimate_kernel`
        (``similarity``, ``solver``, ``support``, ``p``, ``alpha``,
        ``similarity_params``, ``voxel_size``, ...; not its ``callback``).

    Returns
    -------
    KernelUncertainty
        ``sidecar()`` gives the keys a kernel's sidecar records.

    Raises
    ------
    InputError
        Bad bootstrap parameters, an unknown estimate option, no voxel size, too
        few cells, a similarity that is not additive (it gathers the volume), or
        everything :func:`~boneframe.kernel.estimate.estimate_kernel` refuses.

    Notes
    -----
    Replicate :math:`b` counts cell :math:`j` :math:`m_{bj}` times,
    :math:`(m_{b1}, \dots, m_{bC}) \sim \mathrm{Multinomial}(C; 1/C, \dots, 1/C)`,
    and estimates :math:`\hat h_b`; the percentile interval of a figure
    :math:`\theta` is the :math:`(1 \mp \mathrm{level})/2` quantiles of
    :math:`\theta(\hat h_b)` (linear interpolation) [3]_. Cost and the bias
    correction: see :mod:`boneframe.kernel.bootstrap`.

    Examples
    --------
    >>> from boneframe.phantom import simulate_pair
    >>> hr, lr = simulate_pair(48, seed=0, noise=0.01).volumes()
    >>> ci = bootstrap_kernel(hr, lr, replicates=20, seed=1)
    >>> len(ci.fwhm_um_ci), sorted(ci.sidecar())[:3]
    (3, ['alpha_sensitivity', 'bootstrap', 'fwhm_um_ci'])
    """
    _check(replicates, level, seed, interval)
    options = _estimate_options(estimate_options)
    p = as_factor(options["p"])
    vs = pair_voxel_size(hr, lr, p, options["voxel_size"])
    if vs is None:
        raise InputError(
            "the voxel size is unknown: FWHM and MTF intervals need it (give voxel_size=)"
        )
    t_est = None
    if estimate is None:
        t0 = time.perf_counter()
        estimate = estimate_kernel(hr, lr, **options)
        t_est = time.perf_counter() - t0
    support = as_support(options["support"])
    if estimate.support != support or estimate.alpha is None:
        raise InputError(
            f"the estimate given does not match the options: support {estimate.support} "
            f"(options {support}), alpha {estimate.alpha}"
        )
    alpha = float(estimate.alpha)
    start = time.perf_counter()
    f = volume_data(hr, "the high-resolution volume")
    g = volume_data(lr, "the low-resolution volume")
    lr_valid = valid_lr_slices(f.shape, support, p)
    side = _cell_side(box, lr_valid)
    registry = _registry()
    sim = registry.create(
        "similarity", options["similarity"], dict(options["similarity_params"] or {})
    )
    make_regularizer = _regularizers(options)
    problem = KernelProblem(
        f, g, sim, make_regularizer(alpha), support, p,
        cache_boxes=bool(options["cache_boxes"]), box=side,
    )  # fmt: skip
    n_cells = problem.boxes.n_cells
    if n_cells < MIN_CELLS:
        raise InputError(
            f"box {list(side)} cuts the valid region ({problem.boxes.valid_shape} low-resolution "
            f"voxels) into {n_cells} cells, fewer than {MIN_CELLS}: use a smaller box"
        )
    solver_name = options["solver"] or default_solver(options["similarity"])
    engine: _Replicates
    if solver_name == "exact":
        engine = _ExactReplicates(problem, make_regularizer)
    else:
        slv = _solver(solver_name, options["max_iter"], options["tol"], options["solver_params"])
        engine = _SolverReplicates(problem, slv, estimate, make_regularizer)
    draws = np.random.default_rng(seed).multinomial(
        n_cells, np.full(n_cells, 1.0 / n_cells), size=replicates
    )
    debias = interval != "percentile"
    rows: list[dict[str, list[float]]] = []
    for b, weights in enumerate(draws):
        h, h_debiased = engine.solve(weights, alpha, debias)
        row = _figures(h, vs)
        if h_debiased is not None:
            row.update({f"debiased_{k}": v for k, v in _figures(h_debiased, vs).items()})
        rows.append(row)
        if callback is not None:
            record: dict[str, Any] = {k: [_finite(x) for x in row[k]] for k in FIGURES}
            record["seconds"] = time.perf_counter() - start
            if callback(b, record) is True:
                break
    samples = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    full_debiased = None
    if debias:
        h_full = engine.solve(None, alpha, True)[1]
        assert h_full is not None
        full_debiased = _figures(h_full, vs)
    sensitivity = {
        "alpha": alpha,
        "fwhm_um_half_alpha": _summary_fwhm(engine.solve(None, 0.5 * alpha, False)[0], vs),
        "fwhm_um_double_alpha": _summary_fwhm(engine.solve(None, 2.0 * alpha, False)[0], vs),
    }
    engine.close()
    intervals = {k: _intervals(samples, k, level, interval) for k in FIGURES}
    return KernelUncertainty(
        fwhm_um_ci=intervals["fwhm_um"],
        mtf50_lpmm_ci=intervals["mtf50_lpmm"],
        mtf10_lpmm_ci=intervals["mtf10_lpmm"],
        replicates=len(rows),
        box=list(side),
        seed=int(seed),
        level=float(level),
        alpha=alpha,
        seconds=time.perf_counter() - start,
        alpha_sensitivity=sensitivity,
        interval=interval,
        cells=list(problem.boxes.cell_shape),
        estimate=estimate,
        debiased=None
        if full_debiased is None
        else {k: [_finite(x) for x in v] for k, v in full_debiased.items()},
        samples=samples,
        estimate_seconds=t_est,
    )


# -- the replicates -----------------------------------------------------------------------
class _Replicates:
    """Solves the problem for one weighting of the cells and one ``alpha``."""

    def solve(
        self, weights: np.ndarray | None, alpha: float, debias: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The kernel and, when ``debias``, its bias-corrected version."""
        raise NotImplementedError

    def close(self) -> None:
        """Leave the problem as it was built (no weights, the estimate's alpha)."""


class _ExactReplicates(_Replicates):
    """Quadratic similarity, ``exact`` solver: per-cell sums kept, a replicate is a
    weighted sum and a Cholesky solve."""

    def __init__(self, problem: KernelProblem, make_regularizer: Callable[[float], Regularizer]):
        n = int(np.prod(problem.support))
        need = problem.boxes.n_cells * n * (n + 1) // 2 * 8
        if need > MAX_CELL_BYTES:
            raise InputError(
                f"{problem.boxes.n_cells} cells of {n}-tap normal equations need "
                f"{need / 2**30:.1f} GiB (limit {MAX_CELL_BYTES / 2**30:.0f}): use a larger box"
            )
        self.support = problem.support
        self.cells: QuadraticCells = problem.quadratic_cells()
        self.fit_offset = problem.fit_offset
        self.t = problem.offset + problem.f_mean
        self.make_regularizer = make_regularizer
        self._hessians: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def solve(
        self, weights: np.ndarray | None, alpha: float, debias: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if alpha not in self._hessians:
            self._hessians[alpha] = regularizer_hessian(self.make_regularizer(alpha), self.support)
        hess, grad0 = self._hessians[alpha]
        stats = self.cells.statistics(weights)
        a, b = stats.normal_equations(hess, grad0, self.fit_offset, self.t)
        solve = _factorised(a)
        h = solve(b)
        # the penalty centred on h: its gradient at 0 is grad0 - hess h
        h_debiased = solve(b + hess @ h) if debias else None
        shape = self.support
        return h.reshape(shape), None if h_debiased is None else h_debiased.reshape(shape)


class _SolverReplicates(_Replicates):
    """Any other problem: the solver re-run on the weighted problem from the estimate."""

    def __init__(
        self,
        problem: KernelProblem,
        solver: Solver,
        estimate: Kernel,
        make_regularizer: Callable[[float], Regularizer],
    ):
        self.problem, self.solver = problem, solver
        self.make_regularizer = make_regularizer
        self.regularizer = problem.regularizer
        h0 = np.asarray(estimate.array, dtype=np.float64)
        project = getattr(problem, "project", None)
        if project is not None:  # unit-sum kernels: the estimate without its gain
            h0 = project(h0 / np.sum(h0))
        self.h0 = h0

    def solve(
        self, weights: np.ndarray | None, alpha: float, debias: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        problem = self.problem
        problem.weights = weights
        reg = self.make_regularizer(alpha)
        problem.regularizer = reg
        h = np.asarray(self.solver.solve(problem, self.h0).x, dtype=np.float64)
        h_debiased = None
        if debias:
            problem.regularizer = cast(Regularizer, _Centred(reg, h))
            h_debiased = np.asarray(self.solver.solve(problem, h).x, dtype=np.float64)
            problem.regularizer = reg
        return h, h_debiased

    def close(self) -> None:
        self.problem.weights = None
        self.problem.regularizer = self.regularizer


class _Centred:
    """The regulariser ``R(h - centre)``: iterated Tikhonov's penalty."""

    def __init__(self, regularizer: Regularizer, centre: np.ndarray):
        self.regularizer, self.centre = regularizer, centre
        self.name = regularizer.name
        self.smooth = regularizer.smooth

    def __call__(self, h: np.ndarray) -> float:
        return float(self.regularizer(np.asarray(h) - self.centre))

    def grad(self, h: np.ndarray) -> np.ndarray:
        return np.asarray(self.regularizer.grad(np.asarray(h) - self.centre))


def _factorised(a: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``b -> A^{-1} b`` by Cholesky, the minimum-norm least-squares solution when
    ``A`` is singular (as the ``exact`` solver)."""
    try:
        factor = scipy.linalg.cho_factor(a, check_finite=False)
    except np.linalg.LinAlgError:
        return lambda b: scipy.linalg.lstsq(a, b, check_finite=False)[0]
    return lambda b: scipy.linalg.cho_solve(factor, b, check_finite=False)


# -- figures and intervals ----------------------------------------------------------------
def _figures(h: np.ndarray, voxel_size: Sequence[float]) -> dict[str, list[float]]:
    """FWHM and MTF figures per axis, ``inf`` where undefined (wider than the support,
    above the level up to Nyquist)."""
    summary = summarize_kernel(h, voxel_size)
    return {k: [np.inf if v is None else float(v) for v in summary[k]] for k in FIGURES}


def _summary_fwhm(h: np.ndarray, voxel_size: Sequence[float]) -> list[float | None]:
    return list(summarize_kernel(h, voxel_size)["fwhm_um"])


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile, linear interpolation between order statistics (an
    infinite neighbour gives ``inf``)."""
    x = np.sort(values)
    pos = q * (x.size - 1)
    i = int(np.floor(pos))
    frac = pos - i
    if frac == 0 or i + 1 >= x.size or x[i + 1] == x[i]:
        return float(x[i])
    return float(x[i] + frac * (x[i + 1] - x[i]))


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 0.5 * (1.0 - level)
    return _quantile(values, tail), _quantile(values, 1.0 - tail)


def _intervals(
    samples: Mapping[str, np.ndarray], name: str, level: float, interval: str
) -> list[list[float | None]]:
    """Per axis ``[lo, hi]`` of figure ``name`` (``None`` for an unbounded end)."""
    out = []
    for axis in range(3):
        plain = _percentile(samples[name][:, axis], level)
        if interval == "percentile":
            lo, hi = plain
        else:
            corrected = _percentile(samples[f"debiased_{name}"][:, axis], level)
            lo, hi = corrected
            if interval == "bias-aware":
                lo, hi = min(lo, plain[0]), max(hi, plain[1])
        out.append([_finite(lo), _finite(hi)])
    return out


# -- options ------------------------------------------------------------------------------
def _check(replicates: Any, level: Any, seed: Any, interval: Any) -> None:
    """Refuse bad bootstrap parameters, one line each."""
    if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer):
        raise InputError(f"replicates must be an integer, got {replicates!r}")
    if replicates < MIN_REPLICATES:
        raise InputError(f"replicates must be at least {MIN_REPLICATES}, got {replicates}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise InputError(f"level must be a number in (0, 1), got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if interval not in get_args(Interval):
        raise InputError(f"interval must be one of {list(get_args(Interval))}, got {interval!r}")


def _estimate_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """``estimate_kernel``'s keywords: its defaults, overridden by ``given``."""
    params = inspect.signature(estimate_kernel).parameters
    known = {
        name: p.default
        for name, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _NOT_FORWARDED
    }
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for the estimate "
            f"(bootstrap_kernel takes estimate_kernel's keywords but callback)"
        )
    return {**known, **given}


def _cell_side(box: Any, lr_valid: Sequence[slice]) -> tuple[int, int, int]:
    """The cell side per axis: ``box``, or that of about 4 cells per axis."""
    if box is None:
        sizes = [s.stop - s.start for s in lr_valid]
        return _box_side([max(1, n // DEFAULT_CELLS_PER_AXIS) for n in sizes])
    return _box_side(box)


def _registry() -> Any:
    from boneframe.registry import get_registry

    return get_registry()


def _regularizers(options: Mapping[str, Any]) -> Callable[[float], Regularizer]:
    """``weight -> regularizer`` of the estimate's name and parameters."""
    registry = _registry()
    name = options["regularizer"]
    params = dict(options["regularizer_params"] or {})

    def make(weight: float) -> Regularizer:
        return cast(Regularizer, registry.create("regularizer", name, {**params, "weight": weight}))

    return make
