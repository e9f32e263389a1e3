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

References
----------
.. [1] N. Zhao, Q. Wei, A. Basarab, N. Dobigeon, D. Kouamé and J.-Y. Tourneret,
   "Fast single image super-resolution using a new analytical solution for
   ℓ2–ℓ2 problems", IEEE Trans. Image Process. 25(8), 3683–3697, 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from numpy.typing import DTypeLike

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
    h: np.ndarray, shape: Sequence[int], dtype: DTypeLike = np.float64
) -> np.ndarray:
    """The kernel ``h`` placed on a periodic grid of ``shape``, its centre at index 0.

    Element ``k`` of ``h`` (support ``K``, centre ``K // 2``) goes to index
    ``(k - K//2) mod N`` so that a circular convolution with the result follows
    the convention of :class:`boneframe.operators.Blur` (``boundary="periodic"``):
    its spectrum is the eigenvalues of that operator.
    """
    h = check_kernel(h)
    shape = _shape3(shape)
    if any(k > n for k, n in zip(h.shape, shape, strict=True)):
        raise InputError(f"kernel support {h.shape} is larger than the periodic grid {shape}")
    out = np.zeros(shape, dtype=dtype)
    out[: h.shape[0], : h.shape[1], : h.shape[2]] = h
    return np.roll(out, tuple(-(k // 2) for k in h.shape), axis=(0, 1, 2))


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
        Threads for :mod:`scipy.fft` (``-1``: all cores).

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
        #: rfftn half spectra (last axis p <= 2) or full fftn spectra
        self.half = self.p[2] <= 2
        n0, n1, n2 = self.lr_shape
        self._rev0 = (-np.arange(n0)) % n0
        self._rev1 = (-np.arange(n1)) % n1
        h = check_kernel(kernel)
        if abs(float(np.sum(h))) < 1e-12 * float(np.sum(np.abs(h)) or 1.0):
            raise InputError("the kernel sums to zero: super-resolution cannot recover the mean")
        self.kernel = h
        lam = self.forward(circular_kernel(h, self.shape, np.float64))
        self._lam = lam.astype(self.cdtype)
        # |F D|² per axis (Psi / beta is their sum over the axes)
        self._axis_symbols = tuple(
            4.0 * np.sin(np.pi * np.arange(m) / n) ** 2
            for n, m in zip(self.shape, lam.shape, strict=True)
        )
        # the zero-frequency aliasing group, where psi = 0: a direct d x d solve
        self._dc = tuple(
            np.asarray(v).ravel()
            for v in np.meshgrid(
                np.arange(self.p[0]) * n0,
                np.arange(self.p[1]) * n1,
                np.arange(self.p[2]) * n2,
                indexing="ij",
            )
        )
        # J^T(|Lambda|² / |F D|²) (0 at the zero frequency): J^T(|Lambda|²/Psi) is it / beta
        lam2 = np.square(self._lam.real)
        lam2 += np.square(self._lam.imag)
        symbol = self._symbol(self.dtype)
        np.divide(lam2, symbol, out=lam2, where=symbol > 0)
        lam2[0, 0, 0] = 0.0
        self._fold_lam2 = self.fold(lam2).real.astype(np.float64)
        del lam2, symbol
        # Parseval weights of an LR-layout spectrum (see lr_spectrum)
        self._lr_half = self.half and self.p[2] == 1
        w = np.ones(n2 // 2 + 1 if self._lr_half else n2)
        if self._lr_half:
            w[1 : (n2 + 1) // 2] = 2.0
        self._lr_weights = w.astype(self.dtype)
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
        self._inv_den = (1.0 / den).astype(self.dtype)
        self._sym_beta = tuple((self.beta * a).astype(self.dtype) for a in self._axis_symbols)
        lam_dc = self._lam[self._dc].astype(np.complex128)
        psi_dc = self.beta * sum(a[i] for a, i in zip(self._axis_symbols, self._dc, strict=True))
        m0 = np.diag(psi_dc) + (self.mu / self.d) * np.outer(np.conj(lam_dc), lam_dc)
        self._m0_inv = np.linalg.inv(m0).astype(self.cdtype)
        self._hr_arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _symbol(self, dtype: DTypeLike = np.float64) -> np.ndarray:
        """``|F D|²`` on the spectrum's grid."""
        a0, a1, a2 = (a.astype(dtype) for a in self._axis_symbols)
        return a0[:, None, None] + a1[None, :, None] + a2[None, None, :]

    def _psi_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``1 / Psi`` (0 at the zero frequency) and ``conj(Lambda) / Psi``, HR-sized."""
        if self._hr_arrays is None:
            psi = (self.beta * self._symbol()).astype(self.dtype)
            inv_psi = np.zeros_like(psi)
            np.divide(1.0, psi, out=inv_psi, where=psi > 0)
            self._hr_arrays = (inv_psi, np.conj(self._lam) * inv_psi)
        return self._hr_arrays

    # -- transforms ------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Spectrum of an HR-grid array in this solver's layout."""
        if self.half:
            return scipy.fft.rfftn(x, workers=self.workers)
        return scipy.fft.fftn(x, workers=self.workers)

    def inverse(self, spec: np.ndarray, overwrite: bool = False) -> np.ndarray:
        """Real HR-grid array of a spectrum in this solver's layout.

        With ``overwrite=True`` the memory of ``spec`` is reused: the transform
        along the first two axes is then done in place, followed by the
        complex-to-real one along the last axis (``scipy.fft.irfftn`` would
        allocate an HR-sized complex temporary for that step, 30 % of its time
        at 216³).
        """
        if self.half:
            if overwrite and spec.flags.c_contiguous and spec.dtype == self.cdtype:
                scipy.fft.ifftn(spec, axes=(0, 1), workers=self.workers, overwrite_x=True)
                out = scipy.fft.irfft(spec, n=self.shape[2], axis=2, workers=self.workers)
            else:
                out = scipy.fft.irfftn(spec, s=self.shape, workers=self.workers)
        else:
            out = scipy.fft.ifftn(spec, workers=self.workers, overwrite_x=overwrite).real
        return np.ascontiguousarray(out, dtype=self.dtype)  # .real is a strided view

    def lr_spectrum(self, y: np.ndarray) -> np.ndarray:
        """Spectrum of an LR-grid array in the layout that :meth:`fold` returns.

        That is an rfftn half spectrum when the last axis is a half axis with
        ``p = 1``, a full fftn spectrum otherwise.
        """
        if self._lr_half:
            return scipy.fft.rfftn(y, workers=self.workers)
        return scipy.fft.fftn(y, workers=self.workers)

    def lr_inverse(self, spec: np.ndarray) -> np.ndarray:
        """Real LR-grid array of a spectrum in the layout of :meth:`lr_spectrum`."""
        if self._lr_half:
            out = scipy.fft.irfftn(spec, s=self.lr_shape, workers=self.workers)
        else:
            out = scipy.fft.ifftn(spec, workers=self.workers).real
        return out.astype(self.dtype, copy=False)

    def lr_norm2(self, spec: np.ndarray) -> float:
        """``||y||²`` of an LR array from its :meth:`lr_spectrum` (Parseval)."""
        a = np.abs(spec) ** 2 * self._lr_weights
        return float(np.sum(a, dtype=np.float64)) / float(np.prod(self.lr_shape))

    # -- aliasing --------------------------------------------------------------
    def fold(self, spec: np.ndarray) -> np.ndarray:
        """``J^T``: sum of the ``d`` aliased tiles of an HR spectrum (LR layout).

        In a half spectrum with ``p = 2`` on the last axis, the partner of the
        stored frequency ``(k0, k1, q)`` at ``q + n2`` is the conjugate of the
        stored ``(-k0, -k1, n2 - q)`` (the spectrum of a real array is Hermitian).
        """
        p0, p1, p2 = self.p
        n0, n1, n2 = self.lr_shape
        last = [slice(j * n2, (j + 1) * n2) for j in range(p2)] if not self.half else [slice(None)]
        tiles = [
            spec[j0 * n0 : (j0 + 1) * n0, j1 * n1 : (j1 + 1) * n1, s2]
            for j0 in range(p0)
            for j1 in range(p1)
            for s2 in last
        ]
        t = tiles[0].copy()
        for tile in tiles[1:]:
            t += tile
        if not self.half or p2 == 1:
            return t
        partner = t[self._rev0][:, self._rev1][:, :, n2:0:-1]
        t = t[:, :, :n2]
        t += np.conj(partner)
        return t

    def tile_multiply(
        self, spec: np.ndarray, lr: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``spec * J lr``: an HR spectrum times the LR spectrum ``lr`` repeated ``d`` times."""
        p0, p1, p2 = self.p
        n0, n1, n2 = self.lr_shape
        if out is None:
            out = np.empty(spec.shape, dtype=np.result_type(spec, lr))
        if not self.half:
            view: tuple[int, ...] = (p0, n0, p1, n1, p2, n2)
            np.multiply(spec.reshape(view), lr[None, :, None, :, None, :], out=out.reshape(view))
            return out
        if p2 == 2:  # stored last-axis index n2 aliases onto LR index 0
            lr = np.concatenate([lr, lr[:, :, :1]], axis=2)
        view = (p0, n0, p1, n1, spec.shape[2])
        np.multiply(spec.reshape(view), lr[None, :, None, :, :], out=out.reshape(view))
        return out

    # -- solve -----------------------------------------------------------------
    def data_rhs(self, g: np.ndarray) -> np.ndarray:
        r"""Spectrum of :math:`\mu H^T U^T g` for an LR array ``g`` (of shape ``n``)."""
        if tuple(g.shape) != self.lr_shape:
            raise InputError(f"LR array should have shape {self.lr_shape}, got {tuple(g.shape)}")
        # F(U^T g) is the LR spectrum of g repeated over the d aliased tiles
        return self.data_rhs_spectrum(self.lr_spectrum(g.astype(self.dtype, copy=False)))

    def solve_spectrum(self, rhs: np.ndarray, overwrite: bool = False) -> np.ndarray:
        """Spectrum ``X`` of the solution for the spectrum ``rhs`` of the right-hand side.

        With ``overwrite=True`` the memory of ``rhs`` is reused.
        """
        inv_psi, conj_lam_inv_psi = self._psi_arrays()
        rhs_dc = rhs[self._dc]
        z = rhs if overwrite else rhs.copy()
        z *= inv_psi
        work = np.multiply(self._lam, z)
        s = self.fold(work)
        s *= self._inv_den
        x = self.tile_multiply(conj_lam_inv_psi, s, out=work)
        np.subtract(z, x, out=x)
        x[self._dc] = self._m0_inv @ rhs_dc
        return x

    def solve(self, b: np.ndarray) -> np.ndarray:
        r"""Solve :math:`(\mu H^T U^T U H + \beta D^T D) x = b` for an HR-grid ``b``."""
        if tuple(b.shape) != self.shape:
            raise InputError(f"right-hand side should have shape {self.shape}, got {b.shape}")
        spec = self.forward(b.astype(self.dtype, copy=False))
        return self.inverse(self.solve_spectrum(spec, overwrite=True), overwrite=True)

    def blurred_decimated(self, spec: np.ndarray) -> np.ndarray:
        """LR-layout spectrum of ``U H x`` from the spectrum of ``x`` (``J^T(Λ X) / d``)."""
        out = self.fold(self._lam * spec)
        out /= self.d
        return out

    def solve_split_spectrum(
        self, spec: np.ndarray, g_spec: np.ndarray, scale: float = 1.0
    ) -> float:
        r"""The f-step of ADMM in place: ``spec`` (the spectrum :math:`R` of an HR array
        ``b``) becomes the spectrum of the solution of

        .. math:: (\mu H^T U^T U H + \beta D^T D)\, x = s\, b + \mu H^T U^T g,

        with ``s = scale`` and ``g_spec`` the :meth:`lr_spectrum` of ``g``;
        returns :math:`\|U H x - g\|^2`.

        The same solution as :meth:`solve_spectrum` of ``s R + data_rhs(g)``, in
        one compiled pass over the spectrum (:mod:`boneframe.fourier_kernels`)
        for half spectra: no HR-sized temporaries, the data term's spectrum
        folded on the fly, and the residual's norm by Parseval from the LR
        quantities of the solve itself (:math:`\mathcal F(UHx - g) = -c/\mu`, see
        there), so that the f-step costs two FFTs and one pass.
        """
        if spec.shape != self._lam.shape or spec.dtype != self.cdtype:
            raise InputError(
                f"spectrum should be {self.cdtype} of shape {self._lam.shape}, "
                f"got {spec.dtype} {spec.shape}"
            )
        g_spec = np.asarray(g_spec, dtype=self.cdtype)
        n_lr = float(np.prod(self.lr_shape))
        mu, d = self.mu, self.d
        if not self.half or not spec.flags.c_contiguous:
            rhs = self.data_rhs_spectrum(g_spec)
            rhs += scale * spec
            spec[...] = self.solve_spectrum(rhs, overwrite=True)
            res = self.blurred_decimated(spec)
            res -= g_spec
            return self.lr_norm2(res)
        from boneframe import fourier_kernels as kern
        from boneframe.parallel import run_chunks

        rhs_dc = scale * spec[self._dc] + mu * np.conj(self._lam[self._dc]) * g_spec[0, 0, 0]
        paired = self.p[2] == 2
        n0 = self.lr_shape[0]
        t, c = self._lr_work()
        r2 = np.zeros(n0)
        s0, s1, s2 = self._sym_beta
        s_, d_ = np.asarray([scale, d], dtype=self.dtype)  # scalars of the arrays' precision
        spec_r, lam_r = spec.view(self.dtype), self._lam.view(self.dtype)
        run_chunks(
            kern._split_solve, n0 // 2 + 1 if paired else n0, spec_r, lam_r, s0, s1, s2, g_spec,
            self._inv_den, self._lr_weights, s_, d_, paired, t, c, r2,
        )  # fmt: skip
        x_dc = (self._m0_inv @ rhs_dc.astype(self._m0_inv.dtype)).astype(self.cdtype)
        spec[self._dc] = x_dc
        # the zero LR frequency, where the group's solve was the direct one
        ux = self._lam[self._dc] * x_dc
        if paired:
            top = self._dc[2] > 0
            u0 = np.sum(ux[~top]) + np.conj(np.sum(ux[top]))
        else:
            u0 = np.sum(ux)
        r0 = complex(u0) / d - complex(g_spec[0, 0, 0])
        total = float(np.sum(r2)) / mu**2 + abs(r0) ** 2
        return total / n_lr

    def _lr_work(self) -> tuple[np.ndarray, np.ndarray]:
        """Two LR-sized complex buffers (with the HR half spectrum's last axis), kept."""
        work = self._work
        if work is None:
            shape = (*self.lr_shape[:2], self._lam.shape[2])
            work = (np.empty(shape, self.cdtype), np.empty(shape, self.cdtype))
            self._work = work
        return work

    def data_rhs_spectrum(self, g_spec: np.ndarray) -> np.ndarray:
        r"""Spectrum of :math:`\mu H^T U^T g` from the :meth:`lr_spectrum` of ``g``."""
        return self.mu * self.tile_multiply(np.conj(self._lam), g_spec)
