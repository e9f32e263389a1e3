r"""Compiled (numba) passes of the exact f-step of :mod:`boneframe.fourier_solve`.

:meth:`~boneframe.fourier_solve.FourierNormalSolver.solve_split_spectrum` solves

.. math:: (\mu H^T U^T U H + \beta D^T D)\, x = s\, b + \mu H^T U^T g

for the spectrum :math:`R = \mathcal F b`, in place. With
:math:`\Psi = \beta|\mathcal F D|^2`, :math:`\Lambda = \mathcal F h`, :math:`G`
the LR spectrum of ``g``, :math:`J^T` the fold of the ``d`` aliased tiles and
:math:`\mathrm{inv\_den} = 1 / (J^T(|\Lambda|^2/\Psi) + d/\mu)`, the Woodbury
solution of Zhao et al. (2016) becomes

.. math::
    T = J^T(\Lambda R / \Psi), \qquad
    c = (d\,G - s\,T)\cdot \mathrm{inv\_den}, \qquad
    X = \big(s R + \bar\Lambda\, J c\big) / \Psi,

and the LR spectrum of the residual is :math:`\mathcal F(U H x - g) = -c/\mu`
(:math:`J^T(\Lambda X)/d = \mathcal F(UHx)`), so :math:`\|UHx - g\|^2` comes from
:math:`c` by Parseval at no extra pass. :func:`_split_solve` takes the HR planes
of one LR plane (and of its conjugate), 2 to 4 planes for ``p = 2``, folds them
into :math:`T` (streaming along their rows), computes :math:`c` on the LR planes
and solves the same HR planes while they are still in cache (writing :math:`X`
over :math:`R`): the spectrum is read from memory once and written once. (One
aliasing group at a time instead reads 16 to 32 scattered row streams: twice as
slow. Two streaming passes over the whole spectrum read it twice.)
:math:`1/\Psi` is computed per row from the per-axis symbols, and the data
term's spectrum :math:`\mu\bar\Lambda J G` is never formed. The zero-frequency
group (where :math:`\Psi = 0`) is left to the caller (a ``d x d`` solve).

HR spectra are passed as real views (real and imaginary parts interleaved):
numba's complex arithmetic does not vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def _inv_psi_row(sym2, base, ip):  # pragma: no cover (numba)
    """``ip = 1 / (base + sym2)`` (0 where that is 0: the zero frequency)."""
    zero = base - base
    for q in range(ip.shape[0]):
        psi = base + sym2[q]
        ip[q] = 1 / psi if psi > zero else zero


@njit(cache=True, nogil=True, fastmath=True)
def _fold_plane(spec, lam, sym0, sym1, sym2, k0, t, ip):  # pragma: no cover (numba)
    """``t[k1 % n1] += (lam * spec / psi)[k0, k1]`` over the HR plane ``k0`` (real views;
    ``t`` an LR plane)."""
    n1 = t.shape[0]
    m = t.shape[1] // 2
    for k1 in range(spec.shape[1]):
        _inv_psi_row(sym2, sym0[k0] + sym1[k1], ip)
        sr, lr, tr = spec[k0, k1], lam[k0, k1], t[k1 % n1]
        for q in range(m):
            re, im = sr[2 * q], sr[2 * q + 1]
            c, d = lr[2 * q], lr[2 * q + 1]
            w = ip[q]
            tr[2 * q] += (re * c - im * d) * w
            tr[2 * q + 1] += (re * d + im * c) * w


@njit(cache=True, nogil=True, fastmath=True)
def _solve_plane(spec, lam, sym0, sym1, sym2, k0, c, s, ip):  # pragma: no cover (numba)
    """``spec = (s spec + conj(lam) c[k1 % n1]) / psi`` over the HR plane ``k0`` (real
    views; ``c`` an LR plane)."""
    n1 = c.shape[0]
    m = c.shape[1] // 2
    for k1 in range(spec.shape[1]):
        _inv_psi_row(sym2, sym0[k0] + sym1[k1], ip)
        sr, lr, cr = spec[k0, k1], lam[k0, k1], c[k1 % n1]
        for q in range(m):
            re, im = sr[2 * q], sr[2 * q + 1]
            lc, ld = lr[2 * q], lr[2 * q + 1]
            xr, xi = cr[2 * q], cr[2 * q + 1]
            w = ip[q]
            sr[2 * q] = (s * re + lc * xr + ld * xi) * w
            sr[2 * q + 1] = (s * im + lc * xi - ld * xr) * w


@njit(cache=True, nogil=True, fastmath=True)
def _combine_plane(t, tp, g, inv_den, weights, s, d, paired, l0, c):  # pragma: no cover
    """``c = (d G - s T) inv_den`` on the LR plane ``l0``; returns ``sum w |c|²`` (the zero
    frequency left out).

    ``paired`` (``p = 2`` on the half axis): ``t`` and ``c`` hold the stored last
    indices ``0 .. n2`` of the HR half spectrum, ``g`` and ``inv_den`` are full LR
    spectra, and the fold of LR ``(l, q)`` adds ``conj(t[-l, n2 - q])`` (the
    unstored HR partners are the conjugates of stored ones; ``tp`` is the LR plane
    ``-l0``); ``c[.., n2] = c[.., 0]``. Otherwise all are half spectra of the same
    last axis.
    """
    n1, n2 = g.shape[1], g.shape[2]
    acc = 0.0
    for l1 in range(n1):
        m1 = (n1 - l1) % n1
        tr, gr, ir, cr, to = t[l1], g[l0, l1], inv_den[l0, l1], c[l1], tp[m1]
        part = 0.0
        for q in range(n2):
            tq = tr[q] + to[n2 - q].conjugate() if paired else tr[q]
            cq = (d * gr[q] - s * tq) * ir[q]
            cr[q] = cq
            part += weights[q] * (cq.real * cq.real + cq.imag * cq.imag)
        if paired:
            cr[n2] = cr[0]
        if l0 == 0 and l1 == 0:
            c0 = cr[0]
            part -= weights[0] * (c0.real * c0.real + c0.imag * c0.imag)
        acc += part
    return acc


@njit(cache=True, nogil=True)
def _split_solve(
    spec, lam, sym0, sym1, sym2, g, inv_den, weights, s, d, paired, t, c, r2, a, b
):  # pragma: no cover (numba)
    """The solve for the canonical LR planes ``l0`` in ``a:b``.

    ``paired``: ``l0`` runs over ``0 .. n0 // 2`` and the HR planes of LR planes ``l0``
    and ``-l0`` are solved together (their folds need each other); otherwise over
    all ``l0``. The HR planes of one step (2 to 4 for ``p = 2``, 1.5 MB at 216³) are
    folded, then solved while they are still in cache. ``spec``, ``lam`` real views,
    ``t`` and ``c`` LR-sized complex buffers (with the HR half spectrum's last axis).
    """
    n0 = g.shape[0]
    p0 = spec.shape[0] // n0
    m = t.shape[2]
    ip = np.empty(m, dtype=sym2.dtype)
    tv = t.view(sym2.dtype)
    cv = c.view(sym2.dtype)
    for l0 in range(a, b):
        m0 = (n0 - l0) % n0 if paired else l0
        count = 2 if m0 != l0 else 1  # LR planes l0 (and -l0)
        for i in range(count):
            lp = l0 if i == 0 else m0
            tv[lp] = 0
            for j0 in range(p0):
                _fold_plane(spec, lam, sym0, sym1, sym2, lp + j0 * n0, tv[lp], ip)
        acc = 0.0
        for i in range(count):
            lp = l0 if i == 0 else m0
            tp = t[(n0 - lp) % n0]
            acc += _combine_plane(t[lp], tp, g, inv_den, weights, s, d, paired, lp, c[lp])
        for i in range(count):
            lp = l0 if i == 0 else m0
            for j0 in range(p0):
                _solve_plane(spec, lam, sym0, sym1, sym2, lp + j0 * n0, cv[lp], s, ip)
        r2[l0] = acc
