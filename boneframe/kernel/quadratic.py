"""The normal equations of a quadratic kernel-estimation problem, and GCV.

Everything a quadratic similarity needs from the data is a handful of sums over
the valid voxels (:class:`QuadraticStatistics`), so a blocked volume sums its
boxes' and solves exactly as in memory; kept per cell (:class:`QuadraticCells`),
any weighting of the cells (a bootstrap replicate) costs a weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from boneframe.additive import GreyMoments
from boneframe.errors import InputError
from boneframe.interfaces import Regularizer

__all__ = [
    "QuadraticCells",
    "QuadraticStatistics",
    "cell_counts",
    "regularizer_hessian",
    "upper_indices",
]


def cell_counts(weights: Any, n_cells: int) -> np.ndarray:
    """``weights`` as how many times each of ``n_cells`` cells counts (int64).

    Raises
    ------
    InputError
        Not one non-negative integer per cell, or all zero.
    """
    raw = np.asarray(weights)
    ok = raw.shape == (n_cells,) and (
        np.issubdtype(raw.dtype, np.integer)
        or (np.issubdtype(raw.dtype, np.floating) and bool(np.all(np.mod(raw, 1) == 0)))
    )
    if not ok or np.any(raw < 0) or not np.any(raw > 0):
        raise InputError(
            f"box weights must be {n_cells} non-negative integers (one per cell), not all "
            f"zero; got {raw.dtype} of shape {raw.shape}"
        )
    return raw.astype(np.int64)


@lru_cache(maxsize=4)
def upper_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``numpy.triu_indices(n)``, kept (read-only): where a packed upper triangle goes."""
    rows, cols = np.triu_indices(n)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def regularizer_hessian(
    regularizer: Regularizer, support: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian and gradient at 0 of a quadratic regulariser (column by column).

    Raises
    ------
    InputError
        The regulariser is not quadratic.
    """
    support = tuple(support)
    n = int(np.prod(support))
    zero = np.zeros(support)
    g0 = np.asarray(regularizer.grad(zero), dtype=np.float64).ravel()
    hess = np.empty((n, n))
    e = zero.copy()
    for j in range(n):
        e.flat[j] = 1.0
        hess[:, j] = np.asarray(regularizer.grad(e)).ravel() - g0
        e.flat[j] = 0.0
    x = np.random.default_rng(0).standard_normal(n)
    if not np.allclose(
        np.asarray(regularizer.grad(x.reshape(support))).ravel(),
        hess @ x + g0,
        rtol=1e-8,
        atol=1e-12 * (1.0 + float(np.abs(hess).max())),
    ):
        raise InputError(
            f"solver 'exact' needs a quadratic regularizer; {regularizer.name!r} is not"
        )
    return hess, g0


@dataclass
class QuadraticStatistics:
    r"""What the normal equations and GCV need from the data, as sums over voxels.

    Attributes
    ----------
    kappa : float
        Curvature of ``D(u) = kappa/2 ||u - g~||^2 + const``.
    xtx, xt1, xtg : ndarray
        :math:`X^\top X`, :math:`X^\top 1`, :math:`X^\top \tilde g` (``X`` with
        the mean of ``f`` removed).
    n_valid : int
        Number of valid voxels ``N``.
    g_sum : float
        :math:`\sum \tilde g`.
    g_perp : float
        :math:`\|P_\perp \tilde g\|^2 = \sum (\tilde g - \bar{\tilde g})^2`.

    Notes
    -----
    Every field but ``kappa`` is a sum over the valid voxels, so the statistics
    of a volume are the sums of those of boxes tiling it (``g_perp`` through
    the parallel variance update).
    """

    kappa: float
    xtx: np.ndarray
    xt1: np.ndarray
    xtg: np.ndarray
    n_valid: int
    g_sum: float
    g_perp: float

    def normal_equations(
        self,
        hess_r: np.ndarray,
        grad_r0: np.ndarray,
        fit_offset: bool = True,
        t: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""``(A, b)`` with ``A h = b`` at the minimiser (see
        :class:`~boneframe.kernel.problem.KernelProblem`).

        ``t = c + mean(f)`` is the fixed offset used when it is not fitted.
        """
        xtx, xt1, xtg = self.xtx, self.xt1, self.xtg
        n_valid = float(self.n_valid)
        if fit_offset:
            a = xtx - np.outer(xt1, xt1) / n_valid
            b = xtg - xt1 * (self.g_sum / n_valid)
        else:
            a = xtx + t * (np.add.outer(xt1, xt1)) + t * t * n_valid
            b = xtg + t * self.g_sum
        return self.kappa * a + hess_r, self.kappa * b - grad_r0

    def gcv_weight(self, hess_r: np.ndarray) -> float:
        r"""Multiplier of the regulariser chosen by generalised cross-validation.

        Notes
        -----
        For the profiled quadratic problem :math:`(\kappa B + s H) h = \kappa b`
        (:math:`B = X^\top P_\perp X`, :math:`H` the regulariser's Hessian), with
        :math:`\lambda = s / \kappa` and :math:`N` valid voxels, GCV [1]_ minimises

        .. math::

            V(\lambda) = \frac{N \, \|P_\perp (X h_\lambda - \tilde g)\|^2}
                              {\big(N - 1 - \operatorname{tr}[(B + \lambda H)^{-1} B]\big)^2}

        (the 1 counts the offset). With :math:`B = R^\top R` and
        :math:`R^{-\top} H R^{-1} = V \operatorname{diag}(\mu) V^\top`,
        :math:`\beta = V^\top R^{-\top} b` and :math:`\phi_i = 1/(1 + \lambda \mu_i)`,
        the trace is :math:`\sum_i \phi_i` and the residual
        :math:`\|P_\perp \tilde g\|^2 - \sum_i \beta_i^2 (2\phi_i - \phi_i^2)`: one
        :math:`K^3 \times K^3` eigendecomposition (0.4 s for :math:`9^3`, 7 s for
        :math:`13^3`), then every :math:`\lambda` costs :math:`O(K^3)`. Scaling
        ``f`` or ``g`` leaves the choice unchanged.

        References
        ----------
        .. [1] G. H. Golub, M. Heath, G. Wahba, "Generalized cross-validation as a
           method for choosing a good ridge parameter", Technometrics 21 (1979) 215–223.
        """
        kappa, xtx, xt1, xtg = self.kappa, self.xtx, self.xt1, self.xtg
        n_valid = float(self.n_valid)
        b_mat = xtx - np.outer(xt1, xt1) / n_valid
        rhs = xtg - xt1 * (self.g_sum / n_valid)
        jitter = 1e-12 * float(np.trace(b_mat)) / b_mat.shape[0]
        chol = scipy.linalg.cholesky(b_mat + jitter * np.eye(b_mat.shape[0]))
        half = scipy.linalg.solve_triangular(chol, hess_r, trans="T")
        pencil = scipy.linalg.solve_triangular(chol, half.T, trans="T")
        mu, vecs = scipy.linalg.eigh(0.5 * (pencil + pencil.T))
        mu = np.clip(mu, 0.0, None)
        beta2 = (vecs.T @ scipy.linalg.solve_triangular(chol, rhs, trans="T")) ** 2
        g_perp = self.g_perp
        mu_max = float(mu.max())
        if mu_max <= 0:
            return 0.0
        mu_min = float(mu[mu > 1e-12 * mu_max].min())

        def score(log_lam: np.ndarray) -> np.ndarray:
            phi = 1.0 / (1.0 + np.exp(log_lam)[..., None] * mu)
            rss = np.maximum(g_perp - (beta2 * (2.0 * phi - phi * phi)).sum(axis=-1), 0.0)
            dof = n_valid - 1.0 - phi.sum(axis=-1)
            return np.where(dof > 0, n_valid * rss / np.maximum(dof, 1e-300) ** 2, np.inf)

        grid = np.linspace(np.log(1e-3 / mu_max), np.log(1e3 / mu_min), 400)
        i = int(np.argmin(score(grid)))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        best = scipy.optimize.minimize_scalar(
            lambda x: float(score(np.asarray(x))),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10},
        )
        return float(np.exp(best.x) * kappa)


@dataclass
class QuadraticCells:
    r"""The sums of :class:`QuadraticStatistics`, cell by cell.

    Attributes
    ----------
    xtx : list of ndarray
        Each cell's :math:`X^\top X` (``n`` kernel taps), its upper triangle row
        by row (``n (n + 1) / 2`` values).
    xt1, xtg : list of ndarray
        Each cell's :math:`X^\top 1` and :math:`X^\top \tilde g` (``n`` values).
    data : list of GreyMoments
        Each cell's moments of ``g``.
    curvature : callable
        ``curvature(data) -> kappa`` of the similarity, from the moments of all
        counted voxels.

    Notes
    -----
    Counting cell ``j`` :math:`m_j` times gives :math:`\sum_j m_j S_j` for each sum
    :math:`S` (the moments merged :math:`m_j` times): :math:`O(C K^6)` for
    :math:`C` cells, instead of a pass over the data. Memory: :math:`C K^3 (K^3 +
    1) / 2` floats (2.1 MB a cell for :math:`K = 9`).
    """

    xtx: list[np.ndarray]
    xt1: list[np.ndarray]
    xtg: list[np.ndarray]
    data: list[GreyMoments]
    curvature: Callable[[GreyMoments], float]

    @classmethod
    def of(
        cls, cells: Sequence[dict[str, Any]], curvature: Callable[[GreyMoments], float]
    ) -> QuadraticCells:
        """From per-cell dicts ``xtx`` (upper triangle), ``xt1``, ``xtg``, ``data``
        (:meth:`KernelBoxes.cell_sums <boneframe.kernel.boxes.KernelBoxes.cell_sums>`)."""
        return cls(
            xtx=[c["xtx"] for c in cells],
            xt1=[c["xt1"] for c in cells],
            xtg=[c["xtg"] for c in cells],
            data=[c["data"] for c in cells],
            curvature=curvature,
        )

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self.data)

    def statistics(self, weights: Any = None) -> QuadraticStatistics:
        """The statistics of the data set counting cell ``j`` ``weights[j]`` times
        (non-negative integers; default: every cell once).

        Raises
        ------
        InputError
            Weights that are not one non-negative integer per cell, not all zero.
        """
        w = (
            np.ones(self.n_cells, np.int64)
            if weights is None
            else cell_counts(weights, self.n_cells)
        )
        counted = [(j, m) for j, m in enumerate(w.tolist()) if m > 0]
        data: GreyMoments | None = None
        for j, m in counted:
            for _ in range(m):
                data = self.data[j] if data is None else data + self.data[j]
        assert data is not None

        def total(parts: list[np.ndarray]) -> np.ndarray:
            out = np.zeros_like(parts[0])
            for j, m in counted:
                out += parts[j] if m == 1 else m * parts[j]
            return out

        n = self.xt1[0].size
        xtx = np.empty((n, n))
        upper = upper_indices(n)
        xtx[upper] = total(self.xtx)
        xtx[upper[1], upper[0]] = xtx[upper]
        return QuadraticStatistics(
            kappa=float(self.curvature(data)),
            xtx=xtx,
            xt1=total(self.xt1),
            xtg=total(self.xtg),
            n_valid=int(data.n),
            g_sum=data.total,
            g_perp=data.m2,
        )
