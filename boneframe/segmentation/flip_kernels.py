r"""Compiled (numba) passes of :mod:`boneframe.segmentation.data_consistent`.

A binary volume :math:`B` on the fine grid predicts the scan
:math:`P = U(h * (m + c + d B))`, :math:`d = b - m`. Flipping voxel :math:`v`
(:math:`s = +1` marrow to bone, :math:`-1` bone to marrow) changes the residual
:math:`R = P - g` by :math:`s\,d\,a_i` on the low-resolution voxels :math:`i`
whose kernel footprint holds :math:`v`, :math:`a_i = h[p i + r - v]` (``"same"``
convolution, kernel radius :math:`r`), so the weighted data term changes by

.. math:: \Delta = \sum_i w_i\,\big(2 s d a_i R_i + d^2 a_i^2\big),

a sum over at most :math:`\lceil K/p \rceil^3` voxels, and the number of
bone/marrow faces by ``same - different`` 6-neighbours of :math:`v`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _range(v, r, p, n):  # pragma: no cover (numba)
    """Low-resolution indices ``i`` with ``0 <= p i + r - v < 2 r + 1``, clipped to ``[0, n)``."""
    lo = -((r - v) // p)  # ceil((v - r) / p)
    hi = (v + r) // p
    return max(lo, 0), min(hi, n - 1)


@njit(cache=True, nogil=True)
def flip_data_delta(resid, valid, h, p0, p1, p2, v0, v1, v2, sd):  # pragma: no cover (numba)
    """Change of ``sum(valid * resid**2)`` when the prediction gains ``sd`` times the
    kernel footprint of fine voxel ``(v0, v1, v2)``."""
    r0, r1, r2 = h.shape[0] // 2, h.shape[1] // 2, h.shape[2] // 2
    a0, b0 = _range(v0, r0, p0, resid.shape[0])
    a1, b1 = _range(v1, r1, p1, resid.shape[1])
    a2, b2 = _range(v2, r2, p2, resid.shape[2])
    acc = 0.0
    for i0 in range(a0, b0 + 1):
        j0 = p0 * i0 + r0 - v0
        for i1 in range(a1, b1 + 1):
            j1 = p1 * i1 + r1 - v1
            for i2 in range(a2, b2 + 1):
                if valid[i0, i1, i2]:
                    a = sd * h[j0, j1, p2 * i2 + r2 - v2]
                    acc += a * (2.0 * resid[i0, i1, i2] + a)
    return acc


@njit(cache=True, nogil=True)
def flip_update(resid, h, p0, p1, p2, v0, v1, v2, sd):  # pragma: no cover (numba)
    """``resid += sd * footprint of (v0, v1, v2)`` (every low-resolution voxel, valid or not)."""
    r0, r1, r2 = h.shape[0] // 2, h.shape[1] // 2, h.shape[2] // 2
    a0, b0 = _range(v0, r0, p0, resid.shape[0])
    a1, b1 = _range(v1, r1, p1, resid.shape[1])
    a2, b2 = _range(v2, r2, p2, resid.shape[2])
    for i0 in range(a0, b0 + 1):
        j0 = p0 * i0 + r0 - v0
        for i1 in range(a1, b1 + 1):
            j1 = p1 * i1 + r1 - v1
            for i2 in range(a2, b2 + 1):
                resid[i0, i1, i2] += sd * h[j0, j1, p2 * i2 + r2 - v2]


@njit(cache=True, nogil=True)
def face_delta(bone, v0, v1, v2):  # pragma: no cover (numba)
    """``(same, different)``: the 6-neighbours (inside the volume) of ``v`` with its label
    and with the other; flipping ``v`` changes the number of faces by ``same - different``."""
    n0, n1, n2 = bone.shape
    b = bone[v0, v1, v2]
    same = 0
    diff = 0
    if v0 > 0:
        if bone[v0 - 1, v1, v2] == b:
            same += 1
        else:
            diff += 1
    if v0 < n0 - 1:
        if bone[v0 + 1, v1, v2] == b:
            same += 1
        else:
            diff += 1
    if v1 > 0:
        if bone[v0, v1 - 1, v2] == b:
            same += 1
        else:
            diff += 1
    if v1 < n1 - 1:
        if bone[v0, v1 + 1, v2] == b:
            same += 1
        else:
            diff += 1
    if v2 > 0:
        if bone[v0, v1, v2 - 1] == b:
            same += 1
        else:
            diff += 1
    if v2 < n2 - 1:
        if bone[v0, v1, v2 + 1] == b:
            same += 1
        else:
            diff += 1
    return same, diff


@njit(cache=True, nogil=True)
def sweep(  # pragma: no cover (numba)
    bone, candidate, resid, valid, h, p0, p1, p2, d, face_cost, tol, reverse
):
    """One greedy (ICM) pass over the fine voxels, in raster order (``reverse``: backwards).

    A voxel is visited when it is a ``candidate`` or lies on the bone/marrow boundary;
    its flip is kept when it lowers ``sum(valid * resid**2) + face_cost * faces`` by more
    than ``tol``, and ``resid`` is updated in its footprint. Returns the number of flips
    and the (negative) total change of the objective.
    """
    n0, n1, n2 = bone.shape
    flips = 0
    change = 0.0
    for q0 in range(n0):
        v0 = n0 - 1 - q0 if reverse else q0
        for q1 in range(n1):
            v1 = n1 - 1 - q1 if reverse else q1
            for q2 in range(n2):
                v2 = n2 - 1 - q2 if reverse else q2
                same, diff = face_delta(bone, v0, v1, v2)
                if diff == 0 and candidate[v0, v1, v2] == 0:
                    continue
                sd = -d if bone[v0, v1, v2] else d
                delta = face_cost * (same - diff)
                delta += flip_data_delta(resid, valid, h, p0, p1, p2, v0, v1, v2, sd)
                if delta < -tol:
                    bone[v0, v1, v2] = 1 - bone[v0, v1, v2]
                    flip_update(resid, h, p0, p1, p2, v0, v1, v2, sd)
                    flips += 1
                    change += delta
    return flips, change


def count_faces(bone: np.ndarray) -> int:
    """Number of 6-neighbour pairs (inside the volume) with different labels."""
    b = bone.astype(bool, copy=False)
    return int(sum(np.count_nonzero(np.diff(b, axis=a)) for a in range(b.ndim)))
