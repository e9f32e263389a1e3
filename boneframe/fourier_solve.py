r"""Exact Fourier-domain solve of the TV super-resolution f-step (Zhao et al. 2016).

On a periodic high-resolution (HR) grid of shape ``N = p * n`` (per axis), the
ADMM f-step of TV super-resolution solves the normal equations

.. math:: \big(\mu H^T U^T U H + \beta D^T D\big) x = b

with ``H`` a circular convolution, ``U`` the decimation that keeps indices
``0, p, 2p, ...`` and ``D`` the periodic forward-difference gradient. ``H`` and
``D^T D`` are diagonal in Fourier space; ``U^T U`` is not, but it only couples
the ``d = p0 p1 p2`` frequencies that alias onto one low-resolution (LR)
frequency, so the inverse is a rank-one correction per aliasing group and the
whole solve costs two FFTs and a few element-wise passes.

Spectra are stored as :func:`scipy.fft.rfftn` half spectra whenever the last
axis has ``p <= 2`` (the aliasing partner of a frequency beyond the stored half
is then the conjugate of a stored one); otherwise full :func:`scipy.fft.fftn`
spectra are used.

The solver is written once against the array API: its arrays live in the
namespace ``xp`` it is given (numpy by default, CuPy for ``device="cuda"``, see
:mod:`boneframe.device`). On numpy half spectra the ADMM f-step runs as one
compiled pass (:mod:`boneframe.fourier_kernels`); everywhere else the same
formula runs as array operations.

References
----------
.. [1] N. Zhao, Q. Wei, A. Basarab, N. Dobigeon, D. Kouamé and J.-Y. Tourneret,
   "Fast single image super-resolution using a new analytical solution for
   ℓ2–ℓ2 problems", IEEE Trans. Image Process. 25(8), 3683–3697, 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from boneframe.device import (
    dtype_of,
    fft_functions,
    is_numpy_namespace,
    namespace,
    to_device,
    to_numpy,
)
from boneframe.errors import InputError
from boneframe.operators import (
    Blur,
    Factor,
    ForwardModel,
    Gradient,
    LinearOperator,
    as_factor,
    check_kernel,
)


def _shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    t = tuple(int(s) for s in shape)
    if len(t) != 3 or min(t) < 1:
        raise InputError(f"expected a 3D shape, got {tuple(shape)}")
    return t


def circular_kernel(
    h: np.ndarray, shape: Sequence[int], dtype: DTypeLike = np.float64, *, xp: Any = None
) -> Any:
    """The kernel ``h`` placed on a periodic grid of ``shape``, its centre at index 0.

    Element ``k`` of ``h`` (support ``K``, centre ``K // 2``) goes to index
    ``(k - K//2) mod N`` so that a circular convolution with the result follows
    the convention of :class:`boneframe.operators.Blur` (``boundary="periodic"``):
    its spectrum is the eigenvalues of that operator. Made in the array namespace
    ``xp`` (default numpy).
    """
    h = check_kernel(h)
    shape = _shape3(shape)
    if any(k > n for k, n in zip(h.shape, shape, strict=True)):
        raise InputError(f"kernel support {h.shape} is larger than the periodic grid {shape}")
    xp = namespace(xp)
    out = xp.zeros(shape, dtype=dtype_of(xp, dtype))
    out[: h.shape[0], : h.shape[1], : h.shape[2]] = to_device(h, xp, dtype)
    return xp.roll(out, tuple(-(k // 2) for k in h.shape), axis=(0, 1, 2))


def circular_convolve(x: np.ndarray, h: np.ndarray, workers: int = -1) -> np.ndarray:
    """``H x`` on a periodic grid: ``Blur(h, x.shape, boundary="periodic").matvec(x)``.

    Kept for callers of the former helper; use :class:`boneframe.operators.Blur`.
    """
    dtype = np.result_type(x.dtype, np.float32)
    return Blur(h, x.shape, boundary="periodic", dtype=dtype, workers=workers).matvec(x)


def normal_operator(
    kernel: np.ndarray,
    shape: Sequence[int],
    p: Factor = 2,
    mu: float = 1.0,
    beta: float = 1.0,
    dtype: DTypeLike = np.float64,
) -> LinearOperator:
    r"""The operator :math:`\mu H^T U^T U H + \beta D^T D` (periodic), in the spatial domain.

    The matrix that :class:`FourierNormalSolver` inverts, composed from the
    operator family: ``H`` = :class:`~boneframe.operators.Blur` with
    ``boundary="periodic"``, ``U`` = :class:`~boneframe.operators.Decimate`,
    ``D`` = :class:`~boneframe.operators.Gradient` with ``boundary="periodic"``.
    Slow and literal; used to check the solver.
    """
    shape = _shape3(shape)
    data = ForwardModel(kernel, p, shape, boundary="periodic", dtype=dtype)
    grad = Gradient(shape, "periodic", dtype=dtype)
    return mu * (data.T @ data) + beta * (grad.T @ grad)


def laplacian_symbol(shape: Sequence[int], half: bool = False) -> np.ndarray:
    r"""Eigenvalues of the periodic :math:`D^T D` on a grid of ``shape``.

    .. math:: \Psi(k) = \sum_a 4 \sin^2(\pi k_a / N_a)

    laid out as :func:`scipy.fft.fftn` (``half=False``) or
    :func:`scipy.fft.rfftn` (``half=True``) spectra.
    """
    shape = _shape3(shape)
    out: np.ndarray = np.zeros((1, 1, 1))
    for axis, n in enumerate(shape):
        k = np.arange(n // 2 + 1 if (half and axis == 2) else n)
        s = 4.0 * np.sin(np.pi * k / n) ** 2
        out = out + s.reshape([-1 if a == axis else 1 for a in range(3)])
    return out


class FourierNormalSolver:
    r"""Exact solver of the super-resolution normal equations on a periodic grid.

    Parameters
    ----------
    kernel : ndarray
        3D blurring kernel, odd support, centre at ``K // 2``, non-zero sum.
    shape : sequence of int
        Shape of the periodic HR grid; a multiple of ``p`` on every axis.
    p : int or sequence of int
        Decimation factor per axis.
    mu, beta : float
        Weights of the data term and of :math:`D^T D`.
    dtype : numpy dtype
        ``float32`` (fast) or ``float64`` (accurate to round-off).
    workers : int
        Threads for :mod:`scipy.fft` (``-1``: all cores; numpy only).
    xp : array namespace, optional
        Where the spectra live: numpy (default), CuPy (see
        :func:`boneframe.device.array_namespace_for`) or any array-API namespace
        with the ``fft`` extension. The methods take and return arrays of it
        (:meth:`data_rhs` and :meth:`solve` also take numpy arrays).

    Notes
    -----
    Write :math:`\Lambda = \mathcal F h` (the circular kernel),
    :math:`\Psi = \beta\,|\mathcal F D|^2` and :math:`R = \mathcal F b`. In
    Fourier space :math:`U^T U` is :math:`\frac1d J J^T`, where :math:`J^T`
    (``fold``) sums the ``d`` LR-sized tiles of an HR spectrum and :math:`J`
    (``tile``) repeats an LR spectrum ``d`` times. The Woodbury identity gives

    .. math::
        X = \frac{R}{\Psi} - \frac{\bar\Lambda}{\Psi}\,
            J\!\left[\frac{J^T(\Lambda R / \Psi)}{J^T(|\Lambda|^2/\Psi) + d/\mu}\right],
        \qquad x = \mathcal F^{-1} X.

    :math:`\Psi` vanishes at the zero frequency only; the aliasing group of the
    zero frequency (``d`` unknowns) is solved directly as the small system
    :math:`(\operatorname{diag}\Psi + \frac{\mu}{d}\bar\Lambda\Lambda^T) X = R`,
    so no regularising epsilon is needed and the solve is exact.
    Everything except :math:`R` is precomputed.

    The ADMM f-step (:meth:`solve_split_spectrum`, right-hand side
    :math:`sR + \mu\bar\Lambda J G`) is the same formula with the data term
    folded in: :math:`c = (dG - sT)/(J^T(|\Lambda|^2/\Psi) + d/\mu)` with
    :math:`T = J^T(\Lambda R/\Psi)`, :math:`X = (sR + \bar\Lambda J c)/\Psi`
    (see :mod:`boneframe.fourier_kernels`); :meth:`solve_spectrum` is its case
    :math:`s = 1`, :math:`G = 0`.

    References
    ----------
    .. [1] N. Zhao et al., IEEE Trans. Image Process. 25(8), 3683–3697, 2016.
    """

    def __init__(
        self,
        kernel: np.ndarray,
        shape: Sequence[int],
        p: Factor = 2,
        *,
        mu: float,
        beta: float,
        dtype: DTypeLike = np.float32,
        workers: int = -1,
        xp: Any = None,
    ):
        self.shape = _shape3(shape)
        self.p = as_factor(p)
        if any(n % q for n, q in zip(self.shape, self.p, strict=True)):
            raise InputError(f"grid {self.shape} is not a multiple of the factor {self.p}")
        self.lr_shape = tuple(n // q for n, q in zip(self.shape, self.p, strict=True))
        self.d = int(np.prod(self.p))
        self.dtype = np.dtype(dtype)
        self.cdtype = np.result_type(self.dtype, np.complex64)
        self.workers = workers
        #: the array namespace of the spectra (array_api_compat's numpy by default)
        self.xp = xp = namespace(xp)
        self._numpy = is_numpy_namespace(xp)
        self._fft = fft_functions(xp, workers)
        self._rt, self._ct = dtype_of(xp, self.dtype), dtype_of(xp, self.cdtype)
        #: rfftn half spectra (last axis p <= 2) or full fftn spectra
        self.half = self.p[2] <= 2
        n0, n1, n2 = self.lr_shape
        self._rev = (xp.asarray((-np.arange(n0)) % n0), xp.asarray((-np.arange(n1)) % n1))
        h = check_kernel(kernel)
        if abs(float(np.sum(h))) < 1e-12 * float(np.sum(np.abs(h)) or 1.0):
            raise InputError("the kernel sums to zero: super-resolution cannot recover the mean")
        self.kernel = h
        lam = self.forward(circular_kernel(h, self.shape, np.float64, xp=xp))
        self._lam = xp.astype(lam, self._ct)
        # |F D|² per axis (Psi / beta is their sum over the axes), numpy float64
        self._axis_symbols = tuple(
            4.0 * np.sin(np.pi * np.arange(m) / n) ** 2
            for n, m in zip(self.shape, lam.shape, strict=True)
        )
        del lam
        #: the zero-frequency aliasing group, where psi = 0 (a direct d x d solve): the
        #: spectrum's entries at multiples of the LR shape, a p0 x p1 x p2 box
        self._dc = tuple(slice(0, None, n) for n in self.lr_shape)
        self._lam_dc = self._group(self._lam)
        # J^T(|Lambda|² / |F D|²) (0 at the zero frequency): J^T(|Lambda|²/Psi) is it / beta
        lam2 = xp.real(self._lam) ** 2
        lam2 += xp.imag(self._lam) ** 2
        symbol = self._symbol(self.dtype)
        symbol[0, 0, 0] = 1.0  # |F D|² > 0 elsewhere
        lam2 /= symbol
        lam2[0, 0, 0] = 0.0
        self._fold_lam2 = xp.astype(self.fold(lam2), xp.float64)
        del lam2, symbol
        # Parseval weights of an LR-layout spectrum (see lr_spectrum)
        self._lr_half = self.half and self.p[2] == 1
        w = np.ones(n2 // 2 + 1 if self._lr_half else n2)
        if self._lr_half:
            w[1 : (n2 + 1) // 2] = 2.0
        self._lr_weights = to_device(w, xp, self.dtype)
        self._work: tuple[np.ndarray, np.ndarray] | None = None
        self.set_weights(mu, beta)

    @property
    def forward_model(self) -> ForwardModel:
        """``U H`` in the spatial domain: what :meth:`blurred_decimated` computes in Fourier."""
        return ForwardModel(self.kernel, self.p, self.shape, boundary="periodic", dtype=self.dtype)

    def operator(self) -> LinearOperator:
        r"""The matrix :math:`\mu H^T U^T U H + \beta D^T D` that :meth:`solve` inverts
        (spatial domain, see :func:`normal_operator`)."""
        return normal_operator(self.kernel, self.shape, self.p, self.mu, self.beta, self.dtype)

    def set_weights(self, mu: float, beta: float) -> None:
        """Change ``mu`` and ``beta``, recomputing only what depends on them (no FFT, no
        HR-sized pass: those of :meth:`solve_spectrum` are made on its first use)."""
        if not (mu > 0 and beta > 0):
            raise InputError(f"mu and beta must be positive, got mu={mu}, beta={beta}")
        self.mu, self.beta = float(mu), float(beta)
        den = self._fold_lam2 / self.beta + self.d / self.mu
        self._inv_den = self.xp.astype(1.0 / den, self._rt)
        # per-axis beta |F D|² in the working precision (Psi is their sum)
        self._sym_beta = tuple((self.beta * a).astype(self.dtype) for a in self._axis_symbols)
        s0, s1, s2 = (a[i] for a, i in zip(self._axis_symbols, self._dc, strict=True))
        psi_dc = self.beta * (s0[:, None, None] + s1[None, :, None] + s2[None, None, :]).ravel()
        lam_dc = self._lam_dc.astype(np.complex128)
        m0 = np.diag(psi_dc) + (self.mu / self.d) * np.outer(np.conj(lam_dc), lam_dc)
        #: inverse of the zero-frequency group's d x d system (numpy: applied on the host)
        self._m0_inv = np.linalg.inv(m0).astype(self.cdtype)
        self._hr_arrays: tuple[Any, Any] | None = None

    def _symbol(self, dtype: DTypeLike = np.float64) -> Any:
        """``|F D|²`` on the spectrum's grid."""
        return self._axis_sum(*(a.astype(dtype) for a in self._axis_symbols))

    def _axis_sum(self, a0: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> Any:
        """``a0[k0] + a1[k1] + a2[k2]`` on the spectrum's grid (namespace ``xp``)."""
        xp = self.xp
        return (
            xp.reshape(xp.asarray(a0), (-1, 1, 1))
            + xp.reshape(xp.asarray(a1), (1, -1, 1))
            + xp.reshape(xp.asarray(a2), (1, 1, -1))
        )

    def psi(self) -> Any:
        """``Psi = beta |F D|²`` on the spectrum's grid (a new HR-sized array), summed
        from the per-axis symbols in the working precision as the compiled pass does."""
        return self._axis_sum(*self._sym_beta)

    def _psi_arrays(self) -> tuple[Any, Any]:
        """``1 / Psi`` (0 at the zero frequency) and ``conj(Lambda) / Psi``, HR-sized.

        Psi is summed from the per-axis ``beta |F D|²`` in the working precision,
        as the compiled pass does."""
        if self._hr_arrays is None:
            psi = self.psi()
            psi[0, 0, 0] = 1.0  # Psi > 0 elsewhere
            inv_psi = 1.0 / psi
            inv_psi[0, 0, 0] = 0.0
            del psi
            self._hr_arrays = (inv_psi, self.xp.conj(self._lam) * inv_psi)
        return self._hr_arrays

    def _group(self, spec: Any) -> np.ndarray:
        """The zero-frequency group of a spectrum: a numpy copy, flat (C order of the box)."""
        return np.array(to_numpy(spec[self._dc]), copy=True).reshape(-1)

    def _set_group(self, spec: Any, values: np.ndarray) -> None:
        """Write the zero-frequency group of ``spec`` from ``d`` host values."""
        box = np.ascontiguousarray(np.reshape(values, self.p), dtype=self.cdtype)
        spec[self._dc] = to_device(box, self.xp)

    def _asarray(self, x: Any) -> Any:
        """A real array (numpy or the solver's namespace) in the solver's namespace and
        precision."""
        return to_device(x, self.xp, self.dtype)

    # -- transforms ------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        """Spectrum of an HR-grid array in this solver's layout."""
        if self.half:
            return self._fft.rfftn(x)
        return self._fft.fftn(x)

    def inverse(self, spec: Any, overwrite: bool = False) -> Any:
        """Real HR-grid array of a spectrum in this solver's layout.

        With ``overwrite=True`` the memory of ``spec`` may be reused. On numpy the
        transform along the first two axes is then done in place, followed by the
        complex-to-real one along the last axis (``scipy.fft.irfftn`` would
        allocate an HR-sized complex temporary for that step, 30 % of its time
        at 216³).
        """
        xp, fft = self.xp, self._fft
        if self.half:
            if (
                self._numpy
                and overwrite
                and spec.flags.c_contiguous
                and spec.dtype == self.cdtype
            ):
                fft.ifftn(spec, axes=(0, 1), overwrite=True)
                out = fft.irfft(spec, n=self.shape[2], axis=2)
            else:
                out = fft.irfftn(spec, s=self.shape, axes=(0, 1, 2))
        else:
            out = xp.real(fft.ifftn(spec, overwrite=overwrite))
        if self._numpy:
            return np.ascontiguousarray(out, dtype=self.dtype)  # .real is a strided view
        return xp.astype(out, self._rt, copy=False)

    def lr_spectrum(self, y: Any) -> Any:
        """Spectrum of an LR-grid array in the layout that :meth:`fold` returns.

        That is an rfftn half spectrum when the last axis is a half axis with
        ``p = 1``, a full fftn spectrum otherwise.
        """
        if self._lr_half:
            return self._fft.rfftn(y)
        return self._fft.fftn(y)

    def lr_inverse(self, spec: Any) -> Any:
        """Real LR-grid array of a spectrum in the layout of :meth:`lr_spectrum`."""
        if self._lr_half:
            out = self._fft.irfftn(spec, s=self.lr_shape, axes=(0, 1, 2))
        else:
            out = self.xp.real(self._fft.ifftn(spec))
        return self.xp.astype(out, self._rt, copy=False)

    def lr_norm2(self, spec: Any) -> float:
        """``||y||²`` of an LR array from its :meth:`lr_spectrum` (Parseval)."""
        return self._parseval(spec) / float(np.prod(self.lr_shape))

    def _parseval(self, spec: Any) -> float:
        """``sum w |spec|²`` over an LR-layout spectrum, accumulated in float64."""
        xp = self.xp
        a = xp.abs(spec) ** 2 * self._lr_weights
        return float(xp.sum(a, dtype=xp.float64))

    # -- aliasing --------------------------------------------------------------
    def fold(self, spec: Any) -> Any:
        """``J^T``: sum of the ``d`` aliased tiles of an HR spectrum (LR layout).

        In a half spectrum with ``p = 2`` on the last axis, the partner of the
        stored frequency ``(k0, k1, q)`` at ``q + n2`` is the conjugate of the
        stored ``(-k0, -k1, n2 - q)`` (the spectrum of a real array is Hermitian).
        """
        xp = self.xp
        p0, p1, p2 = self.p
        n0, n1, n2 = self.lr_shape
        last = [slice(j * n2, (j + 1) * n2) for j in range(p2)] if not self.half else [slice(None)]
        tiles = [
            spec[j0 * n0 : (j0 + 1) * n0, j1 * n1 : (j1 + 1) * n1, s2]
            for j0 in range(p0)
            for j1 in range(p1)
            for s2 in last
        ]
        t = xp.asarray(tiles[0], copy=True)
        for tile in tiles[1:]:
            t += tile
        if not self.half or p2 == 1:
            return t
        rev0, rev1 = self._rev
        partner = xp.take(xp.take(t, rev0, axis=0), rev1, axis=1)[:, :, n2:0:-1]
        t = t[:, :, :n2]
        t += xp.conj(partner)
        return t

    def tile_multiply(self, spec: Any, lr: Any) -> Any:
        """``spec * J lr``: an HR spectrum times the LR spectrum ``lr`` repeated ``d`` times."""
        xp = self.xp
        p0, p1, p2 = self.p
        n0, n1, n2 = self.lr_shape
        if not self.half:
            view: tuple[int, ...] = (p0, n0, p1, n1, p2, n2)
            tiled = xp.reshape(lr, (1, n0, 1, n1, 1, n2))
        else:
            if p2 == 2:  # stored last-axis index n2 aliases onto LR index 0
                lr = xp.concat([lr, lr[:, :, :1]], axis=2)
            view = (p0, n0, p1, n1, spec.shape[2])
            tiled = xp.reshape(lr, (1, n0, 1, n1, spec.shape[2]))
        return xp.reshape(xp.reshape(spec, view) * tiled, spec.shape)

    # -- solve -----------------------------------------------------------------
    def data_rhs(self, g: Any) -> Any:
        r"""Spectrum of :math:`\mu H^T U^T g` for an LR array ``g`` (of shape ``n``)."""
        if tuple(g.shape) != self.lr_shape:
            raise InputError(f"LR array should have shape {self.lr_shape}, got {tuple(g.shape)}")
        # F(U^T g) is the LR spectrum of g repeated over the d aliased tiles
        return self.data_rhs_spectrum(self.lr_spectrum(self._asarray(g)))

    def data_rhs_spectrum(self, g_spec: Any) -> Any:
        r"""Spectrum of :math:`\mu H^T U^T g` from the :meth:`lr_spectrum` of ``g``."""
        out = self.tile_multiply(self.xp.conj(self._lam), g_spec)
        out *= self.mu
        return out

    def _woodbury(self, spec: Any, scale: float, g_spec: Any = None) -> Any:
        r"""The solve for :math:`s R + \mu \bar\Lambda J G` in place, outside the
        zero-frequency group: ``spec`` (:math:`R`) becomes :math:`X`; returns the LR
        spectrum :math:`c = (dG - sT) / (J^T(|\Lambda|^2/\Psi) + d/\mu)` (``G = 0``
        when ``g_spec`` is None), whose :math:`-c/\mu` is that of :math:`UHx - g`."""
        inv_psi, conj_lam_inv_psi = self._psi_arrays()
        spec *= inv_psi  # R / Psi
        c = self.fold(self._lam * spec)  # T = J^T(Lambda R / Psi)
        c *= -scale
        if g_spec is not None:
            c += self.d * g_spec
        c *= self._inv_den
        if scale != 1.0:
            spec *= scale
        spec += self.tile_multiply(conj_lam_inv_psi, c)  # (s R + conj(Lambda) J c) / Psi
        return c

    def solve_spectrum(self, rhs: Any, overwrite: bool = False) -> Any:
        """Spectrum ``X`` of the solution for the spectrum ``rhs`` of the right-hand side.

        With ``overwrite=True`` the memory of ``rhs`` is reused.
        """
        rhs_dc = self._group(rhs)
        x = rhs if overwrite else self.xp.asarray(rhs, copy=True)
        self._woodbury(x, 1.0)
        self._set_group(x, self._m0_inv @ rhs_dc)
        return x

    def solve(self, b: Any) -> Any:
        r"""Solve :math:`(\mu H^T U^T U H + \beta D^T D) x = b` for an HR-grid ``b``."""
        if tuple(b.shape) != self.shape:
            raise InputError(f"right-hand side should have shape {self.shape}, got {b.shape}")
        spec = self.forward(self._asarray(b))
        return self.inverse(self.solve_spectrum(spec, overwrite=True), overwrite=True)

    def blurred_decimated(self, spec: Any) -> Any:
        """LR-layout spectrum of ``U H x`` from the spectrum of ``x`` (``J^T(Λ X) / d``)."""
        out = self.fold(self._lam * spec)
        out /= self.d
        return out

    def solve_split_spectrum(self, spec: Any, g_spec: Any, scale: float = 1.0) -> float:
        r"""The f-step of ADMM in place: ``spec`` (the spectrum :math:`R` of an HR array
        ``b``) becomes the spectrum of the solution of

        .. math:: (\mu H^T U^T U H + \beta D^T D)\, x = s\, b + \mu H^T U^T g,

        with ``s = scale`` and ``g_spec`` the :meth:`lr_spectrum` of ``g``;
        returns :math:`\|U H x - g\|^2`.

        The same solution as :meth:`solve_spectrum` of ``s R + data_rhs(g)``, with
        the data term's spectrum folded on the fly and the residual's norm by
        Parseval from the LR quantities of the solve itself
        (:math:`\mathcal F(UHx - g) = -c/\mu`, see
        :mod:`boneframe.fourier_kernels`): two FFTs and, for numpy half spectra,
        one compiled pass over the spectrum (no HR-sized temporaries); other
        layouts and namespaces run the same formula as array operations
        (:meth:`_woodbury`).
        """
        xp = self.xp
        if tuple(spec.shape) != tuple(self._lam.shape) or spec.dtype != self._ct:
            raise InputError(
                f"spectrum should be {self.cdtype} of shape {tuple(self._lam.shape)}, "
                f"got {spec.dtype} {tuple(spec.shape)}"
            )
        g_spec = xp.astype(xp.asarray(g_spec), self._ct, copy=False)
        n_lr = float(np.prod(self.lr_shape))
        mu, d = self.mu, self.d
        g0 = complex(to_numpy(g_spec[0, 0, 0]))
        # the zero-frequency group's right-hand side, before spec is overwritten
        rhs_dc = scale * self._group(spec) + mu * np.conj(self._lam_dc) * g0
        paired = self.half and self.p[2] == 2
        if self._numpy and self.half and spec.flags.c_contiguous:
            acc = self._split_compiled(spec, g_spec, scale, paired)
        else:
            c = self._woodbury(spec, scale, g_spec)
            c[0, 0, 0] = 0.0  # the zero LR frequency: from the direct solve below
            acc = self._parseval(c)
        x_dc = (self._m0_inv @ rhs_dc.astype(self._m0_inv.dtype)).astype(self.cdtype)
        self._set_group(spec, x_dc)
        # the zero LR frequency, where the group's solve was the direct one
        ux = np.reshape(self._lam_dc * x_dc, self.p)
        if paired:
            u0 = np.sum(ux[..., 0]) + np.conj(np.sum(ux[..., 1]))
        else:
            u0 = np.sum(ux)
        r0 = complex(u0) / d - g0
        total = acc / mu**2 + abs(r0) ** 2
        return total / n_lr

    def _split_compiled(self, spec: np.ndarray, g_spec: np.ndarray, scale: float,
                        paired: bool) -> float:  # fmt: skip
        """:func:`boneframe.fourier_kernels._split_solve` over the whole (numpy, half,
        C-contiguous) spectrum; returns ``sum w |c|²`` outside the zero frequency."""
        from boneframe import fourier_kernels as kern
        from boneframe.parallel import run_chunks

        n0 = self.lr_shape[0]
        t, c = self._lr_work()
        r2 = np.zeros(n0)
        s0, s1, s2 = self._sym_beta
        s_, d_ = np.asarray([scale, self.d], dtype=self.dtype)  # scalars of the arrays' precision
        spec_r, lam_r = spec.view(self.dtype), self._lam.view(self.dtype)
        run_chunks(
            kern._split_solve, n0 // 2 + 1 if paired else n0, spec_r, lam_r, s0, s1, s2, g_spec,
            self._inv_den, self._lr_weights, s_, d_, paired, t, c, r2,
        )  # fmt: skip
        return float(np.sum(r2))

    def _lr_work(self) -> tuple[np.ndarray, np.ndarray]:
        """Two LR-sized complex buffers (with the HR half spectrum's last axis), kept."""
        work = self._work
        if work is None:
            shape = (*self.lr_shape[:2], self._lam.shape[2])
            work = (np.empty(shape, self.cdtype), np.empty(shape, self.cdtype))
            self._work = work
        return work
