r"""Smooth weights that blend one value per region: a partition of unity.

A grid of ``N0 x N1 x N2`` regions has a centre per region; along each axis
the centres ``c_0 < ... < c_{n-1}`` carry the piecewise-linear "hat" basis

.. math::
    w_k(x) = \begin{cases}
        (x - c_{k-1}) / (c_k - c_{k-1}) & c_{k-1} \le x \le c_k \\
        (c_{k+1} - x) / (c_{k+1} - c_k) & c_k \le x \le c_{k+1} \\
        0 & \text{otherwise,}
    \end{cases}

held constant beyond the first and last centre (``w_0 = 1`` before
``c_0``, ``w_{n-1} = 1`` after ``c_{n-1}``). The weights are non-negative
and sum to one at every position; the weight of region ``(i, j, k)`` is the
product of its three axis weights (trilinear interpolation between region
centres). A quantity blended with them equals the region's own value at its
centre and varies linearly between neighbouring centres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from boneframe.errors import InputError

__all__ = ["hat_weights", "region_weight"]


def hat_weights(
    centres: Sequence[float] | np.ndarray, positions: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The hat basis of sorted ``centres`` at ``positions`` along one axis.

    Parameters
    ----------
    centres : sequence of float
        Strictly increasing region centres (any unit).
    positions : array of float
        Where to evaluate them (the same unit).

    Returns
    -------
    ndarray, shape ``(len(centres), len(positions))``
        Non-negative weights whose columns sum to one.

    Examples
    --------
    >>> hat_weights([0.0, 10.0], [-5.0, 0.0, 2.5, 10.0, 20.0]).round(3)
    array([[1.  , 1.  , 0.75, 0.  , 0.  ],
           [0.  , 0.  , 0.25, 1.  , 1.  ]])
    """
    c = np.asarray(centres, dtype=np.float64).ravel()
    x = np.asarray(positions, dtype=np.float64).ravel()
    if c.size == 0:
        raise InputError("a partition of unity needs at least one centre")
    if not np.all(np.isfinite(c)) or np.any(np.diff(c) <= 0):
        raise InputError(f"region centres must be finite and strictly increasing, got {c}")
    w = np.zeros((c.size, x.size))
    if c.size == 1:
        w[0] = 1.0
        return w
    xc = np.clip(x, c[0], c[-1])
    k = np.clip(np.searchsorted(c, xc, side="right") - 1, 0, c.size - 2)
    t = (xc - c[k]) / (c[k + 1] - c[k])
    cols = np.arange(x.size)
    w[k, cols] = 1.0 - t
    w[k + 1, cols] += t
    return w


def region_weight(axis_weights: Sequence[np.ndarray], index: Sequence[int]) -> np.ndarray:
    """The weight of region ``index`` on a 3D grid: the outer product of its axis weights.

    Parameters
    ----------
    axis_weights : 3 arrays
        :func:`hat_weights` per axis, shapes ``(N_a, n_a)``.
    index : 3 ints
        The region's position in the grid.

    Returns
    -------
    ndarray, shape ``(n_0, n_1, n_2)``
    """
    a, b, c = (np.asarray(w)[i] for w, i in zip(axis_weights, index, strict=True))
    return a[:, None, None] * b[None, :, None] * c[None, None, :]
