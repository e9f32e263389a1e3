r"""The kernel-estimation objective, with the offset ``c`` profiled out.

One problem for every input: the sums it needs run over the boxes of
:class:`~boneframe.kernel.boxes.KernelBoxes` (one box in memory, the chunks of a
dask pair), and the similarity is evaluated block by block
(:func:`boneframe.additive.evaluate_similarity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import scipy.optimize

from boneframe.additive import Blocks, GreyMoments, evaluate_similarity
from boneframe.errors import InputError
from boneframe.interfaces import Regularizer, Similarity
from boneframe.kernel.boxes import KernelBoxes
from boneframe.kernel.pair import Support, as_support, check_pair
from boneframe.kernel.quadratic import QuadraticCells, QuadraticStatistics, regularizer_hessian
from boneframe.operators import Factor, as_factor

__all__ = ["KernelProblem", "project_simplex"]


def project_simplex(h: np.ndarray) -> np.ndarray:
    r"""Euclidean projection onto unit-sum, non-negative kernels.

    Notes
    -----
    :math:`\arg\min_{z \ge 0, \sum z = 1} \|z - h\|` is
    :math:`z = \max(h - \theta, 0)` with :math:`\theta` found from the sorted
    values (Held, Wolfe & Crowder 1974; Duchi et al., ICML 2008).
    """
    flat = np.asarray(h, dtype=np.float64).ravel()
    srt = np.sort(flat)[::-1]
    cum = np.cumsum(srt) - 1.0
    idx = np.arange(1, flat.size + 1)
    rho = int(np.nonzero(srt - cum / idx > 0)[0][-1])
    theta = cum[rho] / (rho + 1)
    return np.maximum(flat - theta, 0.0).reshape(np.shape(h))


def _box_side(box: int | Sequence[int]) -> tuple[int, int, int]:
    """A cell side: one or three positive integers (low-resolution voxels)."""
    sides: tuple[Any, ...] = (box,) * 3 if np.isscalar(box) else tuple(cast(Sequence[int], box))
    if len(sides) != 3 or not all(
        isinstance(b, int | np.integer) and not isinstance(b, bool) and b >= 1 for b in sides
    ):
        raise InputError(f"box must be one or three positive integers, got {box!r}")
    return int(sides[0]), int(sides[1]), int(sides[2])


class _BoxesAt:
    """The boxes' ``(u, g)`` at one kernel and offset: the :class:`Blocks` a
    similarity evaluates on."""

    def __init__(self, boxes: KernelBoxes, h: np.ndarray, t: float):
        self.boxes, self.h, self.t = boxes, h, t

    @property
    def data(self) -> GreyMoments:
        return self.boxes.data

    def reduce(self, fn: Any, *shared: Any) -> Any:
        return self.boxes.reduce(self.h, self.t, fn, *shared)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes.gather(self.h, self.t)


class KernelProblem:
    r"""The kernel-estimation objective, with the offset ``c`` profiled out.

    Parameters
    ----------
    f : ndarray or dask array
        High-resolution volume, shape at least ``p*(n-1)+1`` per axis.
    g : ndarray or dask array
        Low-resolution volume of shape ``n = ceil(f.shape / p)``. With dask
        input the sums run over boxes along the chunks of ``g``
        (:class:`~boneframe.kernel.boxes.KernelBoxes`).
    similarity : Similarity
        Data term ``D(u, g)``: reduced block by block when it is an
        :class:`~boneframe.additive.AdditiveSimilarity`, on ``u`` and
        ``g`` gathered over the valid region otherwise.
    regularizer : Regularizer
        Penalty on ``h`` (``gradient-l2`` with ``weight = alpha`` by default).
    support : int or 3 ints
        Odd kernel support per axis.
    p : int or 3 ints
        Decimation factor per axis.
    fit_offset : bool or None
        Estimate ``c``; default: when the similarity is ``scale_sensitive``
        (otherwise ``c`` stays at ``offset``).
    offset : float
        The offset used when it is not fitted (and the first guess otherwise).
    cache_boxes : bool
        Dask input: keep the transformed boxes in memory between passes
        (:class:`~boneframe.kernel.boxes.KernelBoxes`).
    box : int or 3 ints, optional
        Cut the valid region into cells of about this many low-resolution voxels
        per axis, the units that :attr:`weights` count (a bootstrap replicate,
        :mod:`boneframe.kernel.bootstrap`); default: one cell per box.

    Notes
    -----
    Only the valid low-resolution voxels ``i`` (footprint inside ``f``) are used;
    with :math:`F = f + c`, :math:`r = K // 2` and :math:`w = \partial D / \partial u`,

    .. math::

        u_i = \sum_k h_k F_{p i + r - k} = (X h)_i + c \textstyle\sum_k h_k, \qquad
        \frac{\partial J}{\partial h_k} = \sum_i w_i F_{p i + r - k}
            + \frac{\partial R}{\partial h_k}, \qquad
        \frac{\partial J}{\partial c} = \Big(\sum_k h_k\Big) \sum_i w_i,

    i.e. :math:`\nabla_h J = \mathrm{crop}_K(F \star U^\top w)` (valid-mode
    correlation, by FFT over the crop of ``f`` each box sees) and the paper's
    :math:`\partial J_1/\partial c` with :math:`U(h * E) = \sum_k h_k` on valid
    voxels. ``X`` holds ``f`` with its mean over the crop removed; ``t = c +
    mean(f)`` absorbs it. For L2 (:math:`w = 2(u - g)/Z`) this is the paper's eq.
    after (2).

    **Offset.** The paper alternates between ``h`` and ``c``. Here the ``c``-step
    is carried to its limit: every evaluation at ``h`` first computes the best
    offset :math:`c^*(h) = \arg\min_c J(h, c)` and returns the profiled objective
    :math:`\varphi(h) = J(h, c^*(h))`, whose gradient is
    :math:`\partial_h J(h, c^*(h))` (envelope theorem). For a quadratic similarity
    :math:`D = \tfrac{\kappa}{2}\|u - g\|^2` the best offset sets the mean of
    ``u`` to that of ``g``,

    .. math:: t^*(h) = \frac{\sum_i g_i - h \cdot X^\top 1}{N \sum_k h_k},

    with :math:`X^\top 1` kept, so :math:`\varphi` is quadratic in ``h`` and
    :meth:`normal_equations` gives the exact minimiser of :math:`J` over
    ``(h, c)``; otherwise a secant search on :math:`\partial J/\partial c` (one
    pass of the similarity's gradient sums per step).

    **Normal equations.** With :math:`D(u) = \tfrac{\kappa}{2}\|u - g\|^2`
    (+ const), :math:`P_\perp` the projection removing the mean over valid voxels
    and :math:`H_R` the Hessian of the regulariser,

    .. math:: \big(\kappa X^\top P_\perp X + H_R\big) h
              = \kappa X^\top P_\perp g - \nabla R(0),

    from sums over the boxes (:class:`~boneframe.kernel.quadratic.QuadraticStatistics`).

    **Weights.** With :attr:`weights` (one non-negative integer per cell) every sum
    counts each cell's voxels that many times: the same problem on a resampled
    data set (:class:`~boneframe.kernel.boxes.KernelBoxes`).
    """

    def __init__(
        self,
        f: Any,
        g: Any,
        similarity: Similarity,
        regularizer: Regularizer,
        support: Support = 9,
        p: Factor = 2,
        *,
        fit_offset: bool | None = None,
        offset: float = 0.0,
        cache_boxes: bool = False,
        box: int | Sequence[int] | None = None,
    ):
        self.similarity = similarity
        self.regularizer = regularizer
        self.support = as_support(support)
        self.p = as_factor(p)
        f, g = check_pair(f, g, self.support, self.p)
        cells = None if box is None else _box_side(box)
        self.boxes = KernelBoxes(f, g, self.support, self.p, cache=cache_boxes, box=cells)
        self.fit_offset = similarity.scale_sensitive if fit_offset is None else bool(fit_offset)
        if not similarity.scale_sensitive:
            # the similarity cannot identify the gain: admissible kernels are
            # unit-sum and non-negative (solvers look for ``project``)
            self.project = project_simplex
        if not np.isfinite(offset):
            raise InputError(f"offset must be finite, got {offset}")
        self.offset = float(offset)
        self.f_mean = self.boxes.f_mean
        self._t_cache: list[tuple[np.ndarray, float]] = []

    @property
    def data(self) -> GreyMoments:
        """Moments of ``g`` over the valid voxels."""
        return self.boxes.data

    @property
    def n_valid(self) -> int:
        """Number of valid low-resolution voxels (each counted as often as its
        cell's weight)."""
        return self.boxes.n_valid

    @property
    def weights(self) -> np.ndarray | None:
        """How many times each cell counts (:attr:`KernelBoxes.weights
        <boneframe.kernel.boxes.KernelBoxes.weights>`); ``None``: every voxel once."""
        return self.boxes.weights

    @weights.setter
    def weights(self, weights: Any) -> None:
        self.boxes.weights = weights
        self._t_cache = []

    def blocks(self, h: np.ndarray, c: float | None = None) -> Blocks:
        """The valid voxels' ``(u, g)`` at ``h`` and ``c`` (default: the best offset),
        as the :class:`~boneframe.additive.Blocks` a similarity reads."""
        h = np.asarray(h, dtype=np.float64)
        t = self._t(h) if c is None else c + self.f_mean
        return _BoxesAt(self.boxes, h, t)

    def predict(self, h: np.ndarray, c: float | None = None) -> np.ndarray:
        """``U(h * (f + c))`` on the valid voxels, in memory (``c`` defaults to the best
        offset)."""
        return self.blocks(h, c).gather()[0]

    def start_scale(self, h: np.ndarray) -> float:
        """``std(g) / std(predict(h))`` on the valid voxels (1 when the prediction is flat)."""
        m = self.boxes.pair_moments(np.asarray(h, dtype=np.float64), self._t(h))
        return float(np.sqrt(m.gg / m.uu)) if m.uu > 0 else 1.0

    # -- the offset --------------------------------------------------------------
    def _t(self, h: np.ndarray) -> float:
        """The best ``t = c + mean(f)`` for ``h`` (the last two are kept)."""
        h = np.asarray(h, dtype=np.float64)
        for hc, t in self._t_cache:
            if hc.shape == h.shape and np.array_equal(hc, h):
                return t
        t = self._best_t(h)
        self._t_cache = [(h.copy(), t), *self._t_cache[:1]]
        return t

    def _best_t(self, h: np.ndarray) -> float:
        t0 = self.offset + self.f_mean
        gain = float(np.sum(h))
        if not self.fit_offset or gain == 0.0:
            return t0
        if self.similarity.quadratic:  # the mean of u matches the mean of g
            base = float(np.vdot(h, self.boxes.xt1()))
            return (self.data.total - base) / (self.n_valid * gain)

        def slope(t: float) -> float:  # dD/dt = gain * sum(dD/du), the paper's dJ/dc
            lg = evaluate_similarity(self.similarity, _BoxesAt(self.boxes, h, t), True)[1]
            assert lg is not None
            return gain * self.boxes.gradient(lg, h, t, correlate=False)[1]

        span = self.data.std / abs(gain) or 1.0
        sol = scipy.optimize.root_scalar(
            slope, x0=t0, x1=t0 + 0.1 * span, method="secant", xtol=1e-12
        )
        if sol.converged and np.isfinite(sol.root):
            return float(sol.root)
        res = scipy.optimize.minimize_scalar(
            lambda t: evaluate_similarity(self.similarity, _BoxesAt(self.boxes, h, t), False)[0],
            bracket=(t0 - span, t0 + span),
        )
        return float(res.x)

    def best_offset(self, h: np.ndarray) -> float:
        """``c* = argmin_c J(h, c)`` (the fixed ``offset`` when it is not fitted)."""
        return self._t(h) - self.f_mean

    def fit_gain_offset(self, h: np.ndarray) -> tuple[float, float]:
        """Least-squares ``g ≈ a U(h * f) + b`` on the valid voxels: the gain ``a``
        and the offset ``c = b / a`` of the model ``U(a h * (f + c))``."""
        m = self.boxes.pair_moments(np.asarray(h, dtype=np.float64), self.f_mean)
        a = m.ug / m.uu if m.uu > 0 else 0.0
        if a == 0:
            raise InputError("the prediction does not explain the low-resolution volume")
        b = m.mean_g - a * m.mean_u
        return float(a), float(b / a)

    # -- objective ---------------------------------------------------------------
    def objective(self, h: np.ndarray, c: float) -> tuple[float, np.ndarray, float]:
        """``J(h, c)`` and its gradients with respect to ``h`` and ``c`` (no profiling)."""
        h = np.asarray(h, dtype=np.float64)
        t = c + self.f_mean
        gain = float(np.sum(h))
        d, lg = evaluate_similarity(self.similarity, _BoxesAt(self.boxes, h, t), True)
        assert lg is not None
        corr, sw = self.boxes.gradient(lg, h, t)
        assert corr is not None  # correlate=True
        grad_h = corr + t * sw + self.regularizer.grad(h)
        return float(d) + self.regularizer(h), grad_h, gain * sw

    def value_and_grad(self, h: np.ndarray) -> tuple[float, np.ndarray]:
        """Profiled objective ``J(h, c*(h))`` and its gradient in ``h``."""
        value, grad_h, _ = self.objective(h, self.best_offset(h))
        return value, grad_h

    def value(self, h: np.ndarray) -> float:
        """Profiled objective ``J(h, c*(h))``."""
        d = evaluate_similarity(self.similarity, self.blocks(h), False)[0]
        return float(d) + self.regularizer(h)

    # -- normal equations (quadratic similarities) ---------------------------------
    def quadratic_statistics(self) -> QuadraticStatistics:
        """The sums the normal equations and GCV need (one pass over the boxes, kept).

        Raises
        ------
        InputError
            The similarity is not quadratic.
        """
        curvature = self._curvature()
        gram = self.boxes.gram()
        return QuadraticStatistics(
            kappa=float(curvature(self.data)),
            xtx=gram["xtx"],
            xt1=gram["xt1"],
            xtg=gram["xtg"],
            n_valid=self.n_valid,
            g_sum=self.data.total,
            g_perp=self.data.m2,
        )

    def quadratic_cells(self) -> QuadraticCells:
        """Each cell's sums for the normal equations (one pass over the boxes; weights
        ignored): every weighting's :class:`QuadraticStatistics` from them at the cost
        of a weighted sum (:meth:`QuadraticCells.statistics
        <boneframe.kernel.quadratic.QuadraticCells.statistics>`).

        Raises
        ------
        InputError
            The similarity is not quadratic.
        """
        curvature = self._curvature()
        return QuadraticCells.of(self.boxes.cell_sums(), curvature)

    def _curvature(self) -> Any:
        """The quadratic similarity's ``curvature(data)``.

        Raises
        ------
        InputError
            The similarity is not quadratic.
        """
        sim = self.similarity
        curvature = getattr(sim, "curvature", None)
        if not sim.quadratic or curvature is None:
            raise InputError(
                f"solver 'exact' needs a quadratic similarity; {sim.name!r} is not "
                "(use solver 'gradient-descent')"
            )
        return curvature

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` of the profiled quadratic objective: its minimiser solves ``A h = b``.

        Without offset fitting, ``c`` is held at ``offset`` instead of profiled.
        """
        stats = self.quadratic_statistics()
        hess_r, grad_r0 = regularizer_hessian(self.regularizer, self.support)
        return stats.normal_equations(hess_r, grad_r0, self.fit_offset, self.offset + self.f_mean)

    def gcv_weight(self) -> float:
        """Multiplier of the regulariser chosen by generalised cross-validation
        (:meth:`~boneframe.kernel.quadratic.QuadraticStatistics.gcv_weight`)."""
        hess_r = regularizer_hessian(self.regularizer, self.support)[0]
        return self.quadratic_statistics().gcv_weight(hess_r)
