r"""Blurring-kernel estimation from a registered high/low-resolution pair.

The forward model is the paper's ``g = U(h * (f + c)) + n`` (§2.1): ``f`` is the
high-resolution (micro-CT) volume, ``g`` the low-resolution scan, ``U`` keeps
voxels ``0, p, 2p, ...`` per axis, ``h`` is an odd-support kernel and ``c`` a
grey-level offset. The kernel minimises

.. math:: J(h, c) = D\big(U(h * (f + c)), g\big) + \alpha \|\nabla h\|_2^2

over the low-resolution voxels whose high-resolution footprint lies inside ``f``
only (:func:`boneframe.operators.valid_lr_slices`): no boundary assumption about
what lies outside ``f`` enters ``h``.

Data flow: :func:`estimate_kernel` validates the pair, builds a
:class:`KernelProblem` (any :class:`~boneframe.interfaces.Similarity` and
:class:`~boneframe.interfaces.Regularizer` from the registry), hands it to a
registered :class:`~boneframe.interfaces.Solver` and returns a
:class:`KernelEstimate`. Summaries (FWHM, MTF) are in
:mod:`boneframe.kernel_summary`.

The pieces are reusable by the chunked path (:mod:`boneframe.chunked.kernel`,
taken by :func:`estimate_kernel` when ``f`` or ``g`` is a dask array):
:class:`ValidDesign` (the design matrix of one crop: blur, correlation, Gram),
:class:`QuadraticStatistics` (normal equations and GCV from sums over voxels),
:func:`regularizer_hessian`, :func:`build_strategies` and
:func:`solve_kernel_problem` (alpha, start, solver, result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.optimize
from numpy.lib.stride_tricks import sliding_window_view

from boneframe.errors import InputError
from boneframe.interfaces import Callback, Regularizer, Similarity
from boneframe.operators import Factor, as_factor, decimated_shape, valid_lr_slices

#: Relative regularisation weight of :func:`default_alpha` (the fallback when
#: the similarity is not quadratic and GCV does not apply).
DEFAULT_RELATIVE_ALPHA = 0.03
#: Memory budget (bytes) of one block of the design matrix when the normal
#: equations are assembled.
GRAM_BLOCK_BYTES = 128 * 2**20

Support = int | Sequence[int]


def as_support(support: Support) -> tuple[int, int, int]:
    """Kernel support per axis: one or three odd positive integers."""
    k = (support,) * 3 if np.isscalar(support) else tuple(support)  # type: ignore[arg-type]
    if len(k) != 3 or any(int(v) != v or v < 1 or v % 2 == 0 for v in k):
        raise InputError(
            f"kernel support must be one or three odd positive integers, got {support!r}"
        )
    return tuple(int(v) for v in k)  # type: ignore[return-value]


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


@lru_cache(maxsize=16)
def _lag_dft(lags: int, length: int) -> np.ndarray:
    """Rows ``0 .. lags-1`` of the inverse DFT of ``length`` points (read-only)."""
    grid = np.outer(np.arange(lags), np.arange(length)) % length
    out = np.exp((2j * np.pi / length) * grid) / length
    out.flags.writeable = False
    return out


def _per_axis(values: Sequence[Any], key: Any) -> tuple[Any, ...]:
    return tuple(key(*v) for v in zip(*values, strict=True))


class ValidDesign:
    r"""The design matrix ``X`` of the valid low-resolution voxels of one crop.

    Parameters
    ----------
    crop : ndarray
        High-resolution crop (float64, mean already removed) covering the
        footprints of a box of low-resolution voxels: shape ``p (n - 1) + K`` per
        axis for ``n`` low-resolution voxels.
    support : 3 ints
        Odd kernel support.
    p : 3 ints
        Decimation factor.

    Notes
    -----
    Row ``i`` of ``X`` holds :math:`f_{p i + r - k}` over the kernel indices
    ``k`` (:math:`r = K // 2`), so :math:`X h = U(h * f)` on the box and
    :math:`X^\top w = \mathrm{crop}_K(f \star U^\top w)`. A box of the valid
    region is a block of rows: sums over boxes that tile the valid region give
    the whole problem's :math:`X^\top w` and :math:`X^\top X`
    (:mod:`boneframe.chunked.kernel`).
    """

    def __init__(self, crop: np.ndarray, support: Sequence[int], p: Sequence[int]):
        self.support = tuple(int(k) for k in support)
        self.p = tuple(int(q) for q in p)
        self.radius = tuple(k // 2 for k in self.support)
        self.f = crop
        self.span = tuple(m - 2 * r for m, r in zip(crop.shape, self.radius, strict=True))
        if min(self.span) < 1:
            raise InputError(f"crop {crop.shape} is smaller than the kernel support {support}")
        self.lr_shape = _per_axis((self.span, self.p), lambda s, q: (s - 1) // q + 1)
        self.fft_shape = tuple(scipy.fft.next_fast_len(m, real=True) for m in crop.shape)
        self.f_hat = scipy.fft.rfftn(crop, self.fft_shape, workers=-1)

    def blur(self, h: np.ndarray) -> np.ndarray:
        """``X h``: ``U(h * f)`` on the box.

        Pruned FFTs: the kernel's transform skips its zero rows, the inverse
        transform keeps only the decimated valid outputs after each axis.
        """
        (l0, l1, l2), w = self.fft_shape, -1
        spec = scipy.fft.rfft(h, n=l2, axis=2, workers=w)
        spec = scipy.fft.fft(spec, n=l1, axis=1, workers=w)
        spec = scipy.fft.fft(spec, n=l0, axis=0, workers=w)
        spec *= self.f_hat  # in place: the largest array of the pass
        (r0, r1, r2), (s0, s1, s2), (q0, q1, q2) = self.radius, self.span, self.p
        spec = scipy.fft.ifft(spec, axis=0, workers=w, overwrite_x=True)
        spec = spec[2 * r0 : 2 * r0 + s0 : q0]
        spec = scipy.fft.ifft(spec, axis=1, workers=w)[:, 2 * r1 : 2 * r1 + s1 : q1]
        return scipy.fft.irfft(spec, n=l2, axis=2, workers=w)[..., 2 * r2 : 2 * r2 + s2 : q2]

    def correlate(self, w: np.ndarray) -> np.ndarray:
        """``X^T w``: the ``K^3`` lags of ``f ⋆ U^T w`` (valid correlation).

        ``U^T w`` is transformed axis by axis, zero-filling one axis at a time so
        that empty rows are never transformed; only the ``K`` lags wanted per
        axis are carried through the inverse transform.
        """
        (l0, l1, l2), (s0, s1, s2), (q0, q1, q2) = self.fft_shape, self.span, self.p
        (k0, k1, k2), workers = self.support, -1
        # stuffed straight into the padded length: no copy inside the transform
        stuffed = np.zeros((*w.shape[:2], l2))
        stuffed[..., :s2:q2] = w
        spec = scipy.fft.rfft(stuffed, axis=2, workers=workers)
        stuffed = np.zeros((w.shape[0], l1, spec.shape[2]), dtype=spec.dtype)
        stuffed[:, :s1:q1] = spec
        spec = scipy.fft.fft(stuffed, axis=1, workers=workers, overwrite_x=True)
        stuffed = np.zeros((l0, *spec.shape[1:]), dtype=spec.dtype)
        stuffed[:s0:q0] = spec
        spec = scipy.fft.fft(stuffed, axis=0, workers=workers, overwrite_x=True)
        np.conjugate(spec, out=spec)
        spec *= self.f_hat
        # only K0 lags are wanted along axis 0: a K0 x L0 inverse DFT, not an FFT
        # of all L0 outputs (the largest array of the pass)
        spec = (_lag_dft(k0, l0) @ spec.reshape(l0, -1)).reshape(k0, *spec.shape[1:])
        spec = scipy.fft.ifft(spec, axis=1, workers=workers)[:, :k1]
        corr = scipy.fft.irfft(spec, n=l2, axis=2, workers=workers)[..., :k2]
        return corr[::-1, ::-1, ::-1]

    def gram(self) -> np.ndarray:
        r"""``X^T X`` over the box (float32 blocks summed in float64, symmetric).

        Notes
        -----
        Column ``m`` of the design matrix holds :math:`f_{p i + m}` (``m`` is the
        flipped kernel index), so :math:`G_{m m'} = \sum_i f_{p i + m} f_{p i + m'}`.
        Shifting both columns by ``p`` along axis 0 slides the window by one
        low-resolution slice, which gives the recurrence of the covariance method
        of linear prediction [1]_,

        .. math:: G_{m + p e_0,\, m' + p e_0} = G_{m m'} + T_{p n_0 + m_0,\, p n_0 + m'_0}
                  - T_{m_0, m'_0},

        where :math:`T_{z z'}` is the :math:`K^2 \times K^2` Gram matrix of the 2D
        windows of high-resolution slices ``z`` and ``z'`` (float64). Only the
        rows with :math:`m_0 < p` are summed over all voxels, in float32 BLAS
        blocks of ``GRAM_BLOCK_BYTES`` accumulated in float64: :math:`N p K^5`
        products instead of the :math:`N K^6 / 2` of a symmetric product (2.2×
        fewer for :math:`K = 9`, 3.2× for 13). The float32 products stay accurate
        because ``f`` has its mean removed.

        References
        ----------
        .. [1] J. Makhoul, "Linear prediction: a tutorial review", Proc. IEEE 63
           (1975) 561–580 (covariance method).
        """
        (k0, k1, k2), (p0, p1, p2) = self.support, self.p
        n, n2 = k0 * k1 * k2, k1 * k2
        windows = sliding_window_view(self.f.astype(np.float32), self.support)[::p0, ::p1, ::p2]
        nv0, nv1, nv2 = windows.shape[:3]
        base = min(p0, k0) * n2  # columns with m0 < p come first in C order
        slabs = max(1, GRAM_BLOCK_BYTES // (4 * n * nv1 * nv2))
        xtx = np.zeros((n, n))
        for z in range(0, nv0, slabs):
            block = np.ascontiguousarray(windows[z : z + slabs]).reshape(-1, n)
            xtx[:base] += np.ascontiguousarray(block[:, :base]).T @ block
        xtx[base:, :base] = xtx[:base, base:].T

        planes: dict[int, np.ndarray] = {}

        def plane(z: int) -> np.ndarray:
            if z not in planes:
                w2 = sliding_window_view(self.f[z], (k1, k2))[::p1, ::p2][:nv1, :nv2]
                planes[z] = np.ascontiguousarray(w2).reshape(-1, n2)
            return planes[z]

        def block_of(a: int, b: int) -> tuple[slice, slice]:
            return slice(a * n2, (a + 1) * n2), slice(b * n2, (b + 1) * n2)

        for a in range(min(p0, k0), k0):
            for b in range(a, k0):
                lo_a, lo_b = a - p0, b - p0
                hi_a, hi_b = p0 * nv0 + lo_a, p0 * nv0 + lo_b
                step = plane(hi_a).T @ plane(hi_b) - plane(lo_a).T @ plane(lo_b)
                xtx[block_of(a, b)] = xtx[block_of(lo_a, lo_b)] + step
                xtx[block_of(b, a)] = xtx[block_of(a, b)].T
        # flipping all three axes of a C-ordered kernel reverses its flat index;
        # float32 blocks leave an asymmetry of ~1e-7 relative: symmetrise
        xtx = xtx[::-1, ::-1]
        return 0.5 * (xtx + xtx.T)


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
        r"""``(A, b)`` with ``A h = b`` at the minimiser (see :class:`KernelProblem`).

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
        """GCV choice of the regulariser's multiplier (see :meth:`KernelProblem.gcv_weight`)."""
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


class KernelProblem:
    r"""The kernel-estimation objective, with the offset ``c`` profiled out.

    Parameters
    ----------
    f : ndarray
        High-resolution volume, shape at least ``p*(n-1)+1`` per axis.
    g : ndarray
        Low-resolution volume of shape ``n = ceil(f.shape / p)``.
    similarity : Similarity
        Data term ``D(u, g)``; its gradient in ``u`` drives everything.
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
    correlation, by FFT over the crop of ``f`` the valid voxels see) and the
    paper's :math:`\partial J_1/\partial c` with :math:`U(h * E) = \sum_k h_k` on
    valid voxels. For L2 (:math:`w = 2(u - g)/Z`) this is the paper's eq. after (2).

    **Offset.** The paper alternates between ``h`` and ``c``. Here the ``c``-step
    is carried to its limit: every evaluation at ``h`` first computes the best
    offset :math:`c^*(h) = \arg\min_c J(h, c)` — in closed form for a quadratic
    similarity, by a secant search on :math:`\partial J/\partial c` otherwise, both
    cheap because :math:`u` is affine in ``c`` without a new convolution — and
    returns the profiled objective :math:`\varphi(h) = J(h, c^*(h))`, whose
    gradient is :math:`\partial_h J(h, c^*(h))` (envelope theorem). Alternating
    minimisation converges to the minimiser of :math:`\varphi`; profiling reaches it
    without an outer loop. For a quadratic similarity, :math:`e = c \sum h` enters
    :math:`u` linearly, so :math:`\varphi` is quadratic in ``h`` and
    :meth:`normal_equations` gives the exact minimiser of :math:`J` over ``(h, c)``.

    **Normal equations.** With :math:`D(u) = \tfrac{\kappa}{2}\|u - \tilde g\|^2`
    (+ const), :math:`P_\perp` the projection removing the mean over valid voxels
    and :math:`H_R` the Hessian of the regulariser,

    .. math:: \big(\kappa X^\top P_\perp X + H_R\big) h
              = \kappa X^\top P_\perp \tilde g - \nabla R(0).

    The :math:`K^3 \times K^3` Gram matrix :math:`X^\top X` (729 or 2197 columns)
    is accumulated from blocks of the design matrix (rows: valid voxels, columns:
    the :math:`K^3` shifted, decimated copies of the mean-removed ``f``) in
    float32 BLAS products summed in float64, with a slice recurrence that
    avoids most of the products (:meth:`gram`).
    """

    def __init__(
        self,
        f: np.ndarray,
        g: np.ndarray,
        similarity: Similarity,
        regularizer: Regularizer,
        support: Support = 9,
        p: Factor = 2,
        *,
        fit_offset: bool | None = None,
        offset: float = 0.0,
    ):
        self.similarity = similarity
        self.regularizer = regularizer
        self.support = as_support(support)
        self.p = as_factor(p)
        self.fit_offset = similarity.scale_sensitive if fit_offset is None else bool(fit_offset)
        if not similarity.scale_sensitive:
            # the similarity cannot identify the gain: admissible kernels are
            # unit-sum and non-negative (solvers look for ``project``)
            self.project = project_simplex
        self.radius = tuple(k // 2 for k in self.support)
        self.lr_slices = valid_lr_slices(f.shape, self.support, self.p)
        lo = tuple(s.start for s in self.lr_slices)
        nv = tuple(s.stop - s.start for s in self.lr_slices)
        # HR positions p*i of the valid LR voxels span S voxels; their footprints M
        self.span = _per_axis((nv, self.p), lambda n, q: q * (n - 1) + 1)
        hr_crop = tuple(
            slice(q * a - r, q * a + s + r)
            for q, a, s, r in zip(self.p, lo, self.span, self.radius, strict=True)
        )
        crop = np.asarray(f[hr_crop], dtype=np.float64)
        # removing the mean keeps float32 Gram products accurate; c absorbs it
        self.f_mean = float(crop.mean())
        self.design = ValidDesign(crop - self.f_mean, self.support, self.p)
        self._f = self.design.f
        self.g = np.asarray(g[self.lr_slices], dtype=np.float64)
        self.n_valid = self.g.size
        self.fft_shape = self.design.fft_shape
        self._f_hat = self.design.f_hat
        self.offset = float(offset)
        self._cache: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._gram: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- the forward model and its adjoint on the valid voxels -----------------
    def _blur(self, h: np.ndarray) -> np.ndarray:
        """``X h``: ``U(h * (f - mean))`` on the valid voxels (no offset)."""
        return self.design.blur(h)

    def _correlate(self, w: np.ndarray) -> np.ndarray:
        """``X^T w``: the ``K^3`` lags of ``(f - mean) ⋆ U^T w`` (valid correlation)."""
        return self.design.correlate(w)

    def predict(self, h: np.ndarray, c: float | None = None) -> np.ndarray:
        """``U(h * (f + c))`` on the valid voxels (``c`` defaults to the best offset)."""
        base, t = self._profile(h)
        if c is not None:
            t = c + self.f_mean
        return base + t * float(np.sum(h))

    def start_scale(self, h: np.ndarray) -> float:
        """``std(g) / std(predict(h))`` on the valid voxels (1 when the prediction is flat)."""
        spread = float(np.std(self.predict(h)))
        return float(np.std(self.g)) / spread if spread > 0 else 1.0

    # -- the offset --------------------------------------------------------------
    def _profile(self, h: np.ndarray) -> tuple[np.ndarray, float]:
        """``X h`` and the best ``t = c + mean(f)`` for ``h`` (cached for the last two)."""
        for hc, base, t in self._cache:
            if hc.shape == h.shape and np.array_equal(hc, h):
                return base, t
        base = self._blur(h)
        t = self._best_t(base, float(np.sum(h)))
        self._cache = [(np.array(h, copy=True), base, t), *self._cache[:1]]
        return base, t

    def _best_t(self, base: np.ndarray, gain: float) -> float:
        t0 = self.offset + self.f_mean
        if not self.fit_offset or gain == 0.0:
            return t0
        sim, g = self.similarity, self.g

        def slope(t: float) -> float:  # dD/dt = gain * sum(dD/du), the paper's dJ/dc
            return gain * float(np.sum(sim.grad(base + t * gain, g)))

        if sim.quadratic:  # the slope is affine in t
            s0, s1 = slope(t0), slope(t0 + 1.0)
            return t0 - s0 / (s1 - s0) if s1 != s0 else t0
        span = float(np.std(g)) / abs(gain) or 1.0
        sol = scipy.optimize.root_scalar(
            slope, x0=t0, x1=t0 + 0.1 * span, method="secant", xtol=1e-12
        )
        if sol.converged and np.isfinite(sol.root):
            return float(sol.root)
        res = scipy.optimize.minimize_scalar(
            lambda t: sim(base + t * gain, g), bracket=(t0 - span, t0 + span)
        )
        return float(res.x)

    def fit_gain_offset(self, h: np.ndarray) -> tuple[float, float]:
        """Least-squares ``g ≈ a U(h * f) + b`` on the valid voxels: the gain ``a``
        and the offset ``c = b / a`` of the model ``U(a h * (f + c))``."""
        u = self.predict(h, 0.0)
        a, b = np.polyfit(u.ravel(), self.g.ravel(), 1)
        if a == 0:
            raise InputError("the prediction does not explain the low-resolution volume")
        return float(a), float(b / a)

    def best_offset(self, h: np.ndarray) -> float:
        """``c* = argmin_c J(h, c)`` (the fixed ``offset`` when it is not fitted)."""
        return self._profile(h)[1] - self.f_mean

    # -- objective ---------------------------------------------------------------
    def objective(self, h: np.ndarray, c: float) -> tuple[float, np.ndarray, float]:
        """``J(h, c)`` and its gradients with respect to ``h`` and ``c`` (no profiling)."""
        gain = float(np.sum(h))
        u = self._profile(h)[0] + (c + self.f_mean) * gain
        d, w = self.similarity.value_and_grad(u, self.g)
        w = np.asarray(w, dtype=np.float64)
        sw = float(np.sum(w))
        grad_h = self._correlate(w) + (c + self.f_mean) * sw + self.regularizer.grad(h)
        return float(d) + self.regularizer(h), grad_h, gain * sw

    def value_and_grad(self, h: np.ndarray) -> tuple[float, np.ndarray]:
        """Profiled objective ``J(h, c*(h))`` and its gradient in ``h``."""
        value, grad_h, _ = self.objective(h, self.best_offset(h))
        return value, grad_h

    def value(self, h: np.ndarray) -> float:
        """Profiled objective ``J(h, c*(h))``."""
        base, t = self._profile(h)
        return float(self.similarity(base + t * float(np.sum(h)), self.g)) + self.regularizer(h)

    # -- normal equations (quadratic similarities) ---------------------------------
    def _quadratic_form(self) -> tuple[float, np.ndarray]:
        """``kappa`` and ``g~`` with ``D(u) = kappa/2 ||u - g~||^2 + const``."""
        sim, g = self.similarity, self.g
        if not sim.quadratic:
            raise InputError(
                f"solver 'exact' needs a quadratic similarity; {sim.name!r} is not "
                "(use solver 'gradient-descent')"
            )
        g0 = np.asarray(sim.grad(np.zeros_like(g), g), dtype=np.float64)
        curvature = np.asarray(sim.grad(np.ones_like(g), g), dtype=np.float64) - g0
        kappa = float(curvature.flat[0])
        if kappa <= 0 or not np.allclose(curvature, kappa, rtol=1e-9, atol=0):
            raise InputError(f"similarity {sim.name!r} is not an isotropic quadratic")
        return kappa, -g0 / kappa

    def _regularizer_hessian(self) -> tuple[np.ndarray, np.ndarray]:
        """Hessian and gradient at 0 of the regulariser (column by column)."""
        return regularizer_hessian(self.regularizer, self.support)

    def gram(self, g_tilde: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""``X^T X``, ``X^T 1`` and ``X^T g~`` over the valid voxels (cached).

        Notes
        -----
        ``X^T X`` by :meth:`ValidDesign.gram` (float32 blocks and a slice
        recurrence); ``X^T 1`` and ``X^T g~`` are float64 FFT correlations.
        """
        if self._gram is not None:
            return self._gram
        gt = self.g if g_tilde is None else g_tilde
        xtx = self.design.gram()
        xt1 = self._correlate(np.ones_like(gt)).ravel()
        xtg = self._correlate(gt).ravel()
        self._gram = (xtx, xt1, xtg)
        return self._gram

    def quadratic_statistics(self) -> QuadraticStatistics:
        """The sums the normal equations and GCV need (see :class:`QuadraticStatistics`)."""
        kappa, g_tilde = self._quadratic_form()
        xtx, xt1, xtg = self.gram(g_tilde)
        return QuadraticStatistics(
            kappa=kappa,
            xtx=xtx,
            xt1=xt1,
            xtg=xtg,
            n_valid=int(self.n_valid),
            g_sum=float(np.sum(g_tilde)),
            g_perp=float(np.sum((g_tilde - g_tilde.mean()) ** 2)),
        )

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` of the profiled quadratic objective: its minimiser solves ``A h = b``.

        Without offset fitting, ``c`` is held at ``offset`` instead of profiled.
        """
        stats = self.quadratic_statistics()
        hess_r, grad_r0 = self._regularizer_hessian()
        return stats.normal_equations(hess_r, grad_r0, self.fit_offset, self.offset + self.f_mean)

    def gcv_weight(self) -> float:
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
        return self.quadratic_statistics().gcv_weight(self._regularizer_hessian()[0])


@dataclass
class KernelEstimate:
    """The estimated kernel and how it was obtained.

    Attributes
    ----------
    kernel : ndarray
        The kernel ``h`` (not normalised: its sum is the gain).
    offset : float
        Grey-level offset ``c`` of ``g = U(h * (f + c)) + n``.
    gain : float
        ``sum(h)``.
    alpha : float
        Regularisation weight used.
    iterations : int
        Solver iterations.
    history : list of dict
        One record per iteration (``objective``, ``offset``, ...).
    similarity, solver : str
        Names of the strategies used.
    converged : bool
        The solver met its stopping criterion.
    message : str
        The solver's last word.
    """

    kernel: np.ndarray
    offset: float
    gain: float
    alpha: float
    iterations: int
    history: list[dict[str, float]] = field(default_factory=list)
    similarity: str = "l2"
    solver: str = "exact"
    converged: bool = True
    message: str = ""

    def sidecar(self, voxel_size: float | Sequence[float]) -> dict[str, Any]:
        """JSON-ready description: :func:`~boneframe.kernel_summary.summarize_kernel`
        plus ``offset``, ``similarity``, ``solver``, ``alpha``, ``iterations``,
        ``converged`` and ``history``."""
        from boneframe.kernel_summary import summarize_kernel

        out = summarize_kernel(self.kernel, voxel_size)
        out.update(
            offset=self.offset,
            similarity=self.similarity,
            solver=self.solver,
            alpha=self.alpha,
            iterations=self.iterations,
            converged=self.converged,
            history=self.history,
        )
        return out


def _as_array(x: Any, what: str) -> np.ndarray:
    data = x.numpy() if hasattr(x, "numpy") and hasattr(x, "voxel_size") else x
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def check_pair(
    f: Any, g: Any, support: Support = 9, p: Factor = 2
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], tuple[int, int, int]]:
    """Validate a high/low-resolution pair for kernel estimation.

    The rule on shapes: high-resolution voxel ``p*i`` is low-resolution voxel
    ``i``, so ``g.shape == ceil(f.shape / p)`` per axis (``f`` may lack the last
    ``p - 1`` voxels of each row). There must be at least as many valid
    low-resolution voxels as kernel coefficients, and neither volume may be
    constant.

    Returns
    -------
    f, g : ndarray
    support, p : tuple of 3 ints
    """
    fa = _as_array(f, "the high-resolution volume")
    ga = _as_array(g, "the low-resolution volume")
    k = as_support(support)
    pp = as_factor(p)
    expected = decimated_shape(fa.shape, pp)
    if tuple(ga.shape) != expected:
        raise InputError(
            f"shapes do not match for p={pp}: high-resolution {fa.shape} needs a "
            f"low-resolution volume of {expected} (voxel p*i on voxel i), got {ga.shape}"
        )
    if any(kk > n for kk, n in zip(k, fa.shape, strict=True)):
        raise InputError(f"kernel support {k} is larger than the high-resolution volume {fa.shape}")
    try:
        sl = valid_lr_slices(fa.shape, k, pp)
    except InputError:
        raise InputError(
            f"kernel support {k} leaves no low-resolution voxel whose footprint lies "
            f"inside the high-resolution volume {fa.shape}"
        ) from None
    n_valid = int(np.prod([s.stop - s.start for s in sl]))
    if n_valid < int(np.prod(k)):
        raise InputError(
            f"only {n_valid} low-resolution voxels have their footprint inside the "
            f"high-resolution volume, fewer than the {int(np.prod(k))} kernel coefficients: "
            "use a smaller support or a larger volume"
        )
    if np.ptp(fa) == 0:
        raise InputError("the high-resolution volume is constant: it carries no kernel information")
    if np.ptp(ga[sl]) == 0:
        raise InputError("the low-resolution volume is constant: it carries no kernel information")
    return fa, ga, k, pp


def default_alpha(f: np.ndarray, g: np.ndarray, relative: float = DEFAULT_RELATIVE_ALPHA) -> float:
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
    (:meth:`KernelProblem.gcv_weight`).
    """
    vf, vg = float(np.var(f, dtype=np.float64)), float(np.var(g, dtype=np.float64))
    return relative * vf / vg


def estimate_kernel(
    f: Any,
    g: Any,
    *,
    similarity: str = "l2",
    regularizer: str = "gradient-l2",
    solver: str = "exact",
    support: Support = 9,
    alpha: float | None = None,
    p: Factor = 2,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    init: np.ndarray | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    callback: Callback | None = None,
    similarity_params: Mapping[str, Any] | None = None,
    solver_params: Mapping[str, Any] | None = None,
) -> KernelEstimate:
    r"""Estimate the blurring kernel ``h`` and offset ``c`` of ``g = U(h * (f + c)) + n``.

    Parameters
    ----------
    f : ndarray, dask array or Volume
        High-resolution volume (micro-CT), registered so that its voxel ``p*i``
        is voxel ``i`` of ``g``.
    g : ndarray, dask array or Volume
        Low-resolution volume, shape ``ceil(f.shape / p)``. When either volume
        is a dask array, the estimate is computed chunk by chunk
        (:func:`boneframe.chunked.kernel.estimate_kernel_chunked`: the same
        result, bounded memory, on the active dask scheduler).
    similarity, regularizer, solver : str
        Registered strategy names (``boneframe plugins`` lists them).
    support : int or 3 ints
        Odd kernel support per axis (paper: 5 to 13).
    alpha : float, optional
        Weight of the regulariser. Default: chosen by generalised
        cross-validation for a quadratic similarity
        (:meth:`KernelProblem.gcv_weight`); for a scale-free one (unit-sum
        kernels) the similarity's ``default_alpha`` or :func:`unit_alpha`
        (falling with the number of voxels, measured for ``mi``); else
        :func:`default_alpha`. All are invariant to the grey-level scale of ``f``
        and ``g``.
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
    similarity_params, solver_params : mapping, optional
        Further strategy parameters.

    Returns
    -------
    KernelEstimate

    Raises
    ------
    InputError
        Mismatched shapes, NaN/inf, even or too large a support, constant volumes.
    PluginError
        An unknown strategy name.

    Notes
    -----
    Minimises :math:`J(h, c) = D(U(h * (f + c)), g) + \alpha \|\nabla h\|^2` over
    the valid low-resolution voxels, with ``c`` profiled out (see
    :class:`KernelProblem`). ``solver="exact"`` solves the normal equations (quadratic
    similarities); ``"gradient-descent"`` works for any smooth similarity.

    References
    ----------
    .. [1] Paper (``seed/paper.txt``) §2.1–2.2, eqs. (1)–(2).

    Examples
    --------
    >>> from boneframe.phantom import simulate_pair
    >>> pair = simulate_pair(48, seed=0, offset=0.05)
    >>> est = estimate_kernel(pair.hr, pair.lr, support=9)
    >>> round(est.gain, 2), round(est.offset, 2)
    (1.0, 0.05)
    """
    if is_lazy(f) or is_lazy(g):
        from boneframe.chunked.kernel import estimate_kernel_chunked

        return estimate_kernel_chunked(
            f,
            g,
            similarity=similarity,
            regularizer=regularizer,
            solver=solver,
            support=support,
            alpha=alpha,
            p=p,
            init_sigma=init_sigma,
            init=init,
            max_iter=max_iter,
            tol=tol,
            callback=callback,
            similarity_params=similarity_params,
            solver_params=solver_params,
        )
    fa, ga, k, pp = check_pair(f, g, support, p)
    sim, slv, reg = build_strategies(
        similarity, regularizer, solver, alpha, max_iter, tol, similarity_params, solver_params
    )
    problem = KernelProblem(fa, ga, sim, reg, k, pp)  # type: ignore[arg-type]
    return solve_kernel_problem(
        problem,
        slv,
        similarity=similarity,
        regularizer=regularizer,
        solver=solver,
        alpha=alpha,
        init_sigma=init_sigma,
        init=init,
        callback=callback,
        fallback_alpha=lambda: default_alpha(fa, problem.g),
    )


def is_lazy(x: Any) -> bool:
    """``x`` is a dask array (or a Volume holding one): the chunked path applies."""
    data = getattr(x, "data", None) if hasattr(x, "voxel_size") else x
    return type(data).__module__.startswith("dask.")


def build_strategies(
    similarity: str,
    regularizer: str,
    solver: str,
    alpha: float | None,
    max_iter: int | None = None,
    tol: float | None = None,
    similarity_params: Mapping[str, Any] | None = None,
    solver_params: Mapping[str, Any] | None = None,
) -> tuple[Similarity, Any, Regularizer]:
    """The registered similarity, solver and regulariser of :func:`estimate_kernel`.

    Raises
    ------
    InputError
        A negative or non-finite ``alpha``.
    PluginError
        An unknown strategy name.
    """
    from boneframe.registry import get_registry

    registry = get_registry()
    sim = registry.create("similarity", similarity, dict(similarity_params or {}))
    solver_cls = registry.get("solver", solver)
    sp = dict(solver_params or {})
    fields = getattr(solver_cls.Params, "model_fields", {})
    for key, value in (("max_iter", max_iter), ("tol", tol)):
        if value is not None and key in fields:
            sp.setdefault(key, value)
    slv = solver_cls(sp)
    if alpha is not None and not (np.isfinite(alpha) and alpha >= 0):
        raise InputError(f"alpha must be a finite non-negative number, got {alpha}")
    reg = registry.create("regularizer", regularizer, weight=1.0 if alpha is None else alpha)
    return sim, slv, reg  # type: ignore[return-value]


def solve_kernel_problem(
    problem: Any,
    slv: Any,
    *,
    similarity: str,
    regularizer: str,
    solver: str,
    alpha: float | None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    init: np.ndarray | None = None,
    callback: Callback | None = None,
    fallback_alpha: Any = None,
) -> KernelEstimate:
    """Choose ``alpha``, start and run the solver on a built problem (see
    :func:`estimate_kernel`).

    ``problem`` is a :class:`KernelProblem` or anything with its methods
    (:class:`boneframe.chunked.kernel.ChunkedKernelProblem`); ``fallback_alpha()``
    gives the weight when it is neither given, chosen by GCV, nor the unit-sum
    default.
    """
    from boneframe.registry import get_registry

    registry = get_registry()
    sim = problem.similarity
    k = problem.support
    unit = not sim.scale_sensitive
    if alpha is None:
        if sim.quadratic and problem.fit_offset:
            alpha = problem.gcv_weight()
        elif unit:
            alpha = sim.default_alpha
            if alpha is None:
                alpha = unit_alpha(problem.n_valid)
        else:
            alpha = fallback_alpha()
        problem.regularizer = registry.create("regularizer", regularizer, weight=alpha)

    if init is None:
        h0 = gaussian_start(init_sigma, k)
        if not unit and solver != "exact":  # the exact solver takes only the shape
            h0 = h0 * problem.start_scale(h0)
    else:
        h0 = np.array(init, dtype=np.float64)
        if h0.shape != k or not np.all(np.isfinite(h0)):
            raise InputError(f"the starting kernel must be finite with shape {k}, got {h0.shape}")
    if unit:
        if solver == "exact":
            raise InputError(
                f"solver 'exact' needs a quadratic similarity; {similarity!r} is not "
                "(use solver 'gradient-descent')"
            )
        h0 = problem.project(h0)

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
    return KernelEstimate(
        kernel=h,
        offset=offset,
        gain=float(np.sum(h)),
        alpha=float(alpha),
        iterations=result.iterations,
        history=result.history,
        similarity=similarity,
        solver=solver,
        converged=result.converged,
        message=result.message,
    )
