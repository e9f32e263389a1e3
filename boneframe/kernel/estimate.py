r"""Blurring-kernel estimation from a registered high/low-resolution pair.

The forward model is the paper's ``g = U(h * (f + c)) + n`` (§2.1): ``f`` is the
high-resolution (micro-CT) volume, ``g`` the low-resolution scan, ``U`` keeps
voxels ``0, p, 2p, ...`` per axis, ``h`` is an odd-support kernel and ``c`` a
grey-level offset. The kernel minimises

.. math:: J(h, c) = D\big(U(h * (f + c)), g\big) + \alpha \|\nabla h\|_2^2

over the low-resolution voxels whose high-resolution footprint lies inside ``f``
only (:func:`boneframe.operators.valid_lr_slices`): no boundary assumption about
what lies outside ``f`` enters ``h``.

Data flow: :func:`estimate_kernel` checks the pair, builds a
:class:`~boneframe.kernel.problem.KernelProblem` (any registered similarity and
regulariser; sums over boxes of the valid region: one box in memory, the chunks
of a dask pair), chooses the weight and the start, hands it to a registered
solver and returns a :class:`~boneframe.kernel.result.Kernel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Callback, Regularizer, Similarity, Solver
from boneframe.kernel.pair import Support, as_support, volume_data
from boneframe.kernel.problem import KernelProblem
from boneframe.kernel.result import Kernel
from boneframe.operators import Factor, as_factor
from boneframe.volume import Triple, as_triple

__all__ = [
    "DEFAULT_INIT_SIGMA",
    "default_alpha",
    "default_solver",
    "default_weight",
    "estimate_kernel",
    "gaussian_start",
    "pair_voxel_size",
    "unit_alpha",
]

#: Relative regularisation weight of :func:`default_alpha` (the fallback when
#: the similarity is not quadratic and GCV does not apply).
DEFAULT_RELATIVE_ALPHA = 0.03

#: Regularisation weight for unit-sum kernels under scale-free similarities
#: (mutual information) that declare no ``default_alpha``, at
#: :data:`UNIT_ALPHA_VOXELS` valid low-resolution voxels; it falls as
#: :math:`N^{-1/2}` with their number :math:`N` (:func:`unit_alpha`).
DEFAULT_UNIT_ALPHA = 5.0
#: The number of valid low-resolution voxels at which :data:`DEFAULT_UNIT_ALPHA` applies.
UNIT_ALPHA_VOXELS = 20_000

#: Standard deviation (HR voxels) of the default Gaussian start (see estimate_kernel).
DEFAULT_INIT_SIGMA = 2.0


def unit_alpha(n_valid: int) -> float:
    r"""Default regularisation weight for a unit-sum kernel fitted on ``n_valid`` voxels.

    :math:`\alpha = 5 \sqrt{20000 / N}`. The similarity is a mean over the
    :math:`N` valid voxels, whose sampling noise falls as :math:`N^{-1/2}`, and so
    does the weight the kernel needs. Measured for ``mi`` (converged kernel error
    against the true kernel, ``simulate_pair(n, 0, kernel=(1.6, 1.3, 1.1) voxels,
    noise=0.01)``, with and without a gain ``1 + 0.3 x`` across the LR volume;
    alpha swept over 0.1 ... 30): the best fixed weight was 10 / 3 at
    :math:`N` = 8000 (48³ HR), 10 / 3 at 22 000 (64³) and 3 / 1 at 216 000
    (128³); this rule gives 7.5 / 20.1, 5.7 / 13.7 and 3.0 / 7.1 % where a fixed
    10 gave 7.4 / 22.1, 5.7 / 18.3 and 4.5 / 18.8 %. Below the optimum the
    minimiser over-fits (the error grows as gradient descent converges). Measured
    again with the quadratic splat and the iterate stopping rule: the rule gives
    7.5 / 19.8, 5.8 / 13.6 and 3.1 / 7.1 %, and the neighbours at 64³ (1, 3, 10)
    and 128³ (0.3, 1, 3) moved by at most 0.3 points.
    """
    return DEFAULT_UNIT_ALPHA * float(np.sqrt(UNIT_ALPHA_VOXELS / max(int(n_valid), 1)))


def gaussian_start(sigma: float, support: Support) -> np.ndarray:
    """Isotropic, centred, unit-sum Gaussian of standard deviation ``sigma`` voxels."""
    if not sigma > 0:
        raise InputError(f"init_sigma must be positive, got {sigma}")
    axes = [np.exp(-0.5 * ((np.arange(k) - k // 2) / sigma) ** 2) for k in as_support(support)]
    h = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return h / h.sum()



def default_alpha(var_f: float, var_g: float, relative: float = DEFAULT_RELATIVE_ALPHA) -> float:
    r"""Fallback regularisation weight for similarities without normal equations.

    Notes
    -----
    .. math:: \alpha = \alpha_{\mathrm{rel}} \, \frac{\operatorname{var}(f)}{\operatorname{var}(g)}

    The data term's Hessian in ``h`` scales like :math:`\operatorname{var}(f) /
    \operatorname{var}(g)` (about :math:`1/\mathrm{gain}^2`) for the scale-free
    L2; scaling :math:`\alpha` the same way makes the estimate invariant to
    multiplying ``f`` and ``g`` by any factors (both by 1000: the same kernel;
    ``f`` alone by ``s``: the kernel divided by ``s``). :math:`\alpha_{\mathrm{rel}}
    = 0.03` is about the best value for L2 at 1 % noise on simulated pairs; a
    similarity with another curvature (mutual information) should calibrate its
    own. For quadratic similarities :func:`estimate_kernel` uses GCV instead
    (:meth:`~boneframe.kernel.problem.KernelProblem.gcv_weight`).
    """
    return relative * var_f / var_g if var_g > 0 else relative



def default_solver(similarity: str) -> str:
    """``"exact"`` (the normal equations) for a quadratic similarity, else
    ``"gradient-descent"``."""
    from boneframe.registry import get_registry

    cls = get_registry().get("similarity", similarity)
    return "exact" if getattr(cls, "quadratic", False) else "gradient-descent"


def pair_voxel_size(
    hr: Any, lr: Any, p: Factor = 2, voxel_size: float | Sequence[float] | None = None
) -> Triple | None:
    """The high-resolution voxel size (µm) of a pair: ``voxel_size`` when given, else
    the high-resolution volume's, else the low-resolution one's divided by ``p``.

    Raises
    ------
    InputError
        Both volumes carry voxel sizes that disagree with ``p`` by more than 1 %.
    """
    pp = as_factor(p)
    if voxel_size is not None:
        return as_triple(voxel_size, "voxel size")
    vs_hr = getattr(hr, "voxel_size", None)
    vs_lr = getattr(lr, "voxel_size", None)
    if vs_lr is None:
        return vs_hr
    from_lr = tuple(v / q for v, q in zip(vs_lr, pp, strict=True))
    if vs_hr is not None:
        if any(abs(a - b) > 0.01 * b for a, b in zip(vs_hr, from_lr, strict=True)):
            raise InputError(
                f"the voxel sizes do not match p={pp}: high resolution {tuple(vs_hr)} µm, "
                f"low resolution {tuple(vs_lr)} µm (expected {from_lr} µm on the fine grid)"
            )
    return vs_hr if vs_hr is not None else from_lr


def estimate_kernel(
    hr: Any,
    lr: Any,
    *,
    similarity: str = "l2",
    regularizer: str = "gradient-l2",
    solver: str | None = None,
    support: Support = 9,
    alpha: float | None = None,
    p: Factor = 2,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    init: np.ndarray | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    callback: Callback | None = None,
    similarity_params: Mapping[str, Any] | None = None,
    regularizer_params: Mapping[str, Any] | None = None,
    solver_params: Mapping[str, Any] | None = None,
    voxel_size: float | Sequence[float] | None = None,
    cache_boxes: bool = False,
) -> Kernel:
    r"""Estimate the blurring kernel ``h`` and offset ``c`` of ``g = U(h * (f + c)) + n``.

    Parameters
    ----------
    hr : Volume, ndarray or dask array
        High-resolution volume ``f`` (micro-CT), registered so that its voxel
        ``p*i`` is voxel ``i`` of ``lr``.
    lr : Volume, ndarray or dask array
        Low-resolution volume ``g``, shape ``ceil(hr.shape / p)``. When either is
        a dask array (a zarr volume read lazily), every sum runs over boxes along
        its chunks, on the active dask scheduler: the same estimate, bounded
        memory (a similarity that is not an
        :class:`~boneframe.additive.AdditiveSimilarity` gathers the
        low-resolution prediction: about 3/p³ of the high-resolution volume in
        float64).
    similarity, regularizer : str
        Registered strategy names (``boneframe plugins`` lists them).
    solver : str, optional
        Registered solver; default :func:`default_solver` (``exact`` for a
        quadratic similarity, else ``gradient-descent``).
    support : int or 3 ints
        Odd kernel support per axis (paper: 5 to 13).
    alpha : float, optional
        Weight of the regulariser. Default: chosen by generalised
        cross-validation for a quadratic similarity
        (:meth:`~boneframe.kernel.problem.KernelProblem.gcv_weight`); for a
        scale-free one (unit-sum kernels) the similarity's ``default_alpha`` or
        :func:`unit_alpha` (falling with the number of voxels, measured for
        ``mi``); else :func:`default_alpha`. All are invariant to the grey-level
        scale of ``f`` and ``g``.
    p : int or 3 ints
        Decimation factor per axis.
    init_sigma : float
        Standard deviation (HR voxels) of the Gaussian starting kernel, scaled to
        the contrast of ``g`` (unit-sum for scale-free similarities). Default 2:
        the paper's 4 is harmless for L2 (convex) but led MI into a wrong local
        optimum on simulated pairs (error 194 % against 7 % from 2, 64³ phantom).
    init : ndarray, optional
        Starting kernel instead (e.g. an L2 estimate to start MI from), used as is.
    max_iter, tol : optional
        Passed to the solver when it has these parameters.
    callback : callable, optional
        ``callback(iteration, h, record)`` after each iteration; ``True`` stops.
    similarity_params, regularizer_params, solver_params : mapping, optional
        Further strategy parameters, validated by each strategy's ``Params``.
    voxel_size : float or 3 floats, optional
        High-resolution voxel size (µm); default :func:`pair_voxel_size`.
    cache_boxes : bool
        Dask input: keep the transformed boxes in memory between passes (faster
        gradient descent, about five times the high-resolution volume in float64).

    Returns
    -------
    Kernel

    Raises
    ------
    InputError
        Mismatched shapes, NaN/inf, even or too large a support, constant volumes,
        a solver the similarity or regulariser does not allow.
    PluginError
        An unknown strategy name.

    Notes
    -----
    Minimises :math:`J(h, c) = D(U(h * (f + c)), g) + \alpha \|\nabla h\|^2` over
    the valid low-resolution voxels, with ``c`` profiled out (see
    :class:`~boneframe.kernel.problem.KernelProblem`). ``solver="exact"`` solves
    the normal equations (quadratic similarities); ``"gradient-descent"`` works
    for any smooth similarity.

    References
    ----------
    .. [1] Y. Li, B. Sixou, F. Peyrin, "Estimation of the blurring kernel in
       experimental HR-pQCT images based on mutual information", EUSIPCO 2017,
       pp. 2140–2144 (§2.1–2.2, eqs. (1)–(2)).

    Examples
    --------
    >>> from boneframe.phantom import simulate_pair
    >>> pair = simulate_pair(48, seed=0, offset=0.05)
    >>> est = estimate_kernel(pair.hr, pair.lr, support=9)
    >>> round(est.gain, 2), round(est.offset, 2)
    (1.0, 0.05)
    """
    from boneframe.registry import get_registry

    registry = get_registry()
    vs = pair_voxel_size(hr, lr, p, voxel_size)
    f = volume_data(hr, "the high-resolution volume")
    g = volume_data(lr, "the low-resolution volume")
    solver = solver or default_solver(similarity)
    sim: Similarity = registry.create("similarity", similarity, dict(similarity_params or {}))
    slv = _solver(solver, max_iter, tol, solver_params)
    if alpha is not None and not (np.isfinite(alpha) and alpha >= 0):
        raise InputError(f"alpha must be a finite non-negative number, got {alpha}")
    reg_params = dict(regularizer_params or {})

    def make_regularizer(weight: float) -> Regularizer:
        reg: Regularizer = registry.create(
            "regularizer", regularizer, {**reg_params, "weight": weight}
        )
        if not reg.smooth:
            raise InputError(
                f"regularizer {regularizer!r} is not differentiable: kernel estimation "
                "needs a smooth one (e.g. gradient-l2)"
            )
        return reg

    problem = KernelProblem(
        f,
        g,
        sim,
        make_regularizer(1.0 if alpha is None else alpha),
        support,
        p,
        cache_boxes=cache_boxes,
    )
    unit = not sim.scale_sensitive
    if unit and solver == "exact":
        raise InputError(
            f"solver 'exact' needs a quadratic similarity; {similarity!r} is not "
            "(use solver 'gradient-descent')"
        )
    if alpha is None:
        alpha = default_weight(problem)
        problem.regularizer = make_regularizer(alpha)
    h0 = _start(problem, init, init_sigma, scale=not unit and solver != "exact")

    def record(iteration: int, h: Any, rec: dict[str, float]) -> bool | None:
        if unit:
            rec[f"{sim.name}_loss"] = rec.get("objective", np.nan) - problem.regularizer(h)
        else:
            rec["offset"] = problem.best_offset(h)
        return callback(iteration, h, rec) if callback is not None else None

    result = slv.solve(problem, h0, record)
    h = np.asarray(result.x, dtype=np.float64)
    if unit:  # the similarity fixed the shape; least squares gives gain and offset
        gain, offset = problem.fit_gain_offset(h)
        h = gain * h
    else:
        offset = problem.best_offset(h)
    return Kernel(
        array=h,
        offset=offset,
        voxel_size=vs,
        p=as_factor(p),
        alpha=float(alpha),
        iterations=result.iterations,
        history=result.history,
        similarity=similarity,
        solver=solver,
        converged=result.converged,
        message=result.message,
    )


def default_weight(problem: KernelProblem) -> float:
    """The regularisation weight when none is given: GCV for a quadratic similarity,
    the similarity's ``default_alpha`` or :func:`unit_alpha` for a scale-free one
    (unit-sum kernels), else :func:`default_alpha`."""
    sim = problem.similarity
    if sim.quadratic and problem.fit_offset:
        return problem.gcv_weight()
    if not sim.scale_sensitive:
        return sim.default_alpha if sim.default_alpha is not None else unit_alpha(problem.n_valid)
    return default_alpha(problem.boxes.f_var, problem.data.m2 / problem.n_valid)


def _start(
    problem: KernelProblem, init: np.ndarray | None, sigma: float, *, scale: bool
) -> np.ndarray:
    """The first kernel: ``init``, or a Gaussian of ``sigma`` voxels scaled to the
    contrast of ``g`` (``scale``), projected onto unit-sum kernels where the
    similarity is scale-free."""
    k = problem.support
    if init is None:
        h0 = gaussian_start(sigma, k)
        if scale:
            h0 = h0 * problem.start_scale(h0)
    else:
        h0 = np.array(init, dtype=np.float64)
        if h0.shape != k or not np.all(np.isfinite(h0)):
            raise InputError(f"the starting kernel must be finite with shape {k}, got {h0.shape}")
    project = getattr(problem, "project", None)
    return project(h0) if project is not None else h0


def _solver(
    name: str,
    max_iter: int | None,
    tol: float | None,
    params: Mapping[str, Any] | None,
) -> Solver:
    """The registered solver ``name``; ``max_iter`` and ``tol`` go where it has them."""
    from boneframe.registry import get_registry

    cls = get_registry().get("solver", name)
    sp = dict(params or {})
    fields = getattr(cls.Params, "model_fields", {})
    for key, value in (("max_iter", max_iter), ("tol", tol)):
        if value is not None and key in fields:
            sp.setdefault(key, value)
    return cls(sp)
