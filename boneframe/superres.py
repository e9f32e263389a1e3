r"""TV super-resolution of an HR-pQCT volume with a known blurring kernel (paper §3.1).

Model: ``g = U(h * (f + c)) + n`` with ``U`` the decimation keeping voxels
``0, p, 2p, ...``, ``h`` the scanner's kernel (its sum, the gain, is part of
the model) and ``c`` the grey-level offset. :func:`super_resolve` estimates
``f`` by

.. math:: \min_f \; \frac{\mu}{2}\|U(h * f) - (g - c\,\textstyle\sum h)\|^2 + R(f)

with ADMM (:class:`boneframe.solvers.admm.ADMM`) and the exact Fourier f-step
of :class:`boneframe.fourier_solve.FourierNormalSolver`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
import scipy.ndimage

from boneframe.errors import InputError
from boneframe.fourier_solve import FourierNormalSolver
from boneframe.interfaces import Callback, Regularizer, Solver
from boneframe.operators import Factor, as_factor, check_kernel
from boneframe.registry import get_registry

#: The normalised grey scale: ``g`` is rescaled so that the 0.5-99.5 percentile
#: range of ``g/gain - c`` spans this many units (see :func:`super_resolve`).
GREY_RANGE = 300.0
#: Extra low-resolution voxels of padding beyond the kernel's reach (see
#: :func:`padding_width`).
PAD_MARGIN = 2

MetricFn = Callable[[np.ndarray], Mapping[str, float]]


@dataclass
class SuperResolution:
    """What :func:`super_resolve` returns.

    Attributes
    ----------
    volume : ndarray
        The estimate of ``f`` (float32, shape ``p * g.shape``) in the grey scale
        of the micro-CT: the offset ``c`` removed, the kernel's gain kept in the
        model, so that ``U(h * (volume + c)) ≈ g``.
    history : list of dict
        One record per iteration: the solver's (``data``, ``regularizer``,
        ``objective``, ``augmented_lagrangian``, ``relative_change``,
        ``primal_residual``, ``beta``, in the normalised grey scale of the solve) and the
        numbers of ``metric_fn`` when a reference was given.
    iterations : int
        Iterations run.
    converged : bool
        True when the stopping rule ``||f+ - f|| / ||f+|| <= tol`` was met.
    scale : float
        Normalised grey level per unit of ``f`` (``f = f_normalised / scale``).
    padding : tuple of int
        Low-resolution voxels of reflect padding added before each face (the
        padding after is at least as large).
    """

    volume: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    scale: float = 1.0
    padding: tuple[int, int, int] = (0, 0, 0)


def upsample_spline(
    g: np.ndarray, p: Factor = 2, gain: float = 1.0, offset: float = 0.0
) -> np.ndarray:
    r"""Cubic-spline upsampling of ``(g / gain - offset)`` onto the HR grid.

    HR voxel ``p*i`` lies on LR voxel ``i`` (the grid of ``U``), so HR voxel
    ``j`` is interpolated at LR coordinate ``j / p``. Unlike
    :func:`scipy.ndimage.zoom`, the grid is not stretched.

    Parameters
    ----------
    g : ndarray
        3D low-resolution volume.
    p : int or sequence of int
        Upsampling factor per axis.
    gain : float
        The kernel's sum :math:`\sum h`.
    offset : float
        The grey-level offset ``c`` of the model ``g = U(h * (f + c))``.

    Returns
    -------
    ndarray
        float32 array of shape ``p * g.shape``: the baseline super-resolution
        must beat, and ADMM's starting point.

    Notes
    -----
    Interpolation by cubic B-splines (order 3) with whole-sample mirror
    boundaries: the same values as :func:`scipy.ndimage.affine_transform`
    with the diagonal matrix ``1/p`` and ``mode="mirror"``, computed
    separably (16 times fewer operations).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.arange(8.0).reshape(2, 2, 2)
    >>> up = upsample_spline(g, p=2)
    >>> up.shape, round(float(up[2, 2, 2]), 4)  # HR voxel (2, 2, 2) is LR voxel (1, 1, 1)
    ((4, 4, 4), 7.0)
    """
    g = _as_volume(g, "g")
    p3 = as_factor(p)
    if gain == 0 or not math.isfinite(gain):
        raise InputError(f"the kernel gain must be finite and non-zero, got {gain}")
    src = g.astype(np.float64) / gain - offset
    for axis, q in enumerate(p3):
        if q > 1:  # interpolate along this axis only: B-spline prefilter, then evaluate
            coeffs = scipy.ndimage.spline_filter1d(src, order=3, axis=axis, mode="mirror")
            src = _spline_upsample_axis(coeffs, q, axis)
    return src.astype(np.float32)


def _spline_upsample_axis(c: np.ndarray, q: int, axis: int) -> np.ndarray:
    """Evaluate cubic B-spline coefficients ``c`` at ``i + r/q`` along ``axis``.

    Separable, so it costs 4 multiply-adds per output voxel and axis instead of
    the 64 taps of a 3D :func:`scipy.ndimage.affine_transform`.
    """
    n = c.shape[axis]
    widths = [(0, 0)] * c.ndim
    widths[axis] = (1, 2)
    padded = np.pad(c, widths, mode="reflect")  # the coefficients of mirrored data are mirrored
    out_shape = list(c.shape)
    out_shape[axis] = n * q
    out = np.empty(out_shape, dtype=c.dtype)
    for r in range(q):
        t = r / q
        weights = (
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        )
        acc = weights[0] * np.take(padded, range(0, n), axis=axis)
        for k in range(1, 4):
            acc += weights[k] * np.take(padded, range(k, k + n), axis=axis)
        target = [slice(None)] * c.ndim
        target[axis] = slice(r, None, q)
        out[tuple(target)] = acc
    return out


def padding_width(kernel_shape: tuple[int, ...], p: Factor = 2) -> tuple[int, int, int]:
    """Low-resolution padding per axis: the kernel's reach plus :data:`PAD_MARGIN`.

    The exact f-step treats the (padded) volume as periodic. Reflect padding of
    ``ceil((K//2) / p)`` LR voxels puts every HR voxel that blurs into the
    original LR voxels inside the padded domain; the margin keeps the
    wrap-around seam far enough for its influence through the TV coupling to
    die out before the original volume. (Measured on a 96³ phantom against the
    solution on the surrounding true data: beyond the kernel's reach, more
    padding changed the estimate 8 HR voxels inside the faces by less than
    1e-4 of the bone-marrow contrast; no padding at all doubled the error there.)
    """
    return tuple(
        -(-(int(k) // 2) // q) + PAD_MARGIN for k, q in zip(kernel_shape, as_factor(p), strict=True)
    )  # type: ignore[return-value]


class SuperResolutionProblem:
    r"""``min_f mu/2 ||U H f - g||² + R(f)`` on a periodic HR grid (an ADMM problem).

    Implements :class:`boneframe.solvers.admm.SplitProblem` with the periodic
    forward-difference gradient for ``D`` and the exact f-step of
    :class:`~boneframe.fourier_solve.FourierNormalSolver`.
    ``periodic_differences`` and :meth:`solve_split_adjoint` let ADMM run its
    compiled path (:mod:`boneframe.solvers.admm_kernels`).

    Parameters
    ----------
    g : ndarray
        LR volume (already offset-corrected, padded and scaled as wished).
    kernel : ndarray
        The blurring kernel ``h``.
    p : int or sequence of int
        Decimation factor.
    regularizer : Regularizer
        ``R(f) = phi(D f)``; ADMM uses its ``prox_split``.
    dtype : numpy dtype
        Working precision.
    workers : int
        FFT threads (``-1``: all cores).
    solver : str
        Registered solver accepting a ``SplitProblem`` (``"admm"``).
    solver_params : mapping, optional
        Further solver parameters (e.g. ``{"adapt_iter": 0}`` for the paper's
        plain ADMM); they override ``mu``, ``beta``, ``tol`` and ``max_iter``.
    """

    #: ``D`` is the periodic forward difference (ADMM's compiled path relies on it).
    periodic_differences: bool = True

    def __init__(
        self,
        g: np.ndarray,
        kernel: np.ndarray,
        p: Factor,
        regularizer: Regularizer,
        *,
        dtype: type = np.float32,
        workers: int = -1,
    ):
        self.p = as_factor(p)
        self.dtype = np.dtype(dtype)
        self.g = np.ascontiguousarray(g, dtype=self.dtype)
        self.kernel = check_kernel(kernel)
        self.regularizer = regularizer
        self.workers = workers
        self.shape = tuple(n * q for n, q in zip(self.g.shape, self.p, strict=True))
        self._solver: FourierNormalSolver | None = None
        self._rhs_data: np.ndarray | None = None
        self._g_spec: np.ndarray | None = None
        self._last: tuple[np.ndarray, float] | None = None
        #: set by :meth:`from_scan`: grey-level scale, LR padding, HR crop of the scan
        self.scale = 1.0
        self.padding: tuple[int, int, int] = (0, 0, 0)
        self.crop: tuple[slice, ...] = (slice(None),) * 3

    @classmethod
    def from_scan(
        cls,
        g: np.ndarray,
        kernel: np.ndarray,
        *,
        offset: float = 0.0,
        p: Factor = 2,
        regularizer: Regularizer,
        workers: int = -1,
        scale: float | None = None,
    ) -> SuperResolutionProblem:
        """The normalised, padded problem :func:`super_resolve` solves for a scan ``g``.

        ``g / gain - offset`` is scaled by ``scale = GREY_RANGE / range`` (or
        by the given ``scale``) and reflect-padded by :func:`padding_width`
        (then up to FFT-friendly sizes); the kernel is divided by its gain.
        :meth:`estimate` maps a solution back.
        """
        g = _as_volume(g, "g")
        h = check_kernel(np.asarray(kernel, dtype=np.float64))
        p3 = as_factor(p)
        gain = float(np.sum(h))
        corrected = g.astype(np.float64) / gain - offset
        if scale is None:
            scale = GREY_RANGE / _robust_range(corrected)
        else:
            scale = _check_scale(scale)
        pad = padding_width(h.shape, p3)
        padded = [_fast_len(n + 2 * m, q) for n, m, q in zip(g.shape, pad, p3, strict=True)]
        widths = [(m, L - n - m) for n, m, L in zip(g.shape, pad, padded, strict=True)]
        g_n = np.pad((corrected * scale).astype(np.float32), widths, mode="reflect")
        problem = cls(g_n, h / gain, p3, regularizer, workers=workers)
        problem.scale = scale
        problem.padding = pad
        problem.crop = tuple(
            slice(q * m, q * (m + n)) for q, m, n in zip(p3, pad, g.shape, strict=True)
        )
        return problem

    def initial_estimate(self) -> np.ndarray:
        """ADMM's starting point: :func:`upsample_spline` of the (normalised) ``g``."""
        return upsample_spline(self.g, self.p)

    def estimate(self, x: np.ndarray) -> np.ndarray:
        """A solution ``x`` cropped to the scan's HR grid, in its grey scale (float32)."""
        return (x[self.crop] / self.scale).astype(np.float32)

    def _fourier(self, mu: float, beta: float) -> FourierNormalSolver:
        s = self._solver
        if s is None:
            s = FourierNormalSolver(
                self.kernel,
                self.shape,
                self.p,
                mu=mu,
                beta=beta,
                dtype=self.dtype,
                workers=self.workers,
            )
            self._solver = s
            self._g_spec = s.lr_spectrum(self.g)
        elif s.mu != mu or s.beta != beta:
            if s.mu != mu:
                self._rhs_data = None
            s.set_weights(mu, beta)
        if self._rhs_data is None:
            self._rhs_data = s.data_rhs(self.g)
        return s

    def gradient(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Periodic forward differences ``D x``, shape ``(3, *x.shape)``."""
        if out is None:
            out = np.empty((3, *x.shape), dtype=np.result_type(x.dtype, np.float32))
        for a in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[a], hi[a] = slice(0, -1), slice(1, None)
            np.subtract(x[tuple(hi)], x[tuple(lo)], out=out[a][tuple(lo)])
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[a], last[a] = slice(0, 1), slice(-1, None)
            np.subtract(x[tuple(first)], x[tuple(last)], out=out[a][tuple(last)])
        return out

    def gradient_adjoint(self, v: np.ndarray) -> np.ndarray:
        """``D^T v`` for the periodic differences (minus the backward divergence)."""
        out = np.negative(v[0])
        out -= v[1]
        out -= v[2]
        for a in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[a], hi[a] = slice(0, -1), slice(1, None)
            out[tuple(hi)] += v[a][tuple(lo)]
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[a], last[a] = slice(0, 1), slice(-1, None)
            out[tuple(first)] += v[a][tuple(last)]
        return out

    def solve_split(self, w: np.ndarray, mu: float, beta: float) -> np.ndarray:
        r"""Exact f-step: :math:`(\mu H^TU^TUH + \beta D^TD) f = \mu H^TU^T g + \beta D^T w`."""
        return self.solve_split_adjoint(self.gradient_adjoint(w), mu, beta)

    def solve_split_adjoint(self, dtw: np.ndarray, mu: float, beta: float) -> np.ndarray:
        r"""The f-step of :meth:`solve_split` given :math:`D^T w` rather than ``w``.

        ADMM's compiled path (:mod:`boneframe.solvers.admm_kernels`) computes
        :math:`D^T w` itself, in one pass with the v-step.
        """
        s = self._fourier(mu, beta)
        rhs = s.forward(dtw)
        rhs *= beta
        rhs += self._rhs_data
        spec = s.solve_spectrum(rhs, overwrite=True)
        del rhs
        res = s.blurred_decimated(spec)
        res -= self._g_spec
        r2 = s.lr_norm2(res)
        x = s.inverse(spec)
        self._last = (x, r2)
        return x

    def residual_norm2(self, x: np.ndarray) -> float:
        """``||U H x - g||²`` (reused from the last f-step when ``x`` is its result)."""
        if self._last is not None and x is self._last[0]:
            return self._last[1]
        s = self._solver or FourierNormalSolver(
            self.kernel, self.shape, self.p, mu=1.0, beta=1.0, dtype=self.dtype
        )
        res = s.blurred_decimated(s.forward(np.asarray(x, dtype=self.dtype)))
        res -= s.lr_spectrum(self.g)
        return s.lr_norm2(res)


def _as_volume(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(getattr(a, "data", a))
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{what} must be real-valued, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    return arr


def _check_scale(scale: float) -> float:
    """A given normalisation ``scale``, checked: finite and positive."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"scale must be a positive number, got {scale!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"scale must be finite and positive, got {scale!r}")
    return value


def _robust_range(a: np.ndarray) -> float:
    lo, hi = np.percentile(a, [0.5, 99.5])
    span = float(hi - lo)
    if span > 0:
        return span
    return float(np.max(np.abs(a))) or 1.0


def _fast_len(n: int, q: int) -> int:
    """Smallest ``m >= n`` with ``q * m`` a fast FFT length."""
    m = n
    while scipy.fft.next_fast_len(q * m, real=True) != q * m:
        m += 1
    return m


def _default_metrics(reference: np.ndarray) -> MetricFn:
    """PSNR (paper's definition) and DICE of Otsu-binarised volumes against ``reference``."""
    from skimage.filters import threshold_otsu

    ref = reference.astype(np.float64)
    peak2 = float(ref.max() - ref.min()) ** 2
    ref_bin = ref > threshold_otsu(ref)

    def metrics(volume: np.ndarray) -> dict[str, float]:
        mse = float(np.mean((volume - ref) ** 2))
        binary = volume > threshold_otsu(volume)
        overlap = 2.0 * np.count_nonzero(binary & ref_bin)
        total = np.count_nonzero(binary) + np.count_nonzero(ref_bin)
        return {
            "psnr": -10.0 * math.log10(mse / peak2) if mse > 0 and peak2 > 0 else math.inf,
            "dice": overlap / total if total else 1.0,
        }

    return metrics


def super_resolve(
    g: np.ndarray,
    kernel: np.ndarray,
    *,
    offset: float = 0.0,
    p: Factor = 2,
    regularizer: str | Regularizer = "tv",
    mu: float = 10.0,
    beta: float = 7.0,
    tol: float = 1e-3,
    max_iter: int | None = None,
    reference: np.ndarray | None = None,
    metric_fn: MetricFn | None = None,
    callback: Callback | None = None,
    workers: int = -1,
    solver: str = "admm",
    solver_params: Mapping[str, Any] | None = None,
    scale: float | None = None,
) -> SuperResolution:
    r"""TV super-resolution by ADMM with the exact Fourier f-step (paper §3.1).

    Parameters
    ----------
    g : ndarray or Volume
        Low-resolution volume (e.g. HR-pQCT), shape ``n``.
    kernel : ndarray
        Blurring kernel ``h``: odd support, centre at ``K // 2``, any gain.
    offset : float
        Grey-level offset ``c`` of the model ``g = U(h * (f + c))``.
    p : int or sequence of int
        Resolution factor per axis (HR shape ``p * n``).
    regularizer : str or Regularizer
        Registered regulariser name (``"tv"``, ``"gradient-l2"``) or an instance;
        it must provide ``prox_split``.
    mu, beta : float
        The paper's data weight and augmented-Lagrangian penalty, meant for
        the normalised grey scale (see Notes).
    tol : float
        Stop when ``||f+ - f|| / ||f+|| <= tol``.
    max_iter : int or None
        Iteration cap (None: the solver's default).
    reference : ndarray or None
        Ground-truth HR volume, shape ``p * n``: enables per-iteration metrics.
    metric_fn : callable or None
        ``metric_fn(f_estimate) -> {name: value}``, called every iteration when
        ``reference`` is given; default: PSNR and Otsu DICE against it.
    callback : callable or None
        ``callback(iteration, f_estimate, record)``; returning True stops.
    workers : int
        FFT threads (``-1``: all cores).
    solver : str
        Registered solver accepting a ``SplitProblem`` (``"admm"``).
    solver_params : mapping, optional
        Further solver parameters (e.g. ``{"adapt_iter": 0}``); they override
        ``mu``, ``beta``, ``tol`` and ``max_iter``.
    scale : float or None
        Normalisation: normalised grey levels per unit of ``g / gain - offset``.
        None (default): ``GREY_RANGE`` over the 0.5–99.5 percentile range of
        ``g / gain - offset`` (see Notes). Give it to solve a part of a larger
        scan on the whole scan's grey scale, as
        :func:`boneframe.chunked.superres.super_resolve_blockwise` does.

    Returns
    -------
    SuperResolution

    Notes
    -----
    The solve works on a normalised copy: with :math:`\gamma = \sum h`,

    .. math::
        \tilde g = \frac{s}{\gamma}(g - c\gamma), \qquad \tilde h = h/\gamma,
        \qquad f = \tilde f / s,

    where ``s = GREY_RANGE / range`` and ``range`` is the 0.5–99.5 percentile
    spread of :math:`g/\gamma - c`. :math:`\tilde f` minimises
    :math:`\frac{\mu}{2}\|U(\tilde h * \tilde f) - \tilde g\|^2 + R(\tilde f)`,
    so the defaults behave the same whatever the grey scale and gain of the
    data. Solving the raw data (grey range ``r``) directly would give the
    same iterates with :math:`300\mu/r` and :math:`300\beta/r` (grey levels
    scaled by ``a`` act as :math:`\mu \to a\mu`, :math:`\beta \to a\beta`),
    so the paper's μ = 10, β = 7 are taken to belong to data whose bone–marrow
    range spans ``GREY_RANGE`` = 300 units. The paper does not state its grey
    scale; 300 was chosen by measurement (simulated bone, 1 % noise, Gaussian
    kernels of σ = 1–1.6 HR voxels, seven phantoms: the PSNR gain over
    :func:`upsample_spline` was within 0.3 dB of the best of 100, 300, 1000
    (and 3000 on three of them) in every case, while 100 or 1000 each lost
    1.3–1.5 dB on some phantom). The ratio β/μ is scale-free; ADMM adapts β from
    its starting value (see :class:`boneframe.solvers.admm.ADMM`).

    The volume is reflect-padded by :func:`padding_width` LR voxels (then to
    FFT-friendly sizes) because the exact f-step is periodic; the estimate is
    cropped back. ADMM starts from :func:`upsample_spline` of ``g``.

    References
    ----------
    .. [1] the paper, §3.1 (``seed/paper.txt``).
    .. [2] N. Zhao et al., "Fast single image super-resolution using a new
       analytical solution for ℓ2–ℓ2 problems", IEEE TIP 25(8), 2016.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> g = rng.random((8, 8, 8)).astype(np.float32)
    >>> h = np.full((3, 3, 3), 1 / 27)
    >>> sr = super_resolve(g, h, max_iter=5)
    >>> sr.volume.shape
    (16, 16, 16)
    """
    g_arr = _as_volume(g, "g")
    h = check_kernel(np.asarray(kernel, dtype=np.float64))
    p3 = as_factor(p)
    gain = float(np.sum(h))
    if not math.isfinite(offset):
        raise InputError(f"offset must be finite, got {offset}")
    if abs(gain) < 1e-12 * (float(np.sum(np.abs(h))) or 1.0):
        raise InputError("the kernel sums to zero: its gain must be non-zero")
    hr_shape = tuple(n * q for n, q in zip(g_arr.shape, p3, strict=True))
    ref = None
    if reference is not None:
        ref = _as_volume(reference, "reference")
        if ref.shape != hr_shape:
            raise InputError(f"reference should have shape {hr_shape}, got {ref.shape}")
    if isinstance(regularizer, str):
        reg = get_registry().create("regularizer", regularizer)
    else:
        reg = regularizer
    if not isinstance(reg, Regularizer):
        raise InputError(f"regularizer must be a name or a Regularizer, got {regularizer!r}")

    problem = SuperResolutionProblem.from_scan(
        g_arr, h, offset=offset, p=p3, regularizer=reg, workers=workers, scale=scale
    )
    estimate = problem.estimate

    if ref is not None and metric_fn is None:
        metric_fn = _default_metrics(ref)
    wrapped: Callback | None = None
    if (ref is not None and metric_fn is not None) or callback is not None:

        def wrapped(it: int, x: Any, record: dict[str, float]) -> bool | None:
            f_est = estimate(x)
            if ref is not None and metric_fn is not None:
                record.update({k: float(v) for k, v in metric_fn(f_est).items()})
            return callback(it, f_est, record) if callback is not None else None

    settings: dict[str, Any] = {"mu": mu, "beta": beta, "tol": tol}
    if max_iter is not None:
        settings["max_iter"] = max_iter
    settings.update(solver_params or {})
    algorithm = get_registry().create("solver", solver, settings)
    if not isinstance(algorithm, Solver):  # pragma: no cover - the registry checks kinds
        raise InputError(f"the registered {solver!r} is not a solver")
    result = algorithm.solve(problem, problem.initial_estimate(), wrapped)
    return SuperResolution(
        volume=estimate(result.x),
        history=result.history,
        iterations=result.iterations,
        converged=result.converged,
        scale=problem.scale,
        padding=problem.padding,
    )
