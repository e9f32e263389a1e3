"""Mean-intercept counts along lines, restricted to a mask (DA inside a region).

The lines are those of :func:`boneframe.metrics.thickness_kernels.intercept_counts`
(the same directions, grids and samples); here a sample outside the mask ends
the run: a change counts only between two consecutive samples inside the mask,
and the length is the samples inside the mask times the sampling increment. So
the region's boundary is no phase change, as the volume's border is none.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from boneframe.parallel import run_chunks

#: Sample states: marrow and bone inside the mask, and outside it.
MARROW, BONE, OUTSIDE = 0, 1, 2


@njit(cache=True, nogil=True)
def _masked_intercepts(
    state, directions, grid_offsets, spacing, increment, changes, lengths, t0, t1
):  # noqa: E501
    n0, n1, n2 = state.shape
    size = np.array([n0, n1, n2], dtype=np.float64)
    centre = size / 2.0
    half = 0.5 * math.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
    steps = int(math.ceil(half / spacing)) + 1
    for t in range(t0, t1):
        d = directions[t]
        if abs(d[0]) < 0.9:
            u = np.array([0.0, -d[2], d[1]])
        else:
            u = np.array([d[2], 0.0, -d[0]])
        u /= math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        w = np.array(
            [d[1] * u[2] - d[2] * u[1], d[2] * u[0] - d[0] * u[2], d[0] * u[1] - d[1] * u[0]]
        )
        n_changes = 0
        inside = 0
        for a in range(-steps, steps):
            for b in range(-steps, steps):
                p = centre + (a + grid_offsets[t, 0]) * spacing * u
                p = p + (b + grid_offsets[t, 1]) * spacing * w
                lo = -1e300
                hi = 1e300
                for ax in range(3):
                    if abs(d[ax]) < 1e-12:
                        if p[ax] < 0.0 or p[ax] >= size[ax]:
                            lo = 1.0
                            hi = 0.0
                        continue
                    s0 = (0.0 - p[ax]) / d[ax]
                    s1 = (size[ax] - p[ax]) / d[ax]
                    lo = max(lo, min(s0, s1))
                    hi = min(hi, max(s0, s1))
                if hi <= lo:
                    continue
                s = lo + grid_offsets[t, 2] * increment
                previous = -1
                while s < hi:
                    x0 = min(max(int(math.floor(p[0] + s * d[0])), 0), n0 - 1)
                    x1 = min(max(int(math.floor(p[1] + s * d[1])), 0), n1 - 1)
                    x2 = min(max(int(math.floor(p[2] + s * d[2])), 0), n2 - 1)
                    current = state[x0, x1, x2]
                    if current == 2:
                        previous = -1
                    else:
                        inside += 1
                        if previous >= 0 and current != previous:
                            n_changes += 1
                        previous = current
                    s += increment
        changes[t] = n_changes
        lengths[t] = inside * increment


def masked_intercept_counts(
    bone: np.ndarray,
    mask: np.ndarray,
    directions: np.ndarray,
    grid_offsets: np.ndarray,
    spacing: float,
    increment: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase changes and sampled length inside ``mask`` along parallel lines, per direction.

    Parameters
    ----------
    bone, mask : numpy.ndarray of bool
        The bone and the region (one shape).
    directions, grid_offsets, spacing, increment
        As :func:`boneframe.metrics.thickness_kernels.intercept_counts`.

    Returns
    -------
    changes : numpy.ndarray of int64
    lengths : numpy.ndarray of float
        Sampled length inside the mask (voxels).
    """
    state = np.where(mask, bone.astype(np.uint8), np.uint8(OUTSIDE)).astype(np.uint8)
    n = directions.shape[0]
    changes = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n)
    run_chunks(
        _masked_intercepts,
        n,
        np.ascontiguousarray(state),
        np.ascontiguousarray(directions, dtype=np.float64),
        np.ascontiguousarray(grid_offsets, dtype=np.float64),
        float(spacing),
        float(increment),
        changes,
        lengths,
    )
    return changes, lengths
