r"""Compiled (numba) passes of ADMM for total variation with periodic differences.

One ADMM iteration of :class:`boneframe.solvers.admm.ADMM` on a
:class:`~boneframe.superres.SuperResolutionProblem` touches the gradient field
``(3, *shape)`` about twenty times in numpy (difference, add, shrink, subtract,
norms, divergence). Here the whole v- and λ-step is **one** pass, fused per
voxel, and ``D^T`` another:

.. math::
    d &= D x^{k+1}, \quad u = d + y^k, \quad
    v^{k+1} = \operatorname{shrink}_t(u), \quad y^{k+1} = u - v^{k+1}, \\
    w^{k+1} &= v^{k+1} - y^{k+1} \;(\text{the next f-step's } v - y),

with :math:`y = \lambda / \beta` and :math:`t = w_{TV} / \beta`; the same pass
sums what the records need (:math:`\|x^{k+1} - x^k\|^2`, :math:`\|x^{k+1}\|^2`,
:math:`\phi(D x^{k+1})`, :math:`\|D x^{k+1}\|^2`, :math:`\phi(v^{k+1})`,
:math:`\|v^{k+1} - D x^{k+1}\|^2 = \|y^{k+1} - y^k\|^2` and
:math:`y^{k+1 T}(y^k - y^{k+1})`) in float64 per slice. ``D`` is the periodic
forward difference of :mod:`boneframe.operators.differences` (``boundary="periodic"``).

The loops are serial ``nogil`` functions over a range of slices, run on a few
threads by :func:`boneframe.parallel.run_chunks` (numba's ``parallel=True``
would cost a long first compile); ``cache=True`` keeps the machine code.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from boneframe.parallel import run_chunks

#: Columns of the per-slice sums :func:`split_update` returns.
SUMS = (
    "step2",  # ||x_new - x_old||²
    "size2",  # ||x_new||²
    "phi_dx",  # phi(D x_new) / weight
    "dx2",  # ||D x_new||²
    "phi_v",  # phi(v_new) / weight
    "gap2",  # ||v_new - D x_new||²
    "y_gap",  # y_new . (y_old - y_new)
)


@njit(cache=True, nogil=True, fastmath=True)
def _update(x, x_old, y, w, dv, t, aniso, adapt, sums, k0, k1):  # pragma: no cover (numba)
    """The fused pass on slices ``k0:k1``; sums per row in float32, per slice in float64."""
    nz, ny, nx = x.shape
    zero = t - t  # 0 in the arrays' precision
    for k in range(k0, k1):
        kp = k + 1 if k + 1 < nz else 0
        acc = np.zeros(7)
        dlast = np.empty(nx, dtype=x.dtype)  # differences along the last axis, one row
        spare = np.empty((3, nx), dtype=x.dtype)  # v_old - v_new when it is not wanted
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            xr, xz, xy, xo = x[k, j], x[kp, j], x[k, jp], x_old[k, j]
            for i in range(nx - 1):
                dlast[i] = xr[i + 1] - xr[i]
            dlast[nx - 1] = xr[0] - xr[nx - 1]
            y0, y1, y2 = y[0, k, j], y[1, k, j], y[2, k, j]
            w0, w1, w2 = w[0, k, j], w[1, k, j], w[2, k, j]
            if adapt:
                e0, e1, e2 = dv[0, k, j], dv[1, k, j], dv[2, k, j]
            else:
                e0, e1, e2 = spare[0], spare[1], spare[2]
            step2 = size2 = phi_dx = dx2 = phi_v = gap2 = y_gap = zero
            for i in range(nx):  # branch-free, so that it vectorises
                xc = xr[i]
                dxo = xc - xo[i]
                step2 += dxo * dxo
                size2 += xc * xc
                d0 = xz[i] - xc
                d1 = xy[i] - xc
                d2 = dlast[i]
                a0, a1, a2 = y0[i], y1[i], y2[i]
                u0, u1, u2 = d0 + a0, d1 + a1, d2 + a2
                dd = d0 * d0 + d1 * d1 + d2 * d2
                dx2 += dd
                if aniso:
                    phi_dx += abs(d0) + abs(d1) + abs(d2)
                    m0 = max(abs(u0) - t, zero)
                    m1 = max(abs(u1) - t, zero)
                    m2 = max(abs(u2) - t, zero)
                    phi_v += m0 + m1 + m2
                    v0 = m0 if u0 >= zero else -m0
                    v1 = m1 if u1 >= zero else -m1
                    v2 = m2 if u2 >= zero else -m2
                else:
                    phi_dx += math.sqrt(dd)
                    nu = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
                    kept = max(nu - t, zero)
                    phi_v += kept
                    s = kept / nu if nu > zero else zero
                    v0, v1, v2 = u0 * s, u1 * s, u2 * s
                n0, n1, n2 = u0 - v0, u1 - v1, u2 - v2
                g0, g1, g2 = a0 - n0, a1 - n1, a2 - n2
                gap2 += g0 * g0 + g1 * g1 + g2 * g2
                y_gap += n0 * g0 + n1 * g1 + n2 * g2
                # v_old - v_new with v_old = w_old + y_old (into ``spare`` unless adapting)
                e0[i], e1[i], e2[i] = w0[i] + a0 - v0, w1[i] + a1 - v1, w2[i] + a2 - v2
                y0[i], y1[i], y2[i] = n0, n1, n2
                w0[i], w1[i], w2[i] = v0 - n0, v1 - n1, v2 - n2
            acc[0] += step2
            acc[1] += size2
            acc[2] += phi_dx
            acc[3] += dx2
            acc[4] += phi_v
            acc[5] += gap2
            acc[6] += y_gap
        sums[k] = acc


@njit(cache=True, nogil=True)
def _adjoint(w, out, norm2, k0, k1):  # pragma: no cover (numba)
    """``out = D^T w`` on slices ``k0:k1`` (periodic); ``norm2[k]`` = its squared norm."""
    nz, ny, nx = w.shape[1:]
    for k in range(k0, k1):
        km = k - 1 if k > 0 else nz - 1
        total = 0.0
        for j in range(ny):
            jm = j - 1 if j > 0 else ny - 1
            for i in range(nx):
                im = i - 1 if i > 0 else nx - 1
                s = (
                    w[0, km, j, i]
                    - w[0, k, j, i]
                    + w[1, k, jm, i]
                    - w[1, k, j, i]
                    + w[2, k, j, im]
                    - w[2, k, j, i]
                )
                total += s * s
                if out.size > 0:
                    out[k, j, i] = s
        norm2[k] = total


def split_update(
    x: np.ndarray,
    x_old: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    threshold: float,
    *,
    anisotropic: bool = False,
    dv: np.ndarray | None = None,
) -> dict[str, float]:
    """The fused v- and y-step of ADMM, in place; returns the sums of :data:`SUMS`.

    Parameters
    ----------
    x, x_old : ndarray, 3-D float32
        The new and the previous iterate.
    y : ndarray, shape ``(3, *x.shape)``
        The scaled multiplier ``lambda / beta``; replaced by its update.
    w : ndarray, shape ``(3, *x.shape)``
        On entry ``v - y`` of the previous iteration (used only when ``dv`` is
        given); on exit ``v_new - y_new``, the next f-step's target.
    threshold : float
        Shrinkage threshold ``tau * weight``.
    anisotropic : bool
        Component-wise soft threshold instead of the vectorial shrinkage.
    dv : ndarray or None, shape ``(3, *x.shape)``
        When given, receives ``v_old - v_new`` (for the dual residual).
    """
    nz = x.shape[0]
    sums = np.zeros((nz, len(SUMS)))
    adapt = dv is not None
    dv_arr = dv if dv is not None else np.empty((3, 1, 1, 1), dtype=y.dtype)  # not touched
    t = x.dtype.type(threshold)  # the arrays' precision
    run_chunks(_update, nz, x, x_old, y, w, dv_arr, t, bool(anisotropic), adapt, sums)
    total = sums.sum(axis=0)
    return {name: float(total[i]) for i, name in enumerate(SUMS)}


def adjoint(w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``D^T w`` for the periodic forward differences (``(3, *shape)`` -> ``shape``)."""
    if out is None:
        out = np.empty(w.shape[1:], dtype=w.dtype)
    norm2 = np.zeros(w.shape[1])
    run_chunks(_adjoint, w.shape[1], w, out, norm2)
    return out


def adjoint_norm2(w: np.ndarray) -> float:
    """``||D^T w||²`` without storing ``D^T w``."""
    norm2 = np.zeros(w.shape[1])
    run_chunks(_adjoint, w.shape[1], w, np.empty((0, 0, 0), dtype=w.dtype), norm2)
    return float(norm2.sum())
