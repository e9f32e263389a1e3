r"""Negative mutual information with Gaussian Parzen windows (paper §2.3, eqs. 4–12).

The joint histogram is estimated by splatting every voxel's intensity pair onto a
fine grid and smoothing that grid with the Parzen window, so that a value and its
gradient cost :math:`O(N)` plus a small, ``N``-independent matrix product,
instead of the literal :math:`O(N B^2)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from boneframe.errors import InputError
from boneframe.interfaces import Similarity
from boneframe.similarity import spline_splat

Method = Literal["splat", "exact"]
Placement = Literal["moments", "extremes"]

#: Voxels per block in the exact (weight-matrix) mode: blocks of N x B weights
#: stay near 32 MiB whatever the volume size.
_EXACT_BLOCK = 1 << 22


class MutualInformationParams(BaseModel):
    """Parameters of :class:`MutualInformation`."""

    model_config = ConfigDict(extra="forbid")
    bins: int = Field(
        128,
        ge=4,
        le=512,  # the fine grid holds (oversampling * B)^2 cells
        description=(
            "Number of intensity bins B for each of u and g; the range [min, max] of "
            "each volume is mapped onto bin centres 0 ... B-1."
        ),
    )
    parzen_width: float = Field(
        1.5,
        gt=0,
        le=64,
        description=(
            "Width beta of the Gaussian Parzen window exp(-t^2/beta^2), in bins "
            "(its standard deviation is beta/sqrt(2))."
        ),
    )
    method: Method = Field(
        "splat",
        description=(
            "'splat': O(N) estimator (samples splatted onto a fine grid with quadratic "
            "B-spline weights, then smoothed); 'exact': the literal Parzen sums, "
            "O(N B^2) (reference)."
        ),
    )
    placement: Placement = Field(
        "moments",
        description=(
            "How u is placed on the bins. 'moments': u is matched to the mean and "
            "standard deviation of g and both are binned over g's range (smooth in u, so "
            "kernel estimates converge to a reproducible minimum); 'extremes': u's own "
            "[min, max] (a kink wherever another voxel becomes the extreme)."
        ),
    )
    oversampling: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Fine-grid nodes per bin for 'splat' (the window is a quadratic B-spline "
            "through node values): at the defaults the value is within ~1e-7 of the "
            "literal Gaussian sums and the gradient within ~0.2 %, an error falling as "
            "1/oversampling^2."
        ),
    )


class MutualInformation(Similarity):
    r"""Negative mutual information ``-MI(u, g)`` with Gaussian Parzen windows.

    Parameters
    ----------
    params : MutualInformationParams, mapping or None
        ``bins`` (B), ``parzen_width`` (:math:`\beta`, in bins), ``method`` and
        ``oversampling``; see :class:`MutualInformationParams`.

    Notes
    -----
    **Bin coordinates.** ``g`` is mapped affinely onto the bin grid by its range,
    :math:`b_x = (B - 1)(g_x - \min g) / (\max g - \min g)`. ``u`` is placed in
    one of two ways (``placement``):

    * ``"moments"`` (default): ``u`` is matched to the mean and standard deviation
      of ``g`` and binned over the range of ``g``,

      .. math::

          a_x = \mathrm{clip}_{[0, B-1]}\Big((B - 1)
              \frac{\bar g + s_g z_x - \min g}{\max g - \min g}\Big), \qquad
          z_x = \frac{u_x - \bar u}{s_u},

      (population standard deviations); voxels clipped to the grid ends have no
      slope of their own. With :math:`\gamma_x = \partial D / \partial a_x` (zero
      on clipped voxels) and :math:`\kappa = (B - 1) s_g / (\max g - \min g)`,

      .. math::

          \frac{\partial D}{\partial u_x} = \frac{\kappa}{s_u}\Big(\gamma_x
          - \frac{1}{N}\sum_y \gamma_y - \frac{z_x}{N}\sum_y \gamma_y z_y\Big)

      (:func:`chain_moments`): smooth in ``u``, and the sums split over the blocks
      of a chunked volume.
    * ``"extremes"``: ``u`` by its own range,
      :math:`a_x = (B - 1)(u_x - \min u)/(\max u - \min u)`, with

      .. math::

          \frac{\partial D}{\partial u_x} = \frac{B - 1}{\max u - \min u}
          \Big(\gamma_x - [x = x_{\min}] \sum_y \gamma_y (1 - t_y)
          - [x = x_{\max}] \sum_y \gamma_y t_y\Big), \quad t_y = \frac{a_y}{B - 1},

      exact wherever the minimum and maximum are each reached by one voxel.

    Either way the loss is *exactly* invariant to :math:`u \mapsto s u + t`
    (:math:`s > 0`): ``scale_sensitive`` is ``False``, the derivative with respect
    to the offset ``c`` vanishes (:math:`\sum_x \partial D / \partial u_x = 0`) and
    neither ``c`` nor the kernel's gain can be estimated with this loss (fix
    :math:`\sum h = 1`). A range fixed once instead would let the optimiser raise MI
    spuriously by stretching ``u`` (more bins per grey level means relatively less
    Parzen blur).

    *Why moments by default.* With ``"extremes"`` one voxel sets the scale of all
    the others, so the loss has a kink wherever another voxel becomes the minimum
    or maximum, and the optimiser is drawn to such kinks (it gains by pulling the
    extreme voxel in until it ties with the next one). Gradient descent on a
    kernel then stalls there: on ``simulate_pair(48, hr_noise=0.01)`` it stopped
    with three voxels tied at the minimum of ``u`` (to 1e-13 of the range), the
    Barzilai–Borwein step collapsed to 1e-14, and a 1e-9 relative change of ``f``
    moved the estimate by 5 %. With ``"moments"`` and the quadratic splat below
    (whose gradient is continuous) the same runs converge, and a 1e-9 change of
    ``f`` moves the converged estimate by 2e-7 (48³) to 7e-7 (64³), which is the
    stopping tolerance of gradient descent; with the former linear splat (a kink
    wherever a voxel crossed a fine-grid cell) it moved it by 3e-5 to 7e-5.

    **Parzen estimate** (paper eq. 4 and the Parzen sum after it):

    .. math::

        Q_{ij} = \sum_x \varphi(a_x - i)\,\varphi(b_x - j), \quad
        \varphi(t) = e^{-t^2/\beta^2}, \quad
        P = \frac{Q}{Z}, \quad Z = \sum_{ij} Q_{ij},

    for :math:`i, j = 0 \dots B-1`, with marginals :math:`P^u_i = \sum_j P_{ij}`,
    :math:`P^g_j = \sum_i P_{ij}` and

    .. math::

        D(u, g) = -\mathrm{MI} = -\sum_{ij} P_{ij} L_{ij}, \qquad
        L_{ij} = \log \frac{P_{ij}}{P^u_i P^g_j}.

    Because :math:`\sum_{ij} dP_{ij} = 0`, :math:`d\,\mathrm{MI} = \sum_{ij} L_{ij}
    dP_{ij} = Z^{-1} \sum_{ij} (L_{ij} - \mathrm{MI})\, dQ_{ij}`, hence
    (paper eq. 8–10)

    .. math::

        \gamma_x = -\frac{1}{Z} \sum_{ij} \varphi'(a_x - i)\, \varphi(b_x - j)\,
        (L_{ij} - \mathrm{MI}):

    a function of the pair :math:`(a_x, b_x)` alone, namely
    :math:`(L - \mathrm{MI})` smoothed with :math:`\varphi' \otimes \varphi`.

    **Fast estimator** (``method="splat"``). With :math:`S` fine-grid nodes per bin
    (``oversampling``), nodes :math:`\tau_k = (k - 1)/S` (one spare node at each
    end) and the quadratic B-spline :math:`\beta_2`, the window is replaced by the
    interpolant :math:`\hat\varphi(a - i) = \sum_k \beta_2(S a + 1 - k)\,
    c(\tau_k - i)` of node values :math:`c = \max(\varphi - \varphi'' / (8 S^2), 0)`:
    the spline overestimates a smooth function by :math:`\varphi'' / (8 S^2)` (half
    its variance :math:`1/(4S^2)` times the curvature), a bias that many voxels
    would not average out. Then

    .. math::

        Q = \Phi H \Phi^\top, \quad H_{kl} = \sum_x \beta_2(S a_x + 1 - k)\,
        \beta_2(S b_x + 1 - l), \quad \Phi_{ik} = c(\tau_k - i),

    and the exact derivative of *this* value reads
    :math:`T = \Phi^\top (L - \mathrm{MI}) \Phi` at the voxel's three by three nodes:
    with :math:`r_x` the integer nearest :math:`S a_x`, :math:`d_x = S a_x - r_x`
    and the spline's derivative weights :math:`(d - \tfrac12, -2d, d + \tfrac12)`,

    .. math::

        \gamma_x = -\frac{S}{Z} \sum_{j=0}^{2} \beta_2(S b_x + 1 - l_x - j)
        \Big(d_x \big(T_{r, l_x + j} - 2T_{r+1, l_x + j} + T_{r+2, l_x + j}\big)
        + \tfrac12\big(T_{r+2, l_x + j} - T_{r, l_x + j}\big)\Big)

    (:math:`l_x` the first node along ``b``; the two differences of :math:`T` are
    tabulated once). The spline is :math:`C^1`, so the value is continuously
    differentiable in ``u`` and its minimiser over a kernel is a smooth function of
    the data: a chunked volume, whose sums differ from the in-memory ones by
    rounding, converges to the same kernel. (A linear splat, two nodes per axis,
    costs half as much but has a kink wherever a voxel crosses a fine-grid cell;
    gradient descent then stopped at points 3e-5 apart for data 1e-9 apart.)

    Splatting :math:`H` is one compiled pass over the voxels (nine adds each) and
    :math:`\gamma` another (six table reads each; :mod:`~boneframe.similarity.spline_splat`),
    and the smoothing products with the
    :math:`B \times (S(B-1) + 3)` matrix :math:`\Phi`: :math:`O(N + S^2 B^3)` time
    and :math:`O(N + S^2 B^2)` memory, never :math:`N \times B`. The value is exact
    for :math:`\hat\varphi`; on ``simulate_pair(48)`` at the defaults it is within
    5e-8 (relative) of the literal Gaussian sums and the gradient within 0.12 %
    (relative :math:`\ell_2`; 0.03 % at :math:`S = 4`, 0.007 % at 8: the error falls
    as :math:`1/S^2`), while agreeing with finite differences of the value computed.
    ``method="exact"`` evaluates the literal sums with :math:`N \times B` weight
    matrices, block by block (:math:`O(N B^2)`, a reference).

    **Defaults** ``bins=128, parzen_width=1.5`` (window standard deviation 1.06
    bins, 0.8 % of the grey range) were measured, with the extremes placement and
    before it stopped being the default (not re-measured since), on ``simulate_pair(64,
    noise=0.01)`` (``benchmarks/bench_mi.py --defaults``). What matters is the
    window's width relative to the range, :math:`\beta / B`: the minimum of
    :math:`-\mathrm{MI}` over Gaussian kernels of scaled width moves below the true
    width as it grows (by 0.7, 2.0, 5.7 % at :math:`\beta/B` = 0.047, 0.063,
    0.094) and its relative depth shrinks (0.46 at 128/1.5, 0.40 at 64/1.5, 0.37 at
    32/1); 3-parameter width fits are within 0.1–0.3 % for
    :math:`\beta/B \le 0.025`. Estimating a free 9³ kernel (L-BFGS, no
    regulariser, seeds 0 / 1, ``--free-kernel``) separates them: relative kernel
    error 7.8–8.6 / 8.8 % at 128/1.5, 8.5 % at 128/1, 11.1 / 11.1 % at 64/1.5,
    10.8 % at 64/1, 15.0 % at 64/2, 11.8 / 12.3 % at 32/1, 14.2 % at 32/1.5 (the
    spread at 128/1.5 is oversampling 8 vs 4; these used the former linear splat).
    ``oversampling=2`` keeps the fine grid at 257 nodes per axis, with the
    quadratic splat already 40 times closer to the Gaussian than the linear splat
    was at 4.

    **Monotone grey-level maps.** MI is invariant to an invertible map of ``g``;
    the Parzen estimate is exactly invariant to affine maps (through the range
    normalisation) and only approximately to curved ones: a map that compresses
    part of the grey range squeezes it into fewer bins, where the window blurs
    relatively more. On the phantom, :math:`\sqrt{g}`, :math:`\log(g + 0.05)` and
    :math:`g^2` (``g`` rescaled to [0, 1]) change the value by 0.6, 1.4 and 14 %,
    and move its minimiser over the kernel width by 0.2 % at most, while they
    multiply L2 by 150–2000 and move its minimiser far off (``tests/test_mi.py``).

    References
    ----------
    .. [1] Paper §2.3, eqs. (3)–(12).
    .. [2] P. Viola and W. M. Wells III, "Alignment by maximization of mutual
       information", Int. J. Comput. Vis. 24(2):137–154, 1997.
    .. [3] G. Hermosillo, C. Chefd'Hotel and O. Faugeras, "Variational methods for
       multimodal image matching", Int. J. Comput. Vis. 50(3):329–343, 2002.
    .. [4] P. Thévenaz and M. Unser, "Optimization of mutual information for
       multiresolution image registration", IEEE Trans. Image Process.
       9(12):2083–2099, 2000 (B-spline Parzen windows and splatting).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = rng.random((8, 8, 8))
    >>> mi = MutualInformation(bins=16, parzen_width=1.0)
    >>> mi(g**2, g) < mi(rng.random(g.shape), g)
    True
    """

    name: ClassVar[str] = "mi"
    description: ClassVar[str] = "-mutual information with Gaussian Parzen windows"
    Params: ClassVar[type[BaseModel]] = MutualInformationParams
    quadratic: ClassVar[bool] = False
    scale_sensitive: ClassVar[bool] = False

    def __call__(self, u: np.ndarray, g: np.ndarray) -> float:
        return self._evaluate(u, g, gradient=False)[0]

    def grad(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._evaluate(u, g, gradient=True)[1]  # type: ignore[return-value]

    def value_and_grad(self, u: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = self._evaluate(u, g, gradient=True)
        return value, grad  # type: ignore[return-value]

    # -- the steps, callable one by one (chunked volumes sum the histograms) ------
    def joint_histogram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The additive part of the Parzen estimate for bin coordinates ``a``, ``b``.

        ``"splat"``: the fine-grid histogram ``H`` (``(S(B-1)+3)^2``); ``"exact"``:
        ``Q`` itself (``B x B``). Either is a sum over voxels, so the histogram of a
        volume is the sum of its blocks' histograms (with ``a`` and ``b`` from the
        global ranges, :func:`bin_coordinates`).
        """
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        nb = self.params.bins
        if self.params.method == "exact":
            return _exact_histogram(a, b, nb, self.params.parzen_width)
        nodes = _node_matrix(nb, self.params.parzen_width, self.params.oversampling).shape[1]
        return spline_splat.histogram(a, b, self.params.oversampling, nodes)

    def gradient_table(self, hist: np.ndarray) -> tuple[float, np.ndarray, float]:
        """``MI``, the look-up table of ``dMI/da`` and the normaliser ``Z`` from a
        (summed) :meth:`joint_histogram`."""
        nb, beta = self.params.bins, self.params.parzen_width
        if self.params.method == "exact":
            return _information(hist)
        phi = _node_matrix(nb, beta, self.params.oversampling)
        mi, centred, z = _information(phi @ hist @ phi.T)
        return mi, _splat_step_table(phi, centred), z

    def coordinate_gradient(
        self, a: np.ndarray, b: np.ndarray, table: np.ndarray, z: float
    ) -> np.ndarray:
        """``dMI/da`` per voxel (flat) from the global :meth:`gradient_table`.

        The derivative with respect to ``u`` follows from the range normalisation
        (class Notes): ``dD/du = -(B-1)/(max u - min u) dMI/da`` plus the terms of
        the two extreme voxels.
        """
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        nb, beta = self.params.bins, self.params.parzen_width
        if self.params.method == "exact":
            return _exact_gradient(a, b, table, z, nb, beta)
        return _splat_lookup(table, a, b, self.params.oversampling, z)

    def _evaluate(
        self, u: np.ndarray, g: np.ndarray, gradient: bool
    ) -> tuple[float, np.ndarray | None]:
        u = np.asarray(u)
        g = np.asarray(g)
        if u.shape != g.shape:
            raise InputError(f"u and g must have the same shape, got {u.shape} and {g.shape}")
        if u.size < 2:
            raise InputError("mutual information needs at least two voxels")
        nb = self.params.bins
        if self.params.placement == "extremes":
            a, scale, extremes = _bin_coordinates(u, nb, "u")
            b = _bin_coordinates(g, nb, "g")[0]
        else:
            grey = GreyStatistics.of(g)
            b = bin_coordinates(g, nb, grey.lo, grey.hi)[0]
            u_mean, u_std = moments(u, "u")
            a, scale, z, inside = grey.place(u, nb, u_mean, u_std)
        mi, dmi = self._information_and_slope(a, b, gradient)
        if dmi is None:
            return -mi, None
        if self.params.placement == "extremes":
            return -mi, _chain_range(-dmi, a, nb, scale, extremes).reshape(u.shape)
        gamma = np.negative(dmi, out=dmi)
        gamma[~inside] = 0.0
        out = chain_moments(gamma, z, scale, float(gamma.sum()), float(np.dot(gamma, z)), u.size)
        return -mi, out.reshape(u.shape)

    def _information_and_slope(
        self, a: np.ndarray, b: np.ndarray, gradient: bool
    ) -> tuple[float, np.ndarray | None]:
        nb, beta = self.params.bins, self.params.parzen_width
        if self.params.method == "exact":
            return _mi_exact(a, b, nb, beta, gradient)
        return _mi_splat(a, b, nb, beta, self.params.oversampling, gradient)


@dataclass(frozen=True)
class GreyStatistics:
    """Mean, standard deviation and range of ``g``: where ``u`` is placed on the bins.

    With ``placement="moments"``, ``u`` is mapped to
    :math:`\tilde u = \bar g + s_g (u - \bar u) / s_u` (same mean and standard
    deviation as ``g``) and both are binned over ``[min g, max g]``; a chunked volume
    computes these from sums over its blocks.
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


def _bin_coordinates(
    x: np.ndarray, bins: int, label: str
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Map ``x`` affinely onto ``[0, bins - 1]`` by its range.

    Returns the flat float64 coordinates, the factor ``(bins - 1) / (max x - min x)``
    and the flat indices of the (first) minimum and maximum.
    """
    flat = np.asarray(x).ravel()
    i_min, i_max = int(np.argmin(flat)), int(np.argmax(flat))
    lo, hi = float(flat[i_min]), float(flat[i_max])
    check_range(lo, hi, label)
    a, scale = bin_coordinates(flat, bins, lo, hi)
    return a, scale, (i_min, i_max)


def _chain_range(
    gamma: np.ndarray, a: np.ndarray, bins: int, scale: float, extremes: tuple[int, int]
) -> np.ndarray:
    """Gradient w.r.t. u from ``gamma = dD/da``, including the range's dependence on u."""
    # The extreme voxels sit at a = 0 and a = B - 1 whatever their value; moving
    # them rescales every other coordinate instead.
    total = float(gamma.sum())
    upper = float(np.dot(gamma, a)) / (bins - 1)
    out = gamma * scale
    out[extremes[0]] -= scale * (total - upper)
    out[extremes[1]] -= scale * upper
    return out


def parzen_window(t: np.ndarray, beta: float) -> np.ndarray:
    r"""The Gaussian Parzen window :math:`\varphi(t) = e^{-t^2/\beta^2}` (``t`` in bins)."""
    return np.exp(-((np.asarray(t, dtype=np.float64) / beta) ** 2))


def _node_window(t: np.ndarray, beta: float, s: int) -> np.ndarray:
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


def _information(q: np.ndarray) -> tuple[float, np.ndarray, float]:
    """MI of the unnormalised joint histogram ``q``, the table ``L - MI`` and ``Z``."""
    z = float(q.sum())
    p = q / z
    pu = p.sum(axis=1)
    pg = p.sum(axis=0)
    pos = p > 0
    # Underflowed cells carry no mass and (to the same precision) no gradient.
    log_ratio = np.zeros_like(p)
    log_ratio[pos] = np.log(p[pos] / np.outer(pu, pg)[pos])
    mi = float(np.sum(p * log_ratio))
    return mi, log_ratio - mi, z


@lru_cache(maxsize=8)
def _node_matrix(bins: int, beta: float, s: int) -> np.ndarray:
    """``Phi[i, k] = c((k - 1)/s - i)``, read-only (shared between calls).

    Node ``k`` sits at bin coordinate ``(k - 1)/s``: one spare node at each end, so
    that the three nodes around every coordinate in ``[0, bins - 1]`` exist.
    """
    nodes = s * (bins - 1) + 3
    tau = (np.arange(nodes) - 1.0) / s
    phi = _node_window(tau[None, :] - np.arange(bins)[:, None], beta, s)
    phi.flags.writeable = False
    return phi


def _splat_step_table(phi: np.ndarray, centred: np.ndarray) -> np.ndarray:
    r"""The two derivative tables of :math:`T = \Phi^\top (L - \mathrm{MI}) \Phi`.

    Along ``a`` the spline's derivative weights are :math:`(d - 1/2, -2d, d + 1/2)`,
    so :math:`\sum_i w'_i T_{r+i} = d\,(T_r - 2T_{r+1} + T_{r+2})
    + (T_{r+2} - T_r)/2`: both returned stacked, ``(2, nodes - 2, nodes)``.
    """
    side = centred @ phi
    curve = (phi[:, :-2] - 2.0 * phi[:, 1:-1] + phi[:, 2:]).T @ side
    slope = (0.5 * (phi[:, 2:] - phi[:, :-2])).T @ side
    return np.stack([curve, slope])


def _splat_lookup(tables: np.ndarray, a: np.ndarray, b: np.ndarray, s: int, z: float) -> np.ndarray:
    """``dMI/da`` per voxel: the two tables read at the voxel's nodes."""
    out = spline_splat.gradient(a, b, s, tables[0], tables[1])
    out *= s / z
    return out


def _mi_splat(
    a: np.ndarray, b: np.ndarray, bins: int, beta: float, s: int, gradient: bool
) -> tuple[float, np.ndarray | None]:
    """MI and ``dMI/da`` with spline-splatted samples (see the class Notes)."""
    phi = _node_matrix(bins, beta, s)
    hist = spline_splat.histogram(a, b, s, phi.shape[1])
    mi, centred, z = _information(phi @ hist @ phi.T)
    if not gradient:
        return mi, None
    return mi, _splat_lookup(_splat_step_table(phi, centred), a, b, s, z)


def _exact_histogram(a: np.ndarray, b: np.ndarray, bins: int, beta: float) -> np.ndarray:
    """The literal Parzen sums ``Q``, with N x B weight matrices in blocks."""
    centres = np.arange(bins, dtype=np.float64)
    step = max(1, _EXACT_BLOCK // bins)
    q = np.zeros((bins, bins))
    for start in range(0, a.size, step):
        block = slice(start, start + step)
        wa = parzen_window(a[block, None] - centres, beta)
        wb = parzen_window(b[block, None] - centres, beta)
        q += wa.T @ wb
    return q


def _exact_gradient(
    a: np.ndarray, b: np.ndarray, centred: np.ndarray, z: float, bins: int, beta: float
) -> np.ndarray:
    """``dMI/da`` from the literal sums, given the table ``L - MI`` and ``Z``."""
    centres = np.arange(bins, dtype=np.float64)
    step = max(1, _EXACT_BLOCK // bins)
    out = np.empty_like(a)
    for start in range(0, a.size, step):
        block = slice(start, start + step)
        da = a[block, None] - centres
        wa = parzen_window(da, beta)
        dwa = (-2.0 / beta**2) * da * wa
        wb = parzen_window(b[block, None] - centres, beta)
        out[block] = np.einsum("xi,xi->x", dwa, wb @ centred.T) / z
    return out


def _mi_exact(
    a: np.ndarray, b: np.ndarray, bins: int, beta: float, gradient: bool
) -> tuple[float, np.ndarray | None]:
    """MI and ``dMI/da`` from the literal Parzen sums, with N x B weight matrices in blocks."""
    mi, centred, z = _information(_exact_histogram(a, b, bins, beta))
    if not gradient:
        return mi, None
    return mi, _exact_gradient(a, b, centred, z, bins, beta)
