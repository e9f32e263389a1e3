r"""Parzen-window mutual information, piece by piece: public helpers for similarities.

The core ``mi`` (:class:`boneframe.similarity.mi.MutualInformation`) is built from
these pieces, and a lab's own MI-based similarity (e.g. the ``local-mi`` plugin)
should reuse them rather than copy them:

* where samples sit on the bin grid: :class:`GreyStatistics` (``g`` binned over
  its range, ``u`` placed by matching its mean and standard deviation to
  ``g``'s), :func:`moments`, :func:`bin_coordinates`, and the chain rule of that
  placement, :func:`chain_moments`;
* the Parzen window and its spline version: :func:`parzen_window`,
  :func:`node_window`, :func:`node_matrix`;
* from a joint histogram to MI and the table of its derivative:
  :func:`information`, :func:`splat_step_table`, :func:`splat_lookup`;
* the whole estimate, fast (:func:`mi_splat`, samples splatted with quadratic
  B-spline weights) or literal (:func:`mi_exact`, :func:`exact_histogram`,
  :func:`exact_gradient`, :math:`O(N B^2)`, a reference).

The maths is in the Notes of :class:`~boneframe.similarity.mi.MutualInformation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from boneframe.errors import InputError

# boneframe.similarity.spline_splat is imported where it is used: importing the
# package boneframe.similarity here would import its mi.py, which imports this
# module, so `import boneframe.parzen` (or a plugin built on it) first would fail.

__all__ = [
    "GreyStatistics",
    "bin_coordinates",
    "chain_moments",
    "check_range",
    "check_spread",
    "exact_gradient",
    "exact_histogram",
    "information",
    "mi_exact",
    "mi_splat",
    "moments",
    "node_matrix",
    "node_window",
    "parzen_window",
    "splat_lookup",
    "splat_step_table",
]

#: Voxels per block in the literal (weight-matrix) sums: blocks of N x B weights
#: stay near 32 MiB whatever the volume size.
EXACT_BLOCK = 1 << 22


@dataclass(frozen=True)
class GreyStatistics:
    r"""Mean, standard deviation and range of ``g``: where ``u`` is placed on the bins.

    ``u`` is mapped to :math:`\tilde u = \bar g + s_g (u - \bar u) / s_u` (the
    same mean and standard deviation as ``g``) and both are binned over
    ``[min g, max g]``: smooth in ``u``, unlike binning ``u`` by its own extremes
    (one voxel would set everyone's scale, with a kink wherever another takes
    over). A blocked volume computes these from sums over its blocks
    (:class:`boneframe.additive.GreyMoments`).
    """

    mean: float
    std: float
    lo: float
    hi: float

    @classmethod
    def of(cls, g: np.ndarray) -> GreyStatistics:
        """The statistics of a whole volume ``g``."""
        flat = np.asarray(g).ravel()
        lo, hi = float(flat.min()), float(flat.max())
        check_range(lo, hi, "g")
        mean, std = moments(flat, "g")
        return cls(mean, std, lo, hi)

    def place(
        self, u: np.ndarray, bins: int, u_mean: float, u_std: float
    ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Bin coordinates of ``u`` given its (global) mean and standard deviation.

        Returns the flat coordinates ``a`` (clipped to ``[0, bins - 1]``), the factor
        ``da/du`` at fixed moments, the standardised ``z = (u - mean) / std`` and the
        mask of the voxels inside the grid (the clipped ones have no gradient).
        """
        z = np.subtract(np.asarray(u).ravel(), u_mean, dtype=np.float64)
        z /= u_std
        grid = (bins - 1) / (self.hi - self.lo)
        a = z * (self.std * grid)
        a += (self.mean - self.lo) * grid
        inside = (a >= 0.0) & (a <= bins - 1)
        np.clip(a, 0.0, bins - 1, out=a)
        return a, self.slope(bins, u_std), z, inside

    def slope(self, bins: int, u_std: float) -> float:
        """``da/du`` at fixed moments: ``(bins - 1) s_g / ((max g - min g) s_u)``."""
        return self.std * ((bins - 1) / (self.hi - self.lo)) / u_std


def moments(x: np.ndarray, label: str) -> tuple[float, float]:
    """Mean and (population) standard deviation of ``x``; refuses NaN, inf and constants."""
    flat = np.asarray(x).ravel()
    mean = float(np.mean(flat, dtype=np.float64))
    std = float(np.std(flat, dtype=np.float64))
    check_spread(mean, std, label)
    return mean, std


def check_spread(mean: float, std: float, label: str) -> None:
    """Refuse a non-finite mean or standard deviation, or a constant volume."""
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise InputError(f"{label} contains NaN or infinite values")
    if std <= 0.0:
        raise InputError(
            f"{label} is constant ({mean:g}): mutual information needs an intensity range"
        )


def chain_moments(
    gamma: np.ndarray, z: np.ndarray, scale: float, total: float, along_z: float, n: int
) -> np.ndarray:
    r"""``dD/du`` from ``gamma = dD/da`` when ``u`` is placed by its moments.

    With :math:`a_y = \text{const} + \kappa z_y`, :math:`z = (u - \bar u)/s_u` and
    ``scale`` :math:`= \kappa / s_u`,

    .. math:: \frac{\partial D}{\partial u_x} = \frac{\kappa}{s_u}\Big(\gamma_x
        - \frac{1}{N}\sum_y \gamma_y - \frac{z_x}{N} \sum_y \gamma_y z_y\Big),

    ``total`` and ``along_z`` being the two sums (global ones for a block of a
    chunked volume); ``gamma`` is zero on clipped voxels.
    """
    out = gamma - total / n
    out -= z * (along_z / n)
    out *= scale
    return out


def bin_coordinates(x: np.ndarray, bins: int, lo: float, hi: float) -> tuple[np.ndarray, float]:
    """Map ``x`` affinely onto ``[0, bins - 1]`` by the range ``[lo, hi]``.

    Returns the flat float64 coordinates (clipped to the grid) and the factor
    ``(bins - 1) / (hi - lo)``. A block of a chunked volume passes the global range.
    """
    scale = (bins - 1) / (hi - lo)
    a = np.subtract(np.asarray(x).ravel(), lo, dtype=np.float64)
    a *= scale
    # Rounding may leave the maximum a hair above B - 1; the grid ends there.
    np.clip(a, 0.0, bins - 1, out=a)
    return a, scale


def check_range(lo: float, hi: float, label: str) -> None:
    """Refuse a non-finite or empty intensity range."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{label} contains NaN or infinite values")
    if hi <= lo:
        raise InputError(
            f"{label} is constant ({lo:g}): mutual information needs an intensity range"
        )


def parzen_window(t: np.ndarray, beta: float) -> np.ndarray:
    r"""The Gaussian Parzen window :math:`\varphi(t) = e^{-t^2/\beta^2}` (``t`` in bins)."""
    return np.exp(-((np.asarray(t, dtype=np.float64) / beta) ** 2))


def node_window(t: np.ndarray, beta: float, s: int) -> np.ndarray:
    r"""Node values whose quadratic B-spline interpolant on a grid of step ``1/s``
    best matches φ.

    A quadratic B-spline with node values :math:`\varphi(\tau_k)` overestimates a
    smooth function by :math:`\varphi'' h^2 / 8` (half the spline's variance
    :math:`h^2 / 4`, at every position, not only on average); subtracting that from
    the samples removes that bias; what is left varies with the position as
    :math:`O(h^3)` and averages out over positions (clipped at 0 so the window
    stays non-negative).
    """
    phi = parzen_window(t, beta)
    curvature = (4.0 * t**2 / beta**4 - 2.0 / beta**2) * phi
    return np.maximum(phi - curvature / (8.0 * s * s), 0.0)


def information(q: np.ndarray) -> tuple[Any, np.ndarray, Any]:
    """MI of an unnormalised joint histogram ``q``, the table ``L - MI`` and ``Z``.

    ``q`` has shape ``(..., B, B)``: leading axes hold independent histograms (the
    windows of a local MI), each normalised on its own; for one ``B x B``
    histogram, ``MI`` and ``Z`` are floats.
    """
    q = np.asarray(q, dtype=np.float64)
    z = q.sum(axis=(-2, -1))
    p = q / z[..., None, None]
    outer = p.sum(axis=-1)[..., :, None] * p.sum(axis=-2)[..., None, :]
    pos = p > 0
    # Underflowed cells carry no mass and (to the same precision) no gradient.
    log_ratio = np.zeros_like(p)
    log_ratio[pos] = np.log(p[pos] / outer[pos])
    mi = np.sum(p * log_ratio, axis=(-2, -1))
    centred = log_ratio - mi[..., None, None]
    if q.ndim == 2:
        return float(mi), centred, float(z)
    return mi, centred, z


@lru_cache(maxsize=8)
def node_matrix(bins: int, beta: float, s: int) -> np.ndarray:
    """``Phi[i, k] = c((k - 1)/s - i)``, read-only (shared between calls).

    Node ``k`` sits at bin coordinate ``(k - 1)/s``: one spare node at each end, so
    that the three nodes around every coordinate in ``[0, bins - 1]`` exist.
    """
    nodes = s * (bins - 1) + 3
    tau = (np.arange(nodes) - 1.0) / s
    phi = node_window(tau[None, :] - np.arange(bins)[:, None], beta, s)
    phi.flags.writeable = False
    return phi


def splat_step_table(phi: np.ndarray, centred: np.ndarray) -> np.ndarray:
    r"""The two derivative tables of :math:`T = \Phi^\top (L - \mathrm{MI}) \Phi`.

    Along ``a`` the spline's derivative weights are :math:`(d - 1/2, -2d, d + 1/2)`,
    so :math:`\sum_i w'_i T_{r+i} = d\,(T_r - 2T_{r+1} + T_{r+2})
    + (T_{r+2} - T_r)/2`: both returned stacked, ``(2, nodes - 2, nodes)``.
    """
    side = centred @ phi
    curve = (phi[:, :-2] - 2.0 * phi[:, 1:-1] + phi[:, 2:]).T @ side
    slope = (0.5 * (phi[:, 2:] - phi[:, :-2])).T @ side
    return np.stack([curve, slope])


def splat_lookup(tables: np.ndarray, a: np.ndarray, b: np.ndarray, s: int, z: float) -> np.ndarray:
    """``dMI/da`` per voxel: the two tables read at the voxel's nodes."""
    from boneframe.similarity import spline_splat

    out = spline_splat.gradient(a, b, s, tables[0], tables[1])
    out *= s / z
    return out


def mi_splat(
    a: np.ndarray, b: np.ndarray, bins: int, beta: float, s: int, gradient: bool
) -> tuple[float, np.ndarray | None]:
    """MI and ``dMI/da`` with spline-splatted samples (see the class Notes)."""
    from boneframe.similarity import spline_splat

    phi = node_matrix(bins, beta, s)
    hist = spline_splat.histogram(a, b, s, phi.shape[1])
    mi, centred, z = information(phi @ hist @ phi.T)
    if not gradient:
        return mi, None
    return mi, splat_lookup(splat_step_table(phi, centred), a, b, s, z)


def exact_histogram(a: np.ndarray, b: np.ndarray, bins: int, beta: float) -> np.ndarray:
    """The literal Parzen sums ``Q``, with N x B weight matrices in blocks."""
    centres = np.arange(bins, dtype=np.float64)
    step = max(1, EXACT_BLOCK // bins)
    q = np.zeros((bins, bins))
    for start in range(0, a.size, step):
        block = slice(start, start + step)
        wa = parzen_window(a[block, None] - centres, beta)
        wb = parzen_window(b[block, None] - centres, beta)
        q += wa.T @ wb
    return q


def exact_gradient(
    a: np.ndarray, b: np.ndarray, centred: np.ndarray, z: float, bins: int, beta: float
) -> np.ndarray:
    """``dMI/da`` from the literal sums, given the table ``L - MI`` and ``Z``."""
    centres = np.arange(bins, dtype=np.float64)
    step = max(1, EXACT_BLOCK // bins)
    out = np.empty_like(a)
    for start in range(0, a.size, step):
        block = slice(start, start + step)
        da = a[block, None] - centres
        wa = parzen_window(da, beta)
        dwa = (-2.0 / beta**2) * da * wa
        wb = parzen_window(b[block, None] - centres, beta)
        out[block] = np.einsum("xi,xi->x", dwa, wb @ centred.T) / z
    return out


def mi_exact(
    a: np.ndarray, b: np.ndarray, bins: int, beta: float, gradient: bool
) -> tuple[float, np.ndarray | None]:
    """MI and ``dMI/da`` from the literal Parzen sums, with N x B weight matrices in blocks."""
    mi, centred, z = information(exact_histogram(a, b, bins, beta))
    if not gradient:
        return mi, None
    return mi, exact_gradient(a, b, centred, z, bins, beta)
