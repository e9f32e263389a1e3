r"""Super-resolution with a kernel that varies across the field of view.

The forward model of a :class:`~boneframe.kernel.regional.RegionalKernel` is

.. math::
    g = \sum_r W_r\, U H_r f + b, \qquad b = \sum_r W_r\, \gamma_r c_r,

``W_r`` the partition of unity of the region centres on the low-resolution grid
(:mod:`boneframe.operators.partition`), ``H_r`` the circular convolution with
region ``r``'s kernel, :math:`\gamma_r, c_r` its gain and offset. (Weighting
the low-resolution voxels is the same as weighting the high-resolution voxels
``p i`` they sample, as :class:`~boneframe.operators.variant.VariantBlur` does,
because ``U`` keeps those voxels.)

**Method.** ADMM is unchanged; only its f-step, the solution of

.. math:: (\mu A^\top A + \beta D^\top D)\, x = \mu A^\top g + \beta D^\top w,
   \qquad A = \textstyle\sum_r W_r U H_r,

loses its closed form. It is solved by conjugate gradients preconditioned by
the exact Fourier solve of the *stationary* model whose kernel is the
weight-averaged kernel :math:`\bar h = \sum_r \bar w_r h_r`
(:class:`~boneframe.fourier_solve.FourierNormalSolver`), warm-started from
the previous f-step. Applying :math:`A^\top A` costs two high-resolution FFTs
and ``2R`` low-resolution ones (each region's blur is evaluated in Fourier and
folded to the low-resolution grid before its weight is applied), the
preconditioner two more. :math:`A x` is carried along the iteration, so the
data term ADMM records costs nothing more.

**Approximation.** The f-step is solved to a relative residual ``cg_tol``
(default :data:`CG_TOL`), so the iterates are those of inexact ADMM on the
exact variant model; with a tight ``cg_tol`` they are the exact ones. The
periodic padding is the stationary solve's, the weights held constant beyond
the outer region centres.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.fourier_solve import circular_kernel
from boneframe.interfaces import Regularizer
from boneframe.kernel.regional import RegionalKernel
from boneframe.operators import Factor, as_factor
from boneframe.operators.partition import region_weight
from boneframe.superres.checks import check_scale, real_volume
from boneframe.superres.problem import (
    GREY_RANGE,
    SuperResolutionProblem,
    _fast_len,
    _robust_range,
    padding_width,
)

__all__ = ["CG_MAX_ITER", "CG_TOL", "VariantSuperResolutionProblem"]

#: Relative residual at which the conjugate-gradient f-step stops.
CG_TOL = 1e-4
#: Most conjugate-gradient iterations per f-step.
CG_MAX_ITER = 50


class VariantSuperResolutionProblem(SuperResolutionProblem):
    r"""``min_f mu/2 ||sum_r W_r U H_r f - g||² + R(f)``: a spatially variant ADMM problem.

    Parameters
    ----------
    g : ndarray
        The low-resolution volume, offset field removed, padded and scaled.
    kernels : list of ndarray
        One kernel per region (already divided by the common gain).
    weights : list of ndarray
        Each region's weight on the (padded) low-resolution grid; they sum to one.
    p : int or 3 ints
        Resolution factor.
    regularizer : Regularizer
    cg_tol, cg_max_iter : float, int
        Stopping rule of the conjugate-gradient f-step.
    dtype, workers
        As :class:`~boneframe.superres.problem.SuperResolutionProblem` (CPU only).

    Attributes
    ----------
    cg_iterations : list of int
        Conjugate-gradient iterations of every f-step so far.
    """

    def __init__(
        self,
        g: np.ndarray,
        kernels: list[np.ndarray],
        weights: list[np.ndarray],
        p: Factor,
        regularizer: Regularizer,
        *,
        cg_tol: float = CG_TOL,
        cg_max_iter: int = CG_MAX_ITER,
        dtype: Any = np.float32,
        workers: int = -1,
    ):
        if len(kernels) != len(weights) or not kernels:
            raise InputError("a variant problem needs one weight per kernel")
        omega = [float(np.mean(w)) for w in weights]
        mean = np.sum(
            [o * np.asarray(h, dtype=np.float64) for o, h in zip(omega, kernels, strict=True)],
            axis=0,
        )
        super().__init__(g, mean, p, regularizer, dtype=dtype, workers=workers, device="cpu")
        self.kernels = [np.asarray(h, dtype=np.float64) for h in kernels]
        self.weights = [np.ascontiguousarray(w, dtype=self.dtype) for w in weights]
        for w in self.weights:
            if w.shape != self.g.shape:
                raise InputError(
                    f"region weights of shape {w.shape} for a volume of {self.g.shape}"
                )
        if not (0 < cg_tol < 1) or cg_max_iter < 1:
            raise InputError(
                f"cg_tol must lie in (0, 1) and cg_max_iter >= 1, got {cg_tol}, {cg_max_iter}"
            )
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        self._lams: list[Any] | None = None
        self._rhs_data: np.ndarray | None = None
        self._x_prev: np.ndarray | None = None
        self._ax_prev: np.ndarray | None = None
        self._returned: np.ndarray | None = None
        self._psi: tuple[float, Any] | None = None
        self.cg_iterations: list[int] = []

    @classmethod
    def from_regional(
        cls,
        g: np.ndarray,
        regional: RegionalKernel,
        positions: list[np.ndarray],
        *,
        regularizer: Regularizer,
        workers: int = -1,
        scale: float | None = None,
        cg_tol: float = CG_TOL,
        cg_max_iter: int = CG_MAX_ITER,
    ) -> VariantSuperResolutionProblem:
        """The normalised, padded problem for a scan ``g`` whose voxels lie at
        ``positions`` (µm along each axis, see
        :func:`~boneframe.kernel.regional.axis_positions`).

        ``(g - b) / gamma`` (``b`` the blended offset field, ``gamma`` the mean of the
        regions' gains) is scaled to :data:`GREY_RANGE` as the stationary
        problem's, reflect-padded by the kernels' reach; the weights are evaluated
        at the padded voxels' positions.
        """
        g = real_volume(g, "g")
        p3 = as_factor(regional.p)
        gain = float(np.mean(regional.gains))
        if abs(gain) < 1e-12:
            raise InputError("the regional kernels' mean gain is zero")
        offset_field = regional.blend(positions, regional.gains * regional.offsets)
        corrected = (g.astype(np.float64) - offset_field) / gain
        scale = GREY_RANGE / _robust_range(corrected) if scale is None else check_scale(scale)
        pad = padding_width(regional.support, p3)
        padded = [_fast_len(n + 2 * m, q) for n, m, q in zip(g.shape, pad, p3, strict=True)]
        widths = [(m, L - n - m) for n, m, L in zip(g.shape, pad, padded, strict=True)]
        g_n = np.pad((corrected * scale).astype(np.float32), widths, mode="reflect")
        step = [float(x[1] - x[0]) if len(x) > 1 else 1.0 for x in positions]
        pos = [
            x[0] + (np.arange(L) - m) * s
            for x, L, (m, _), s in zip(positions, padded, widths, step, strict=True)
        ]
        axis_w = regional.axis_weights(pos)
        weights = [region_weight(axis_w, index) for index in np.ndindex(*regional.grid)]
        problem = cls(
            g_n, [h / gain for h in regional.arrays], weights, p3, regularizer,
            cg_tol=cg_tol, cg_max_iter=cg_max_iter, workers=workers,
        )  # fmt: skip
        problem.scale = scale
        problem.padding = pad
        problem.crop = tuple(
            slice(q * m, q * (m + n)) for q, m, n in zip(p3, pad, g.shape, strict=True)
        )
        return problem

    # -- the variant operator ----------------------------------------------------------
    def _spectra(self) -> list[Any]:
        if self._lams is None:
            s = self._fourier(1.0, 1.0) if self._solver is None else self._solver
            self._lams = [
                s.forward(circular_kernel(h, self.shape, np.float64)).astype(s.cdtype)
                for h in self.kernels
            ]
        return self._lams

    def forward_lr(self, x: np.ndarray) -> np.ndarray:
        r"""``A x = sum_r W_r U H_r x`` on the (padded) low-resolution grid."""
        s = self._solver or self._fourier(1.0, 1.0)
        return self._forward_spec(s, s.forward(np.asarray(x, dtype=self.dtype)))

    def _forward_spec(self, s: Any, spec: Any) -> np.ndarray:
        out = np.zeros(self.g.shape, dtype=self.dtype)
        for lam, w in zip(self._spectra(), self.weights, strict=True):
            lr = s.fold(lam * spec)  # the LR spectrum of U H_r x, times d
            lr /= s.d
            out += w * s.lr_inverse(lr)
        return out

    def _adjoint_spec(self, s: Any, y: np.ndarray) -> Any:
        total = None
        for lam, w in zip(self._spectra(), self.weights, strict=True):
            part = s.tile_multiply(np.conj(lam), s.lr_spectrum(w * y))
            if total is None:
                total = part
            else:
                total += part
        return total

    def adjoint_lr(self, y: np.ndarray) -> np.ndarray:
        r"""``A^T y = sum_r H_r^T U^T (W_r y)``."""
        s = self._solver or self._fourier(1.0, 1.0)
        return s.inverse(self._adjoint_spec(s, np.asarray(y, dtype=self.dtype)), overwrite=True)

    def _normal(self, x: np.ndarray, mu: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        r"""``(mu A^T A + beta D^T D) x`` and ``A x``."""
        s = self._fourier(mu, beta)
        spec = s.forward(x)
        ax = self._forward_spec(s, spec)
        out = self._adjoint_spec(s, ax)
        out *= mu
        if self._psi is None or self._psi[0] != beta:  # kept while beta is
            self._psi = (beta, s.psi())
        out += spec * self._psi[1]
        return s.inverse(out, overwrite=True), ax

    # -- the ADMM f-step --------------------------------------------------------------
    def solve_split_adjoint(self, dtw: Any, mu: float, beta: float) -> Any:
        r"""The f-step given :math:`D^T w`: preconditioned conjugate gradients on
        :math:`(\mu A^\top A + \beta D^\top D) x = \mu A^\top g + \beta D^\top w`."""
        s = self._fourier(mu, beta)
        if self._rhs_data is None:
            self._rhs_data = self.adjoint_lr(self.g)
        b = (mu * self._rhs_data + beta * np.asarray(dtw, dtype=np.float64)).astype(self.dtype)
        b_norm = float(np.linalg.norm(b))
        if self._x_prev is None:
            x = s.solve(b)
            mx, ax = self._normal(x, mu, beta)
        else:
            x = self._x_prev.copy()
            mx, ax = self._normal(x, mu, beta)
        r = b - mx
        z = s.solve(r)
        d = z.copy()
        rz = _dot(r, z)
        it = 0
        while it < self.cg_max_iter and float(np.linalg.norm(r)) > self.cg_tol * b_norm:
            md, ad = self._normal(d, mu, beta)
            a = rz / _dot(d, md)
            x += a * d
            ax += a * ad
            r -= a * md
            it += 1
            z = s.solve(r)
            rz_new = _dot(r, z)
            d *= rz_new / rz
            d += z
            rz = rz_new
        self.cg_iterations.append(it)
        self._x_prev, self._ax_prev = x, ax
        self._returned = x.copy()
        return self._returned

    def residual_norm2(self, x: Any) -> float:
        """``||A x - g||²`` (from the f-step's own ``A x`` when ``x`` is its result)."""
        if self._returned is not None and x is self._returned:
            res = self._ax_prev - self.g
        else:
            res = self.forward_lr(x) - self.g
        return float(np.sum(res.astype(np.float64) ** 2))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))
