r"""Compiled (numba) passes of ADMM for total variation with periodic differences.

One ADMM iteration of :class:`boneframe.solvers.admm.ADMM` on a
:class:`~boneframe.superres.SuperResolutionProblem` touches the gradient field
``(3, *shape)`` about twenty times in numpy (difference, add, shrink, subtract,
norms, divergence). Here the whole v- and λ-step, **and** the next f-step's
right-hand side :math:`D^T w`, are one pass, fused per voxel:

.. math::
    d &= D x^{k+1}, \quad u = d + y^k, \quad
    v^{k+1} = \operatorname{shrink}_t(u), \quad y^{k+1} = u - v^{k+1}, \\
    D^T w^{k+1} &\text{ with } w^{k+1} = v^{k+1} - y^{k+1}
    \;(\text{the next f-step's } v - y),

with :math:`y = \lambda / \beta` and :math:`t = w_{TV} / \beta`. Neither
:math:`v` (a function of :math:`d` and :math:`y^k`) nor :math:`w` is stored: each
slice's :math:`w` is kept in a slice buffer until :math:`D^T` (backward
differences) has used it, the previous slice's first component in another. The
first slice of each chunk needs the last slice of the chunk before, which that
chunk's thread overwrites: it is computed beforehand (:func:`_pass` with
``edges``, one slice per chunk). While :math:`\beta` is being adapted, the same pass replaces
:math:`D^T v^k` by :math:`D^T v^{k+1}` in a scalar field and sums
:math:`\|D^T(v^k - v^{k+1})\|^2` (the dual residual). It also sums what the
records need (:data:`SUMS`) in float64 per slice. ``D`` is the periodic
forward difference of :mod:`boneframe.operators.differences`
(``boundary="periodic"``).

The loops are serial ``nogil`` functions over a range of slices, run on a few
threads by :func:`boneframe.parallel.run_chunks` (numba's ``parallel=True``
would cost a long first compile); ``cache=True`` keeps the machine code.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from boneframe.parallel import num_threads, run_chunks

#: Columns of the per-slice sums :func:`split_update` returns.
SUMS = (
    "step2",  # ||x_new - x_old||²
    "size2",  # ||x_new||²
    "phi_dx",  # phi(D x_new) / weight
    "dx2",  # ||D x_new||²
    "phi_v",  # phi(v_new) / weight
    "gap2",  # ||v_new - D x_new||²
    "y_gap",  # y_new . (v_new - D x_new)
    "dual2",  # ||D^T (v_old - v_new)||² (when dtv is given, else 0)
)


@njit(cache=True, nogil=True, fastmath=True)
def _pass(
    x, x_old, y, dtw, dtv, edge, t, ys, aniso, adapt, sums, starts, edges, a, b
):  # pragma: no cover (numba)
    """The fused pass on the chunks ``a:b`` (slices ``starts[c]:starts[c + 1]``).

    With ``edges``, only the first components of ``w`` and ``v_new`` on the slice
    before each chunk, into ``edge[c]``, from copies of ``y``'s rows (``y`` is not
    changed): what each chunk's first ``D^T`` needs from the chunk before, whose
    thread overwrites it.

    Per row, the inner loop reads ``x`` (this row, next slice, next row), ``x_old``
    and ``y`` (times ``ys``; updated in place), and writes ``y_new``, ``v_new`` and
    ``w`` (slice buffers): branch-free with one in/out array per quantity, so that it
    vectorises (LLVM's runtime overlap checks fail, and fall back to scalar code,
    when an input and an output row are the same memory under two names).
    """
    nz, ny, nx = x.shape
    wb = np.empty((3, ny, nx), dtype=x.dtype)  # w of the current slice
    vb = np.empty((3, ny, nx), dtype=x.dtype)  # v_new of the current slice
    wprev = np.empty((ny, nx), dtype=x.dtype)  # w[0] of the slice before
    vprev = np.empty((ny, nx), dtype=x.dtype)
    dlast = np.empty(nx, dtype=x.dtype)
    rows = np.empty((3, nx), dtype=x.dtype)
    zero = t - t  # 0 in the arrays' precision
    for c in range(a, b):
        if edges:
            k0 = starts[c] - 1 if starts[c] > 0 else nz - 1
            k1 = k0 + 1
        else:
            k0, k1 = starts[c], starts[c + 1]
            wprev[:] = edge[c, 0]
            vprev[:] = edge[c, 1]
        for k in range(k0, k1):
            kp = k + 1 if k + 1 < nz else 0
            acc = np.zeros(8)
            for j in range(ny):
                jp = j + 1 if j + 1 < ny else 0
                xr, xz, xy, xo = x[k, j], x[kp, j], x[k, jp], x_old[k, j]
                if edges:
                    rows[:] = y[:, k, j]
                    y0, y1, y2 = rows[0], rows[1], rows[2]
                else:
                    y0, y1, y2 = y[0, k, j], y[1, k, j], y[2, k, j]
                v0r, v1r, v2r = vb[0, j], vb[1, j], vb[2, j]
                w0r, w1r, w2r = wb[0, j], wb[1, j], wb[2, j]
                for i in range(nx - 1):
                    dlast[i] = xr[i + 1] - xr[i]
                dlast[nx - 1] = xr[0] - xr[nx - 1]
                step2 = size2 = phi_dx = dx2 = phi_v = gap2 = y_gap = zero
                for i in range(nx):
                    xc = xr[i]
                    d0 = xz[i] - xc
                    d1 = xy[i] - xc
                    d2 = dlast[i]
                    u0, u1, u2 = d0 + ys * y0[i], d1 + ys * y1[i], d2 + ys * y2[i]
                    dd = d0 * d0 + d1 * d1 + d2 * d2
                    if aniso:
                        pdx = abs(d0) + abs(d1) + abs(d2)
                        m0 = max(abs(u0) - t, zero)
                        m1 = max(abs(u1) - t, zero)
                        m2 = max(abs(u2) - t, zero)
                        pv = m0 + m1 + m2
                        v0 = m0 if u0 >= zero else -m0
                        v1 = m1 if u1 >= zero else -m1
                        v2 = m2 if u2 >= zero else -m2
                    else:
                        pdx = math.sqrt(dd)
                        nu = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
                        pv = max(nu - t, zero)
                        s = pv / nu if nu > zero else zero
                        v0, v1, v2 = u0 * s, u1 * s, u2 * s
                    n0, n1, n2 = u0 - v0, u1 - v1, u2 - v2
                    g0, g1, g2 = v0 - d0, v1 - d1, v2 - d2
                    dxo = xc - xo[i]
                    step2 += dxo * dxo
                    size2 += xc * xc
                    phi_dx += pdx
                    dx2 += dd
                    phi_v += pv
                    gap2 += g0 * g0 + g1 * g1 + g2 * g2
                    y_gap += n0 * g0 + n1 * g1 + n2 * g2
                    y0[i], y1[i], y2[i] = n0, n1, n2
                    v0r[i], v1r[i], v2r[i] = v0, v1, v2
                    w0r[i], w1r[i], w2r[i] = v0 - n0, v1 - n1, v2 - n2
                acc[0] += step2
                acc[1] += size2
                acc[2] += phi_dx
                acc[3] += dx2
                acc[4] += phi_v
                acc[5] += gap2
                acc[6] += y_gap
            if edges:
                edge[c, 0] = wb[0]
                edge[c, 1] = vb[0]
                continue
            # D^T w (and D^T v): backward differences, periodic
            dual = 0.0
            for j in range(ny):
                jm = j - 1 if j > 0 else ny - 1
                _backward(wprev[j], wb[0, j], wb[1, jm], wb[1, j], wb[2, j], dtw[k, j])
                if adapt:
                    dual += _backward_change(
                        vprev[j], vb[0, j], vb[1, jm], vb[1, j], vb[2, j], dtv[k, j]
                    )
            acc[7] = dual
            sums[k] = acc
            wprev[:] = wb[0]
            vprev[:] = vb[0]


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _backward(a0m, a0, a1m, a1, a2, out):  # pragma: no cover (numba)
    """One row of ``D^T a``: ``a0m``/``a1m`` the rows before along axes 0/1."""
    nx = out.shape[0]
    out[0] = a0m[0] - a0[0] + a1m[0] - a1[0] + a2[nx - 1] - a2[0]
    for i in range(1, nx):
        out[i] = a0m[i] - a0[i] + a1m[i] - a1[i] + a2[i - 1] - a2[i]


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _backward_change(a0m, a0, a1m, a1, a2, out):  # pragma: no cover (numba)
    """:func:`_backward` into ``out``, returning ``||out_before - out_after||²``."""
    nx = out.shape[0]
    s = a0m[0] - a0[0] + a1m[0] - a1[0] + a2[nx - 1] - a2[0]
    e = out[0] - s
    total = e * e
    out[0] = s
    for i in range(1, nx):
        s = a0m[i] - a0[i] + a1m[i] - a1[i] + a2[i - 1] - a2[i]
        e = out[i] - s
        total += e * e
        out[i] = s
    return float(total)


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
    dtw: np.ndarray,
    threshold: float,
    *,
    anisotropic: bool = False,
    dtv: np.ndarray | None = None,
    y_scale: float = 1.0,
) -> dict[str, float]:
    """The fused v- and y-step of ADMM and the next ``D^T w``, in place; returns the
    sums of :data:`SUMS`.

    Parameters
    ----------
    x, x_old : ndarray, 3-D float32 or float64
        The new and the previous iterate (C-contiguous).
    y : ndarray, shape ``(3, *x.shape)``
        The scaled multiplier ``lambda / beta``; replaced by its update.
    dtw : ndarray, shape ``x.shape``
        Receives ``D^T (v_new - y_new)``, the next f-step's right-hand side.
    threshold : float
        Shrinkage threshold ``tau * weight``.
    anisotropic : bool
        Component-wise soft threshold instead of the vectorial shrinkage.
    dtv : ndarray or None, shape ``x.shape``
        When given, holds ``D^T v_old`` on entry and ``D^T v_new`` on exit, and
        ``dual2`` is ``||D^T (v_old - v_new)||²``.
    y_scale : float
        ``y`` is taken as ``y_scale * y`` (a rescaling after a change of beta, for free).
    """
    nz, ny, nx = x.shape
    for a in (x, x_old, y, dtw) + ((dtv,) if dtv is not None else ()):
        if not a.flags.c_contiguous or a.dtype != x.dtype:
            raise ValueError("the fused pass needs C-contiguous arrays of one dtype")
    starts = np.unique(np.linspace(0, nz, min(nz, 4 * num_threads()) + 1).astype(np.int64))
    chunks = len(starts) - 1
    sums = np.zeros((nz, len(SUMS)))
    adapt = dtv is not None
    dtv_arr = dtv if dtv is not None else np.empty((1, 1, 1), dtype=x.dtype)  # not touched
    edge = np.empty((chunks, 2, ny, nx), dtype=x.dtype)
    t, ys = np.asarray([threshold, y_scale], dtype=x.dtype)  # the arrays' precision
    args = (x, x_old, y, dtw, dtv_arr, edge, t, ys, bool(anisotropic), adapt, sums, starts)
    run_chunks(_pass, chunks, *args, True)  # the edges first: the pass overwrites y
    run_chunks(_pass, chunks, *args, False)
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


@njit(cache=True, nogil=True, fastmath=True)
def _scale_add(a, alpha, b, beta, k0, k1):  # pragma: no cover (numba)
    for k in range(k0, k1):
        ak, bk = a[k], b[k]
        for j in range(ak.shape[0]):
            ar, br = ak[j], bk[j]
            for i in range(ar.shape[0]):
                ar[i] = alpha * ar[i] + beta * br[i]


def scale_add(a: np.ndarray, alpha: float, b: np.ndarray, beta: float) -> np.ndarray:
    """``a = alpha a + beta b`` in place, one pass (3-D C-contiguous arrays of one dtype)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.ndim != 3:
        raise ValueError("scale_add needs two 3-D arrays of one shape and dtype")
    c_alpha, c_beta = np.asarray([alpha, beta], dtype=a.dtype)
    run_chunks(_scale_add, a.shape[0], a, c_alpha, b, c_beta)
    return a
