r"""Local mutual information (Hermosillo, Chefd'Hotel & Faugeras 2002) as a boneframe
:class:`~boneframe.interfaces.Similarity`.

Mutual information of a pair of volumes measured in Gaussian-weighted windows and
averaged over the field of view: the loss is insensitive to grey-level relations
between ``u`` and ``g`` that drift slowly across the volume (a gain field, beam
hardening, a slow shading), which a single global joint histogram smears out.
"""

from __future__ import annotations

import math
from typing import ClassVar, cast

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from boneframe.errors import InputError
from boneframe.interfaces import Similarity
from boneframe.parzen import (
    GreyStatistics,
    bin_coordinates,
    chain_moments,
    information,
    moments,
)

#: Parzen weights below this are skipped (relative to the peak 1): far below
#: float64 rounding of the sums they would enter.
PARZEN_CUT = 1e-18


class LocalMutualInformationParams(BaseModel):
    """Parameters of :class:`LocalMutualInformation`."""

    model_config = ConfigDict(extra="forbid")
    bins: int = Field(
        32,
        ge=4,
        le=256,
        description=(
            "Number of intensity bins B for each of u and g, as in the core 'mi' and "
            "shared by all windows: g's GLOBAL range [min, max] is mapped onto bin "
            "centres 0 ... B-1, and u is matched to g's global mean and standard "
            "deviation and binned over the same range (clipped to the grid ends)."
        ),
    )
    parzen_width: float = Field(
        1.0,
        gt=0,
        le=64,
        description=(
            "Width beta of the Gaussian Parzen window exp(-t^2/beta^2), in bins "
            "(its standard deviation is beta/sqrt(2)); as the core 'mi'."
        ),
    )
    window: float | None = Field(
        4.0,
        gt=0,
        description=(
            "Standard deviation of the Gaussian spatial window, in voxels of u "
            "(low-resolution voxels in kernel estimation); null or .inf: one window "
            "covering the whole volume (then local-mi equals the global mi)."
        ),
    )
    spacing: float | None = Field(
        None,
        gt=0,
        description=(
            "Distance between window centres, in voxels (centres on a regular grid "
            "spanning each axis, ends included); null: equal to window."
        ),
    )
    truncate: float = Field(
        3.0,
        ge=1.0,
        le=10.0,
        description="The spatial window is cut to zero beyond truncate * window voxels.",
    )

    @field_validator("window")
    @classmethod
    def _infinite_is_global(cls, v: float | None) -> float | None:
        if v is None or math.isinf(v):
            return None
        if not math.isfinite(v):
            raise ValueError("window must be a positive number, null or inf")
        return v

    @field_validator("spacing")
    @classmethod
    def _finite_spacing(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("spacing must be a finite positive number or null")
        return v

    @model_validator(mode="after")
    def _spacing_needs_window(self) -> LocalMutualInformationParams:
        if self.spacing is not None and self.window is None:
            raise ValueError("spacing is meaningless for a whole-volume window (window: null)")
        return self


class LocalMutualInformation(Similarity):
    r"""Negative local mutual information ``-LMI(u, g)`` with Gaussian windows.

    Parameters
    ----------
    params : LocalMutualInformationParams, mapping or None
        ``bins`` (:math:`B`), ``parzen_width`` (:math:`\beta`, bins), ``window``
        (:math:`\sigma`, voxels), ``spacing`` (:math:`s`, voxels) and ``truncate``
        (:math:`\tau`); see :class:`LocalMutualInformationParams`.

    Notes
    -----
    **Bin coordinates** are global and placed exactly as in the core ``mi``
    (:class:`~boneframe.parzen.GreyStatistics`): ``g`` is binned by its
    range over the whole volume, and ``u`` is matched to the mean and standard
    deviation of ``g`` and binned over the same range,

    .. math::

        a_x = \mathrm{clip}_{[0, B-1]}\Big((B - 1)
            \frac{\bar g + s_g z_x - g_{\min}}{g_{\max} - g_{\min}}\Big), \qquad
        z_x = \frac{u_x - \bar u}{s_u}, \qquad
        b_x = (B - 1)\frac{g_x - g_{\min}}{g_{\max} - g_{\min}},

    with means, (population) standard deviations and extremes over the whole
    volume, shared by all windows. The loss is smooth in ``u`` (binning ``u`` by
    its own extremes, as this plugin did before, leaves a kink wherever another
    voxel becomes the minimum or maximum, where gradient descent stalls; see the
    core ``mi``'s Notes), exactly invariant to :math:`u \mapsto \lambda u + t`
    (:math:`\lambda > 0`), and ``scale_sensitive`` is ``False`` (kernels are kept
    unit-sum in kernel estimation). Voxels of ``u`` clipped to the grid ends have
    no slope of their own.

    **Windows.** Hermosillo et al. [1]_ define MI at every point :math:`y` from
    joint densities weighted by a Gaussian :math:`G_\sigma(x - y)` and integrate it
    over :math:`y`. We discretise :math:`y` on a grid of centres :math:`y_k`:
    along an axis of :math:`n` voxels, :math:`m = \lceil (n-1)/s \rceil + 1`
    centres evenly spread over :math:`[0, n-1]` (spacing at most :math:`s`,
    default :math:`s = \sigma`), and weights

    .. math::

        w_k(x) = \prod_{d=1}^{3} \omega\big(x_d - y_{k,d}\big), \qquad
        \omega(t) = e^{-t^2 / (2\sigma^2)}\,[\,|t| \le \tau\sigma\,],

    separable, which is what makes the histograms cheap (below). Each window has
    the Parzen joint histogram

    .. math::

        Q^k_{ij} = \sum_x w_k(x)\, \varphi(a_x - i)\, \varphi(b_x - j), \quad
        \varphi(t) = e^{-t^2/\beta^2}, \quad P^k = Q^k / Z_k, \quad
        Z_k = \textstyle\sum_{ij} Q^k_{ij},

    and :math:`\mathrm{MI}_k = \sum_{ij} P^k_{ij} L^k_{ij}`,
    :math:`L^k_{ij} = \log\big(P^k_{ij} / (P^{k,u}_i P^{k,g}_j)\big)` (marginals
    of :math:`P^k`). The windows are averaged with weights proportional to their
    spatial mass :math:`M_k = \sum_x w_k(x)` (windows cut by the border count less;
    :math:`M_k` does not depend on ``u``):

    .. math::

        D(u, g) = -\mathrm{LMI} = -\sum_k \pi_k \mathrm{MI}_k, \qquad
        \pi_k = M_k / \textstyle\sum_l M_l.

    With ``window = None`` there is one window, :math:`w \equiv 1`, and :math:`D`
    is the core ``mi``'s literal (``method="exact"``) value.

    **Gradient.** As :math:`\sum_{ij} dP^k_{ij} = 0`, :math:`d\mathrm{MI}_k =
    Z_k^{-1}\sum_{ij} (L^k_{ij} - \mathrm{MI}_k)\, dQ^k_{ij}`, hence with
    :math:`C^k = \pi_k (L^k - \mathrm{MI}_k)/Z_k`,

    .. math::

        \gamma_x = \frac{\partial D}{\partial a_x}
        = -\sum_{ij} \varphi'(a_x - i)\,\varphi(b_x - j)\, G_{x,ij}, \qquad
        G_{x} = \sum_k w_k(x)\, C^k.

    The placement enters as in the core ``mi``: every :math:`a_y` depends on ``u``
    through :math:`\bar u` and :math:`s_u` too; with :math:`\gamma_x` set to zero on
    clipped voxels and :math:`\kappa = (B - 1) s_g / (g_{\max} - g_{\min})`,

    .. math::

        \frac{\partial D}{\partial u_x} = \frac{\kappa}{s_u}\Big(\gamma_x
        - \frac{1}{N}\sum_y \gamma_y - \frac{z_x}{N}\sum_y \gamma_y z_y\Big)

    (:func:`~boneframe.parzen.chain_moments`): two global sums, so that
    the gradient sums to zero (offset invariance) and is orthogonal to ``z``
    (scale invariance).

    **Computation.** Parzen weights are evaluated only within
    :math:`r = \lceil \beta \sqrt{-\ln 10^{-18}} \rceil` bins of each sample (6.5
    :math:`\beta`): the weights skipped are below :math:`10^{-18}` of the peak, so the
    whole-volume case matches the core ``mi``'s literal sums to rounding. The
    window weights are separable, so the histograms are accumulated axis by axis
    (compiled with numba): along each row :math:`(x_1, x_2)` of the last axis the
    :math:`m_3` row histograms :math:`R_{k_3} = \sum_{x_3} \omega_{k_3}(x_3)\,
    \varphi(a_x - \cdot)\varphi(b_x - \cdot)^\top` (only the :math:`\le 2\tau\sigma/s + 1`
    windows that reach :math:`x_3`), then each row's tables are added into the plane's
    with :math:`\omega_{k_2}(x_2)`, and each plane's into :math:`Q` with
    :math:`\omega_{k_1}(x_1)`. The gradient runs the same path backwards: the tables
    :math:`C^k` are spread onto planes, then rows, then read at each voxel's band of
    bins. Time :math:`O(N (2\tau+1)(2r+2)^2 + n_1 n_2 m_3 B^2 (2\tau + 1))` for a value
    and as much for the gradient (with :math:`s = \sigma`), memory
    :math:`O(m_1 m_2 m_3 B^2)`. At the defaults: about 0.1 s per value and gradient
    for :math:`32^3` voxels on one core, 0.2 s for :math:`48^3`, 0.5–0.6 s for
    :math:`64^3`. The :math:`(2r+2)` bins of a sample are fewer near the grid ends,
    so the cost depends a little on the data: placed by its moments, ``u`` fills
    the middle of the grid (on a phantom 48³, 14 bins per sample on average, 9.8
    when ``u`` was binned by its extremes; 8 % more time).

    References
    ----------
    .. [1] G. Hermosillo, C. Chefd'Hotel and O. Faugeras, "Variational methods for
       multimodal image matching", Int. J. Comput. Vis. 50(3):329–343, 2002
       (local statistical criteria: local mutual information).
    .. [2] P. Viola and W. M. Wells III, "Alignment by maximization of mutual
       information", Int. J. Comput. Vis. 24(2):137–154, 1997.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = rng.random((12, 12, 12))
    >>> lmi = LocalMutualInformation(bins=16, window=3.0)
    >>> lmi(g**2, g) < lmi(rng.random(g.shape), g)
    True
    """

    name: ClassVar[str] = "local-mi"
    description: ClassVar[str] = "-local mutual information in Gaussian windows (Hermosillo 2002)"
    Params: ClassVar[type[BaseModel]] = LocalMutualInformationParams
    params: LocalMutualInformationParams
    quadratic: ClassVar[bool] = False
    scale_sensitive: ClassVar[bool] = False
    #: Measured on the shaded pair of tests/test_kernel_gain_field.py, kernel error
    #: after 80 iterations / at convergence, 48^3 seed 0: 0.285 / 0.302 at alpha
    #: 0.1, 0.230 / 0.233 at 0.3, 0.179 / 0.179 at 1, 0.172 / 0.172 at 2, 0.178 /
    #: 0.178 at 3, 0.228 at 10 (the core mi's default at 48^3 is 7.9); converged,
    #: seeds 1 / 2: 0.131 / 0.219 at 1, 0.127 / 0.213 at 2, 0.135 / 0.217 at 3;
    #: 64^3 seeds 0 / 1: 0.130 / - at 0.5, 0.117 / 0.115 at 1, 0.117 / 0.123 at 2.
    #: A flat optimum between 1 and 2, so 1 is kept. (With u binned by its
    #: extremes, before, small alphas were as good: 0.164 converged at 1, 0.166 at
    #: 0.3, 0.170 at 0.01.)
    default_alpha: ClassVar[float | None] = 1.0

    def __call__(self, u: np.ndarray, g: np.ndarray) -> float:
        return self._evaluate(u, g, gradient=False)[0]

    def grad(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self._evaluate(u, g, gradient=True)[1])

    def value_and_grad(self, u: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = self._evaluate(u, g, gradient=True)
        return value, cast(np.ndarray, grad)

    def window_weights(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """The spatial window matrices, one ``(m_d, n_d)`` array per axis.

        Row ``k`` of axis ``d`` is :math:`\\omega(x_d - y_{k,d})` for every voxel
        index ``x_d``; with ``window = None`` a single row of ones.
        """
        prm = self.params
        return [window_matrix(n, prm.window, prm.spacing, prm.truncate) for n in shape]

    def local_values(self, u: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-window MI and weights :math:`\\pi_k`, shaped like the centre grid.

        Returns
        -------
        mi, weight : ndarray
            ``mi[k0, k1, k2]`` is :math:`\\mathrm{MI}_k` and ``weight`` its share
            :math:`\\pi_k` (``-(mi * weight).sum()`` is the loss).
        """
        u3, g3 = _check(u, g)
        a, b, _, _, _ = _placement(u3, g3, self.params.bins)
        windows = self.window_weights(u3.shape)
        q = _joint_histograms(a, b, windows, self.params.bins, self.params.parzen_width)
        mi, _, _ = information(q)
        weight = _window_shares(windows)
        return mi, weight

    def _evaluate(
        self, u: np.ndarray, g: np.ndarray, gradient: bool
    ) -> tuple[float, np.ndarray | None]:
        shape = np.shape(u)
        u3, g3 = _check(u, g)
        nb, beta = self.params.bins, self.params.parzen_width
        a, b, slope, z_u, inside = _placement(u3, g3, nb)
        windows = self.window_weights(u3.shape)
        q = _joint_histograms(a, b, windows, nb, beta)
        mi, centred, z = information(q)
        share = _window_shares(windows)
        lmi = float(np.sum(share * mi))
        if not gradient:
            return -lmi, None
        tables = centred * (share / z)[..., None, None]
        dlmi = _table_gradient(a, b, windows, tables, nb, beta)
        gamma = -dlmi.ravel()  # D = -LMI
        gamma[~inside] = 0.0
        total, along_z = float(gamma.sum()), float(np.dot(gamma, z_u))
        out = chain_moments(gamma, z_u, slope, total, along_z, gamma.size)
        return -lmi, out.reshape(shape)


# -- helpers specific to local windows (the Parzen/MI pieces are in boneframe.parzen)


def _check(u: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the pair; return 3D float64 views (lower-dimensional input padded)."""
    u = np.asarray(u)
    g = np.asarray(g)
    if u.shape != g.shape:
        raise InputError(f"u and g must have the same shape, got {u.shape} and {g.shape}")
    if u.ndim > 3:
        raise InputError(f"local-mi works on volumes of at most 3 axes, got shape {u.shape}")
    if u.size < 2:
        raise InputError("local mutual information needs at least two voxels")
    shape3 = (1,) * (3 - u.ndim) + u.shape
    return (
        np.asarray(u, dtype=np.float64).reshape(shape3),
        np.asarray(g, dtype=np.float64).reshape(shape3),
    )


def window_matrix(
    n: int, sigma: float | None, spacing: float | None, truncate: float
) -> np.ndarray:
    """Gaussian window weights along one axis of ``n`` voxels, one row per centre.

    Parameters
    ----------
    n : int
        Number of voxels along the axis.
    sigma : float or None
        Window standard deviation in voxels; ``None`` gives one row of ones.
    spacing : float or None
        Largest distance between centres (default ``sigma``); centres are evenly
        spread over ``[0, n - 1]``, both ends included.
    truncate : float
        Weights beyond ``truncate * sigma`` are zero.

    Returns
    -------
    ndarray
        ``(m, n)`` float64 weights (peak 1 at each centre).
    """
    if sigma is None:
        return np.ones((1, n))
    step = sigma if spacing is None else spacing
    m = int(math.ceil((n - 1) / step)) + 1 if n > 1 else 1
    centres = np.linspace(0.0, n - 1.0, m)
    dist = np.arange(n, dtype=np.float64)[None, :] - centres[:, None]
    w = np.exp(-0.5 * (dist / sigma) ** 2)
    w[np.abs(dist) > truncate * sigma] = 0.0
    return w


def _window_shares(windows: list[np.ndarray]) -> np.ndarray:
    """:math:`\\pi_k = M_k / \\sum M`, with the separable masses :math:`M_k`."""
    m0, m1, m2 = (w.sum(axis=1) for w in windows)
    mass = m0[:, None, None] * m1[None, :, None] * m2[None, None, :]
    return mass / mass.sum()


def _placement(
    u: np.ndarray, g: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Global bin coordinates of ``u`` and ``g``, placed as in the core ``mi``.

    Parameters
    ----------
    u, g : ndarray
        The pair, 3D float64 (see :func:`_check`).
    bins : int
        Number of bins ``B``.

    Returns
    -------
    a, b : ndarray
        Bin coordinates in ``[0, B - 1]``, shaped as ``u``: ``u`` matched to the
        mean and standard deviation of ``g``, both binned over ``g``'s range.
    slope : float
        ``da/du`` at fixed moments of ``u``.
    z : ndarray
        The standardised ``(u - mean u) / std u``, flat.
    inside : ndarray
        Flat mask of the voxels of ``u`` not clipped to the grid ends.
    """
    mean, std = moments(u, "u")
    grey = GreyStatistics.of(g)
    a, slope, z, inside = grey.place(u, bins, mean, std)
    b = bin_coordinates(g, bins, grey.lo, grey.hi)[0]
    return a.reshape(u.shape), b.reshape(g.shape), slope, z, inside


def parzen_radius(beta: float) -> int:
    """Bins on each side of a sample beyond which its Parzen weight is below ``PARZEN_CUT``."""
    return int(math.ceil(beta * math.sqrt(-math.log(PARZEN_CUT))))


def _band(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last row with a non-zero weight, for every column of ``w``."""
    nz = w != 0
    first = np.argmax(nz, axis=0).astype(np.int64)
    last = (w.shape[0] - np.argmax(nz[::-1], axis=0)).astype(np.int64)
    return first, last


@numba.njit(cache=True, nogil=True)
def _axpy(out, alpha, x):  # pragma: no cover
    """``out += alpha * x`` on flat contiguous arrays (numba, no temporary)."""
    for n in range(out.size):
        out[n] += alpha * x[n]


@numba.njit(cache=True, nogil=True)
def _sample_weights(value, bins, inv, radius, weights, derivative):  # pragma: no cover
    """Parzen weights ``phi(value - i)`` (or ``phi'``) for bins ``i0 ... i0 + count - 1``.

    Returns ``(i0, count)``; the weights are written to ``weights[:count]``.
    """
    i0 = max(int(value) - radius, 0)
    count = min(int(value) + radius + 2, bins) - i0
    for i in range(count):
        t = (value - (i0 + i)) * inv
        e = math.exp(-t * t)
        weights[i] = -2.0 * inv * t * e if derivative else e
    return i0, count


@numba.njit(cache=True, nogil=True)
def _histograms_kernel(a, b, w0, w1, w2, bands, bins, beta, radius, q):  # pragma: no cover
    """``q[k0, k1, k2, i, j] += sum_x w0[k0, x0] w1[k1, x1] w2[k2, x2] phi(a_x - i) phi(b_x - j)``.

    ``bands[d]`` holds, per index along axis ``d``, the first and one-past-last
    window with a non-zero weight. Separable: a row's histograms over axis 2, then
    added into the plane's over axis 1, then into ``q`` over axis 0.
    """
    n0, n1, n2 = a.shape
    m0, m1, m2 = w0.shape[0], w1.shape[0], w2.shape[0]
    cells = bins * bins
    pa = np.empty(2 * radius + 2)
    pb = np.empty(2 * radius + 2)
    inv = 1.0 / beta
    row = np.zeros((m2, bins, bins))
    plane = np.zeros((m1, m2 * cells))
    row_flat = row.reshape(m2 * cells)
    q_flat = q.reshape(m0, m1 * m2 * cells)
    plane_flat = plane.reshape(m1 * m2 * cells)
    b0f, b0l, b1f, b1l, b2f, b2l = bands
    for x0 in range(n0):
        plane[:] = 0.0
        for x1 in range(n1):
            row[:] = 0.0
            for x2 in range(n2):
                ia, na = _sample_weights(a[x0, x1, x2], bins, inv, radius, pa, False)
                jb, nb = _sample_weights(b[x0, x1, x2], bins, inv, radius, pb, False)
                for k in range(b2f[x2], b2l[x2]):
                    wk = w2[k, x2]
                    for i in range(na):
                        c = wk * pa[i]
                        dest = row[k, ia + i]
                        for j in range(nb):
                            dest[jb + j] += c * pb[j]
            for k in range(b1f[x1], b1l[x1]):
                _axpy(plane[k], w1[k, x1], row_flat)
        for k in range(b0f[x0], b0l[x0]):
            _axpy(q_flat[k], w0[k, x0], plane_flat)


@numba.njit(cache=True, nogil=True)
def _gradient_kernel(a, b, w0, w1, w2, bands, bins, beta, radius, tables, out):  # pragma: no cover
    """``out[x] = sum_k w_k(x) sum_ij phi'(a_x - i) phi(b_x - j) tables[k, i, j]`` (separable)."""
    n0, n1, n2 = a.shape
    m0, m1, m2 = w0.shape[0], w1.shape[0], w2.shape[0]
    cells = bins * bins
    da = np.empty(2 * radius + 2)
    pb = np.empty(2 * radius + 2)
    inv = 1.0 / beta
    row = np.zeros((m2, bins, bins))
    plane = np.zeros((m1, m2 * cells))
    row_flat = row.reshape(m2 * cells)
    t_flat = tables.reshape(m0, m1 * m2 * cells)
    plane_flat = plane.reshape(m1 * m2 * cells)
    b0f, b0l, b1f, b1l, b2f, b2l = bands
    for x0 in range(n0):
        plane[:] = 0.0
        for k in range(b0f[x0], b0l[x0]):
            _axpy(plane_flat, w0[k, x0], t_flat[k])
        for x1 in range(n1):
            row[:] = 0.0
            for k in range(b1f[x1], b1l[x1]):
                _axpy(row_flat, w1[k, x1], plane[k])
            for x2 in range(n2):
                ia, na = _sample_weights(a[x0, x1, x2], bins, inv, radius, da, True)
                jb, nb = _sample_weights(b[x0, x1, x2], bins, inv, radius, pb, False)
                total = 0.0
                for k in range(b2f[x2], b2l[x2]):
                    acc = 0.0
                    for i in range(na):
                        src = row[k, ia + i]
                        s = 0.0
                        for j in range(nb):
                            s += src[jb + j] * pb[j]
                        acc += da[i] * s
                    total += w2[k, x2] * acc
                out[x0, x1, x2] = total


def _bands(windows: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(v for w in windows for v in _band(w))


def _joint_histograms(
    a: np.ndarray, b: np.ndarray, windows: list[np.ndarray], bins: int, beta: float
) -> np.ndarray:
    """``Q[k0, k1, k2, i, j]``: every window's Parzen joint histogram."""
    w0, w1, w2 = (np.ascontiguousarray(w) for w in windows)
    q = np.zeros((w0.shape[0], w1.shape[0], w2.shape[0], bins, bins))
    _histograms_kernel(
        np.ascontiguousarray(a), np.ascontiguousarray(b), w0, w1, w2, _bands(windows),
        bins, float(beta), parzen_radius(beta), q,
    )  # fmt: skip
    return q


def _table_gradient(
    a: np.ndarray,
    b: np.ndarray,
    windows: list[np.ndarray],
    tables: np.ndarray,
    bins: int,
    beta: float,
) -> np.ndarray:
    """:math:`\\partial\\,\\mathrm{LMI} / \\partial a_x = \\sum_{ij} \\varphi'(a_x - i)
    \\varphi(b_x - j) \\sum_k w_k(x) C^k_{ij}`, with ``tables[k0, k1, k2] = C^k``."""
    w0, w1, w2 = (np.ascontiguousarray(w) for w in windows)
    out = np.empty(a.shape)
    _gradient_kernel(
        np.ascontiguousarray(a), np.ascontiguousarray(b), w0, w1, w2, _bands(windows),
        bins, float(beta), parzen_radius(beta), np.ascontiguousarray(tables), out,
    )  # fmt: skip
    return out
