r"""Kernel estimation on dask arrays: per-box statistics summed over the valid region.

:func:`estimate_kernel_chunked` gives the kernel and offset of
:func:`boneframe.kernel.estimate_kernel` (to float rounding: ~1e-7 relative for
L2, whose Gram matrix is summed in float32 blocks; 1e-12 per MI evaluation;
converged MI kernels to 2e-7–9e-7 at 128³–256³ with the default quadratic
splat, whose loss is continuously differentiable, and 3e-12 with the literal
Parzen sums, gradient descent stopping within ~1e-6 of the minimiser) while
holding a few chunks in memory. It builds a
:class:`ChunkedKernelProblem`, which offers the solvers the methods of
:class:`~boneframe.kernel.KernelProblem` (``normal_equations``, ``gcv_weight``,
``value``, ``value_and_grad``, ``best_offset``, ``project``), so ``exact`` and
``gradient-descent`` run unchanged.

**Boxes.** The valid low-resolution region (voxels whose footprint lies inside
``f``, :func:`~boneframe.operators.valid_lr_slices`) is cut along the chunk
boundaries of ``g`` into boxes. Box ``[a, b)`` (low-resolution indices, per axis)
needs the high-resolution crop ``[p a - r, p (b - 1) + r + 1)``: its chunk plus a
halo of the kernel radius ``r``. Its rows of the design matrix are a
:class:`~boneframe.kernel.ValidDesign` of that crop (with the *global* mean of
``f`` removed), so every sum over valid voxels is a sum over boxes:

* **L2** (exact solver, GCV): :math:`X^\top X`, :math:`X^\top 1`, :math:`X^\top g`,
  :math:`\sum g` and :math:`\sum (g - \bar g)^2` (parallel variance update), one
  pass; :class:`~boneframe.kernel.QuadraticStatistics` then solves exactly as in
  memory. The float32 Gram products stay accurate because the global mean of
  ``f`` (a first reduction) is removed before the cast, as in memory.
* **MI** (gradient descent), per evaluation: (1) the placement of
  :math:`u = X h + t \sum h` on the bins: with the default ``"moments"``
  placement the global mean and standard deviation of ``u`` (a parallel variance
  update over boxes; those of ``g`` are computed once), with ``"extremes"`` the
  global minimum and maximum (with the flat index of the first of each, C order,
  as ``numpy.argmin``); (2) the joint histogram of every box, with bin
  coordinates from the global statistics, summed; the look-up table of
  :math:`\partial \mathrm{MI} / \partial a` from the sum; (3) per box
  :math:`\gamma = \partial D / \partial a` from the table and its sums. For
  ``"moments"`` the chain rule :func:`~boneframe.similarity.mi.chain_moments` is
  linear in two global sums, so each box returns :math:`X_b^\top \gamma_b`,
  :math:`X_b^\top z_b`, :math:`\sum \gamma` and :math:`\sum \gamma z`, and
  :math:`X^\top 1` (kept) completes it; for ``"extremes"`` the range terms of the
  two extreme voxels are added to :math:`X^\top w` as multiples of their rows of
  ``X`` (the flipped ``f`` around them).

Every box result is reduced by a binary tree of additions on the workers;
``dask.compute`` uses the active scheduler (a ``dask.distributed`` client when
one is connected, :func:`boneframe.chunked.cluster.use_scheduler`), so the same
code runs on a cluster. Boxes are re-read and re-transformed at every pass:
memory stays at a few crops plus the :math:`K^3 \times K^3` Gram matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Callback, Regularizer, Similarity
from boneframe.kernel import (
    DEFAULT_INIT_SIGMA,
    KernelEstimate,
    QuadraticStatistics,
    Support,
    ValidDesign,
    as_support,
    build_strategies,
    project_simplex,
    regularizer_hessian,
    solve_kernel_problem,
)
from boneframe.operators import Factor, as_factor, decimated_shape, valid_lr_slices
from boneframe.similarity.l2 import L2
from boneframe.similarity.mi import (
    GreyStatistics,
    MutualInformation,
    bin_coordinates,
    check_range,
    check_spread,
)

__all__ = ["ChunkedKernelProblem", "estimate_kernel_chunked", "lr_boxes"]

Box = tuple[slice, slice, slice]


# -- boxes ------------------------------------------------------------------------
def lr_boxes(lr_slices: Sequence[slice], chunks: Sequence[Sequence[int]]) -> list[Box]:
    """Cut the valid low-resolution region along chunk boundaries.

    Parameters
    ----------
    lr_slices : 3 slices
        The valid region (:func:`~boneframe.operators.valid_lr_slices`).
    chunks : dask chunks of the low-resolution volume

    Returns
    -------
    list of 3-tuples of slices
        Boxes (global low-resolution indices) tiling the valid region, C order.
    """
    per_axis = []
    for sl, sizes in zip(lr_slices, chunks, strict=True):
        edges = np.concatenate([[0], np.cumsum(sizes)])
        cuts = [int(e) for e in edges if sl.start < e < sl.stop]
        bounds = [sl.start, *cuts, sl.stop]
        per_axis.append([slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return [(s0, s1, s2) for s0 in per_axis[0] for s1 in per_axis[1] for s2 in per_axis[2]]


def _hr_crop(box: Box, support: Sequence[int], p: Sequence[int]) -> Box:
    """High-resolution crop holding the footprints of a low-resolution box."""
    return tuple(  # type: ignore[return-value]
        slice(q * s.start - k // 2, q * (s.stop - 1) + k // 2 + 1)
        for s, k, q in zip(box, support, p, strict=True)
    )


# -- per-box work (module level: picklable for dask.distributed) ------------------
def _design(crop: Any, f_mean: float, support: tuple, p: tuple) -> ValidDesign:
    """The box's design (a crop is mean-removed and transformed; a design is kept)."""
    if isinstance(crop, ValidDesign):
        return crop
    return ValidDesign(np.asarray(crop, dtype=np.float64) - f_mean, support, p)


def _u(design: ValidDesign, h: np.ndarray, t: float) -> np.ndarray:
    return design.blur(h) + t * float(np.sum(h))


def _box_gram(crop: Any, g: Any, f_mean: float, support: tuple, p: tuple) -> dict[str, Any]:
    design = _design(crop, f_mean, support, p)
    gb = np.asarray(g, dtype=np.float64)
    mean = float(gb.mean())
    return {
        "xtx": design.gram(),
        "xt1": design.correlate(np.ones_like(gb)).ravel(),
        "xtg": design.correlate(gb).ravel(),
        "moments": (gb.size, mean, float(np.sum((gb - mean) ** 2))),
    }


def _box_base_sum(crop: Any, f_mean: float, support: tuple, p: tuple, h: np.ndarray) -> float:
    return float(np.sum(_design(crop, f_mean, support, p).blur(h)))


def _box_l2(
    crop: Any,
    g: Any,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    z: float,
    gradient: bool,
) -> dict[str, Any]:
    design = _design(crop, f_mean, support, p)
    r = _u(design, h, t) - np.asarray(g, dtype=np.float64)
    out: dict[str, Any] = {"rss": float(np.vdot(r, r))}
    if gradient:
        w = (2.0 / z) * r
        out["corr"] = design.correlate(w)
        out["sw"] = float(np.sum(w))
    return out


def _box_moments(
    crop: Any, g: Any, f_mean: float, support: tuple, p: tuple, h: np.ndarray, t: float
) -> np.ndarray:
    """``n``, means of ``u`` and ``g``, and their centred second moments (uu, ug, gg)."""
    u = _u(_design(crop, f_mean, support, p), h, t).ravel()
    gb = np.asarray(g, dtype=np.float64).ravel()
    du, dg = u - u.mean(), gb - gb.mean()
    return np.array([u.size, u.mean(), gb.mean(), np.dot(du, du), np.dot(du, dg), np.dot(dg, dg)])


def _box_extremes(
    crop: Any,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    origin: tuple,
    valid_shape: tuple,
) -> tuple[float, int, float, int]:
    """Min and max of ``u`` on the box with their flat indices in the valid region."""
    u = _u(_design(crop, f_mean, support, p), h, t)
    i_min, i_max = int(np.argmin(u)), int(np.argmax(u))

    def flat(i: int) -> int:
        local = np.unravel_index(i, u.shape)
        index = tuple(o + j for o, j in zip(origin, local, strict=True))
        return int(np.ravel_multi_index(index, valid_shape))

    return float(u.flat[i_min]), flat(i_min), float(u.flat[i_max]), flat(i_max)


def _box_mi_coordinates(
    design: ValidDesign,
    g: Any,
    h: np.ndarray,
    t: float,
    bins: int,
    u_place: tuple,
    g_range: tuple[float, float],
) -> tuple[np.ndarray, float, np.ndarray, Any, Any]:
    """Bin coordinates of the box: ``a``, ``da/du``, ``b``, and (placement
    ``"moments"``) ``z`` and the mask of unclipped voxels (``None`` otherwise).

    ``u_place`` is ``("extremes", lo, hi)`` (global range of ``u``) or
    ``("moments", mean, std, GreyStatistics)`` (global moments of ``u``).
    """
    u = _u(design, h, t)
    b, _ = bin_coordinates(np.asarray(g, dtype=np.float64), bins, *g_range)
    if u_place[0] == "extremes":
        a, scale = bin_coordinates(u, bins, u_place[1], u_place[2])
        return a, scale, b, None, None
    _, mean, std, grey = u_place
    a, scale, z, inside = grey.place(u, bins, mean, std)
    return a, scale, b, z, inside


def _box_mi_histogram(
    crop: Any,
    g: Any,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    sim: MutualInformation,
    u_place: tuple,
    g_range: tuple[float, float],
) -> np.ndarray:
    design = _design(crop, f_mean, support, p)
    a, _, b, _, _ = _box_mi_coordinates(design, g, h, t, sim.params.bins, u_place, g_range)
    return sim.joint_histogram(a, b)


def _box_mi_gradient(
    crop: Any,
    g: Any,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    sim: MutualInformation,
    u_place: tuple,
    g_range: tuple[float, float],
    table: tuple[np.ndarray, float],
) -> dict[str, Any]:
    design = _design(crop, f_mean, support, p)
    a, scale, b, z, inside = _box_mi_coordinates(design, g, h, t, sim.params.bins, u_place, g_range)
    gamma = -sim.coordinate_gradient(a, b, *table)  # dD/da with D = -MI
    if z is None:  # extremes: the two extreme voxels' range terms come later
        w = gamma * scale
        return {
            "corr": design.correlate(w.reshape(design.lr_shape)),
            "total": float(gamma.sum()),
            "upper": float(np.dot(gamma, a)),
            "sw": float(np.sum(w)),
        }
    # moments: dD/du = scale (gamma - total/N - z along_z/N) (mi.chain_moments) is
    # linear in the global sums, so X^T of its three parts are summed separately
    gamma[~inside] = 0.0
    return {
        "corr": design.correlate(gamma.reshape(design.lr_shape)),
        "corr_z": design.correlate(z.reshape(design.lr_shape)),
        "total": float(gamma.sum()),
        "along_z": float(np.dot(gamma, z)),
        "zsum": float(z.sum()),
    }


def _box_xt1(crop: Any, f_mean: float, support: tuple, p: tuple) -> np.ndarray:
    """``X^T 1`` of the box: every kernel tap's sum of the mean-removed ``f``."""
    design = _design(crop, f_mean, support, p)
    return design.correlate(np.ones(design.lr_shape))


def _add(x: Any, y: Any) -> Any:
    """Sum of two box results (numbers, arrays, or dicts / tuples of them)."""
    if isinstance(x, dict):
        return {k: _add(x[k], y[k]) for k in x}
    if isinstance(x, tuple):
        return tuple(_add(a, b) for a, b in zip(x, y, strict=True))
    return x + y


def _merge_moments(x: tuple, y: tuple) -> tuple:
    """Parallel update of ``(n, mean, M2)`` (Chan, Golub & LeVeque 1979)."""
    (na, ma, sa), (nb, mb, sb) = x, y
    n = na + nb
    d = mb - ma
    return n, ma + d * nb / n, sa + sb + d * d * na * nb / n


def _merge_pair_moments(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Parallel update of ``(n, mean_u, mean_g, Cuu, Cug, Cgg)``."""
    na, nb = x[0], y[0]
    n = na + nb
    du, dg = y[1] - x[1], y[2] - x[2]
    c = na * nb / n
    return np.array(
        [
            n,
            x[1] + du * nb / n,
            x[2] + dg * nb / n,
            x[3] + y[3] + du * du * c,
            x[4] + y[4] + du * dg * c,
            x[5] + y[5] + dg * dg * c,
        ]
    )


def _box_gram_merge(x: dict, y: dict) -> dict:
    out = {k: x[k] + y[k] for k in ("xtx", "xt1", "xtg")}
    out["moments"] = _merge_moments(x["moments"], y["moments"])
    return out


def _tree(parts: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Binary tree of delayed ``combine`` over ``parts`` (one delayed result)."""
    level = list(parts)
    while len(level) > 1:
        nxt = [dask.delayed(combine)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _extreme_merge(x: tuple, y: tuple) -> tuple:
    lo = min((x[0], x[1]), (y[0], y[1]))
    hi = max((x[2], -x[3]), (y[2], -y[3]))
    return lo[0], lo[1], hi[0], -hi[1]


# -- the problem ----------------------------------------------------------------------
class ChunkedKernelProblem:
    r"""The kernel-estimation objective on dask arrays, reduced box by box.

    Parameters
    ----------
    f : dask.array.Array
        High-resolution volume, shape at least ``p*(n-1)+1`` per axis.
    g : dask.array.Array
        Low-resolution volume of shape ``n = ceil(f.shape / p)``; its chunks cut
        the valid region into boxes (:func:`lr_boxes`).
    similarity : Similarity
        :class:`~boneframe.similarity.l2.L2` or
        :class:`~boneframe.similarity.mi.MutualInformation` (others are refused:
        their sums over voxels are not known).
    regularizer : Regularizer
        Penalty on ``h``.
    support : int or 3 ints
        Odd kernel support.
    p : int or 3 ints
        Decimation factor per axis.
    fit_offset : bool or None
        Estimate ``c`` (default: when the similarity is scale-sensitive).
    offset : float
        The offset used when it is not fitted.
    stats : mapping, optional
        Global statistics already computed by :func:`estimate_kernel_chunked`
        (``f_mean``, ``g_sum``, ``g_perp``, ``g_range``); computed here otherwise.
    cache_boxes : bool
        Keep every box's mean-removed crop and its Fourier transform in memory
        (on the workers with a cluster) instead of re-reading and re-transforming
        it at every pass: 2–3× faster gradient descent, but about five times the
        high-resolution volume in float64 held at once. Default ``False``: a few
        boxes at a time.

    Notes
    -----
    The same objective as :class:`~boneframe.kernel.KernelProblem` (see its
    Notes for the model, the profiled offset and the normal equations) with every
    sum over valid voxels split into sums over boxes; see the module docstring
    for the passes. For L2 the profiled offset is closed-form from sums,

    .. math:: t^*(h) = \frac{\sum_i g_i - \sum_i (X h)_i}{N \sum_k h_k},
              \qquad c^* = t^* - \bar f,

    the limit of the in-memory secant on :math:`\partial J / \partial c`, which
    is affine in :math:`t`.
    """

    def __init__(
        self,
        f: da.Array,
        g: da.Array,
        similarity: Similarity,
        regularizer: Regularizer,
        support: Support = 9,
        p: Factor = 2,
        *,
        fit_offset: bool | None = None,
        offset: float = 0.0,
        stats: Mapping[str, Any] | None = None,
        cache_boxes: bool = False,
    ):
        if not isinstance(similarity, (L2, MutualInformation)):
            raise InputError(
                f"chunked kernel estimation supports the 'l2' and 'mi' similarities, "
                f"not {similarity.name!r}"
            )
        self.similarity = similarity
        self.regularizer = regularizer
        self.support = as_support(support)
        self.p = as_factor(p)
        self.fit_offset = similarity.scale_sensitive if fit_offset is None else bool(fit_offset)
        if not similarity.scale_sensitive:
            self.project = project_simplex
        self.radius = tuple(k // 2 for k in self.support)
        self.lr_slices = valid_lr_slices(f.shape, self.support, self.p)
        self.valid_shape = tuple(s.stop - s.start for s in self.lr_slices)
        self.n_valid = int(np.prod(self.valid_shape))
        self.offset = float(offset)
        self.boxes = lr_boxes(self.lr_slices, g.chunks)
        self._f = f
        self._g = g
        hr = [_hr_crop(b, self.support, self.p) for b in self.boxes]
        # one delayed read per box, reused by every pass (recomputed, never kept)
        self._crops = [dask.delayed(f[s]) for s in hr]
        self._gs = [dask.delayed(g[b]) for b in self.boxes]
        if stats is None:
            stats = _global_statistics(f, g, self.support, self.p)
        self.f_mean = float(stats["f_mean"])
        self.g_sum = float(stats["g_sum"])
        self.g_perp = float(stats["g_perp"])
        self.g_range = stats.get("g_range")
        if cache_boxes:  # transformed crops kept in (worker) memory between passes
            designs = [dask.delayed(_design)(c, *self._geometry) for c in self._crops]
            self._crops = list(dask.persist(*designs))
        self._cache: list[tuple[np.ndarray, float]] = []
        self._rows: dict[int, np.ndarray] = {}
        self._quadratic: QuadraticStatistics | None = None
        self._ones: np.ndarray | None = None

    # -- helpers ---------------------------------------------------------------------
    @property
    def _geometry(self) -> tuple[float, tuple, tuple]:
        return self.f_mean, self.support, self.p

    def _l2_scale(self) -> float:
        mode = self.similarity.params.normalise
        if mode == "none":
            return 1.0
        if mode == "voxels":
            return float(self.n_valid)
        return self.g_perp if self.g_perp > 0 else 1.0

    def _row(self, flat: int) -> np.ndarray:
        """Row ``flat`` (valid-region C order) of ``X``, shaped as the kernel."""
        if flat not in self._rows:
            idx = np.unravel_index(flat, self.valid_shape)
            box = tuple(
                slice(s.start + i, s.start + i + 1)
                for s, i in zip(self.lr_slices, idx, strict=True)
            )
            crop = np.asarray(self._f[_hr_crop(box, self.support, self.p)], dtype=np.float64)
            self._rows = {k: v for k, v in list(self._rows.items())[-3:]}
            self._rows[flat] = (crop - self.f_mean)[::-1, ::-1, ::-1]
        return self._rows[flat]

    # -- the offset --------------------------------------------------------------------
    def _t(self, h: np.ndarray) -> float:
        """Best ``t = c + mean(f)`` for ``h`` (cached for the last two)."""
        for hc, t in self._cache:
            if hc.shape == h.shape and np.array_equal(hc, h):
                return t
        t0 = self.offset + self.f_mean
        gain = float(np.sum(h))
        if not self.fit_offset or gain == 0.0:
            t = t0
        else:
            hd = dask.delayed(np.asarray(h, dtype=np.float64))
            parts = [dask.delayed(_box_base_sum)(c, *self._geometry, hd) for c in self._crops]
            (base_sum,) = dask.compute(_tree(parts, _add))
            t = (self.g_sum - base_sum) / (self.n_valid * gain)
        self._cache = [(np.array(h, copy=True), t), *self._cache[:1]]
        return t

    def best_offset(self, h: np.ndarray) -> float:
        """``c* = argmin_c J(h, c)`` (the fixed ``offset`` when it is not fitted)."""
        return self._t(h) - self.f_mean

    def start_scale(self, h: np.ndarray) -> float:
        """``std(g) / std(predict(h))`` on the valid voxels (1 when the prediction is flat)."""
        m = self._pair_moments(h, self._t(h))
        spread = float(np.sqrt(m[3] / m[0]))
        return float(np.sqrt(m[5] / m[0])) / spread if spread > 0 else 1.0

    def _pair_moments(self, h: np.ndarray, t: float) -> np.ndarray:
        hd = dask.delayed(np.asarray(h, dtype=np.float64))
        parts = [
            dask.delayed(_box_moments)(c, g, *self._geometry, hd, t)
            for c, g in zip(self._crops, self._gs, strict=True)
        ]
        (m,) = dask.compute(_tree(parts, _merge_pair_moments))
        return m

    def fit_gain_offset(self, h: np.ndarray) -> tuple[float, float]:
        """Least-squares ``g ≈ a U(h * f) + b`` on the valid voxels: the gain ``a``
        and the offset ``c = b / a`` of the model ``U(a h * (f + c))``."""
        t = self.f_mean  # the prediction with c = 0
        m = self._pair_moments(h, t)
        if m[3] <= 0:
            raise InputError("the prediction does not explain the low-resolution volume")
        a = float(m[4] / m[3])
        b = float(m[2] - a * m[1])
        if a == 0:
            raise InputError("the prediction does not explain the low-resolution volume")
        return a, b / a

    # -- objective -----------------------------------------------------------------
    def objective(self, h: np.ndarray, c: float) -> tuple[float, np.ndarray, float]:
        """``J(h, c)`` and its gradients with respect to ``h`` and ``c`` (no profiling)."""
        h = np.asarray(h, dtype=np.float64)
        t = c + self.f_mean
        gain = float(np.sum(h))
        if isinstance(self.similarity, L2):
            d, corr, sw = self._l2_terms(h, t, gradient=True)
        else:
            d, corr, sw = self._mi_terms(h, t)
        grad_h = corr + t * sw + self.regularizer.grad(h)
        return d + self.regularizer(h), grad_h, gain * sw

    def value_and_grad(self, h: np.ndarray) -> tuple[float, np.ndarray]:
        """Profiled objective ``J(h, c*(h))`` and its gradient in ``h``."""
        value, grad_h, _ = self.objective(h, self.best_offset(h))
        return value, grad_h

    def value(self, h: np.ndarray) -> float:
        """Profiled objective ``J(h, c*(h))``."""
        h = np.asarray(h, dtype=np.float64)
        t = self._t(h)
        if isinstance(self.similarity, L2):
            d = self._l2_terms(h, t, gradient=False)[0]
        else:
            d = self._mi_terms(h, t, gradient=False)[0]
        return d + self.regularizer(h)

    def _l2_terms(self, h: np.ndarray, t: float, gradient: bool) -> tuple[float, Any, float]:
        z = self._l2_scale()
        hd = dask.delayed(h)
        parts = [
            dask.delayed(_box_l2)(c, g, *self._geometry, hd, t, z, gradient)
            for c, g in zip(self._crops, self._gs, strict=True)
        ]
        (out,) = dask.compute(_tree(parts, _add))
        return out["rss"] / z, out.get("corr"), out.get("sw", 0.0)

    def _mi_terms(self, h: np.ndarray, t: float, gradient: bool = True) -> tuple[float, Any, float]:
        sim: MutualInformation = self.similarity  # type: ignore[assignment]
        hd = dask.delayed(h)
        if sim.params.placement == "extremes":
            place, (i_min, i_max) = self._extremes(hd, t)
            g_range = tuple(self.g_range)
        else:
            place = self._moments_placement(h, t)
            g_range = (place[3].lo, place[3].hi)
        hist = [
            dask.delayed(_box_mi_histogram)(c, g, *self._geometry, hd, t, sim, place, g_range)
            for c, g in zip(self._crops, self._gs, strict=True)
        ]
        (joint,) = dask.compute(_tree(hist, _add))
        mi, table, z = sim.gradient_table(joint)
        if not gradient:
            return -mi, None, 0.0
        td = dask.delayed((table, z))
        parts = [
            dask.delayed(_box_mi_gradient)(c, g, *self._geometry, hd, t, sim, place, g_range, td)
            for c, g in zip(self._crops, self._gs, strict=True)
        ]
        (out,) = dask.compute(_tree(parts, _add))
        if place[0] == "moments":  # mi.chain_moments, through X^T
            _, _, std, grey = place
            scale = grey.slope(sim.params.bins, std)
            n, total, along_z = self.n_valid, out["total"], out["along_z"]
            corr = out["corr"] - (total / n) * self._xt1() - (along_z / n) * out["corr_z"]
            return -mi, scale * corr, -scale * along_z * out["zsum"] / n
        lo, hi = place[1], place[2]
        scale = (sim.params.bins - 1) / (hi - lo)
        upper = out["upper"] / (sim.params.bins - 1)
        # the extreme voxels move the range, not their coordinate (mi._chain_range)
        spike_min = -scale * (out["total"] - upper)
        spike_max = -scale * upper
        corr = out["corr"] + spike_min * self._row(i_min) + spike_max * self._row(i_max)
        return -mi, corr, out["sw"] + spike_min + spike_max

    def _extremes(self, hd: Any, t: float) -> tuple[tuple, tuple[int, int]]:
        """``("extremes", min u, max u)`` and the flat indices of the two voxels."""
        origins = [
            tuple(s.start - v.start for s, v in zip(b, self.lr_slices, strict=True))
            for b in self.boxes
        ]
        ext = [
            dask.delayed(_box_extremes)(c, *self._geometry, hd, t, o, self.valid_shape)
            for c, o in zip(self._crops, origins, strict=True)
        ]
        (lo, i_min, hi, i_max) = dask.compute(_tree(ext, _extreme_merge))[0]
        check_range(lo, hi, "u")
        return ("extremes", lo, hi), (i_min, i_max)

    def _moments_placement(self, h: np.ndarray, t: float) -> tuple:
        """``("moments", mean u, std u, GreyStatistics of g)`` from one pass of sums."""
        m = self._pair_moments(h, t)
        mean, std = float(m[1]), float(np.sqrt(m[3] / m[0]))
        check_spread(mean, std, "u")
        lo, hi = self.g_range
        grey = GreyStatistics(
            self.g_sum / self.n_valid, np.sqrt(self.g_perp / self.n_valid), lo, hi
        )
        return ("moments", mean, std, grey)

    def _xt1(self) -> np.ndarray:
        """``X^T 1`` summed over the boxes (one pass, kept)."""
        if self._ones is None:
            parts = [dask.delayed(_box_xt1)(c, *self._geometry) for c in self._crops]
            (self._ones,) = dask.compute(_tree(parts, _add))
        return self._ones

    # -- normal equations (L2) ----------------------------------------------------------
    def quadratic_statistics(self) -> QuadraticStatistics:
        """:class:`~boneframe.kernel.QuadraticStatistics` summed over the boxes (cached)."""
        if not isinstance(self.similarity, L2):
            raise InputError(
                f"solver 'exact' needs a quadratic similarity; {self.similarity.name!r} is not "
                "(use solver 'gradient-descent')"
            )
        if self._quadratic is None:
            parts = [
                dask.delayed(_box_gram)(c, g, *self._geometry)
                for c, g in zip(self._crops, self._gs, strict=True)
            ]
            (out,) = dask.compute(_tree(parts, _box_gram_merge))
            n, mean, m2 = out["moments"]
            self._quadratic = QuadraticStatistics(
                kappa=2.0 / self._l2_scale(),
                xtx=out["xtx"],
                xt1=out["xt1"],
                xtg=out["xtg"],
                n_valid=int(n),
                g_sum=float(n * mean),
                g_perp=float(m2),
            )
        return self._quadratic

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` of the profiled quadratic objective (see
        :meth:`boneframe.kernel.KernelProblem.normal_equations`)."""
        stats = self.quadratic_statistics()
        hess_r, grad_r0 = regularizer_hessian(self.regularizer, self.support)
        return stats.normal_equations(hess_r, grad_r0, self.fit_offset, self.offset + self.f_mean)

    def gcv_weight(self) -> float:
        """GCV choice of the regulariser's weight (see
        :meth:`boneframe.kernel.KernelProblem.gcv_weight`)."""
        hess_r = regularizer_hessian(self.regularizer, self.support)[0]
        return self.quadratic_statistics().gcv_weight(hess_r)


# -- validation and global statistics ----------------------------------------------------
def _global_statistics(f: da.Array, g: da.Array, support: tuple, p: tuple) -> dict[str, Any]:
    """One pass: finiteness, ranges, mean of ``f`` over the crop, sums of ``g`` (valid)."""
    lr = valid_lr_slices(f.shape, support, p)
    nv = tuple(s.stop - s.start for s in lr)
    crop = tuple(
        slice(q * s.start - k // 2, q * s.start + q * (n - 1) + 1 + k // 2)
        for s, k, q, n in zip(lr, support, p, nv, strict=True)
    )
    gv = g[lr].astype(np.float64)
    g_mean = gv.mean()
    todo = {
        "f_finite": da.isfinite(f).all(),
        "g_finite": da.isfinite(g).all(),
        "f_min": f.min(),
        "f_max": f.max(),
        "g_min": gv.min(),
        "g_max": gv.max(),
        "f_mean": f[crop].astype(np.float64).mean(),
        "g_sum": gv.sum(),
        "g_perp": ((gv - g_mean) ** 2).sum(),
    }
    (out,) = dask.compute(todo)
    if not out["f_finite"]:
        raise InputError("the high-resolution volume contains NaN or infinite values")
    if not out["g_finite"]:
        raise InputError("the low-resolution volume contains NaN or infinite values")
    if out["f_max"] == out["f_min"]:
        raise InputError("the high-resolution volume is constant: it carries no kernel information")
    if out["g_max"] == out["g_min"]:
        raise InputError("the low-resolution volume is constant: it carries no kernel information")
    stats = {k: float(out[k]) for k in ("f_mean", "g_sum", "g_perp")}
    stats["g_range"] = (float(out["g_min"]), float(out["g_max"]))
    return stats


def _as_lazy(x: Any, what: str, chunks: Any = None) -> da.Array:
    data = x.data if hasattr(x, "voxel_size") and hasattr(x, "data") else x
    arr = data if isinstance(data, da.Array) else da.asarray(np.asarray(data), chunks=chunks or -1)
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    return arr


def check_pair_chunked(
    f: Any, g: Any, support: Support = 9, p: Factor = 2
) -> tuple[da.Array, da.Array, tuple[int, int, int], tuple[int, int, int]]:
    """The shape rules of :func:`boneframe.kernel.check_pair` on dask arrays (values are
    checked by the first reduction of :class:`ChunkedKernelProblem`).

    A numpy ``g`` is chunked like ``f`` divided by ``p``.
    """
    fa = _as_lazy(f, "the high-resolution volume")
    k = as_support(support)
    pp = as_factor(p)
    lr_chunks = tuple(
        tuple(-(-c // q) for c in axis) for axis, q in zip(fa.chunks, pp, strict=True)
    )
    ga = _as_lazy(g, "the low-resolution volume")
    expected = decimated_shape(fa.shape, pp)
    if tuple(ga.shape) != expected:
        raise InputError(
            f"shapes do not match for p={pp}: high-resolution {fa.shape} needs a "
            f"low-resolution volume of {expected} (voxel p*i on voxel i), got {ga.shape}"
        )
    if not isinstance(getattr(g, "data", g), da.Array) and sum(map(len, lr_chunks)) > 3:
        if all(sum(c) == n for c, n in zip(lr_chunks, expected, strict=True)):
            ga = ga.rechunk(lr_chunks)
    if any(kk > n for kk, n in zip(k, fa.shape, strict=True)):
        raise InputError(f"kernel support {k} is larger than the high-resolution volume {fa.shape}")
    try:
        sl = valid_lr_slices(fa.shape, k, pp)
    except InputError:
        raise InputError(
            f"kernel support {k} leaves no low-resolution voxel whose footprint lies "
            f"inside the high-resolution volume {fa.shape}"
        ) from None
    n_valid = int(np.prod([s.stop - s.start for s in sl]))
    if n_valid < int(np.prod(k)):
        raise InputError(
            f"only {n_valid} low-resolution voxels have their footprint inside the "
            f"high-resolution volume, fewer than the {int(np.prod(k))} kernel coefficients: "
            "use a smaller support or a larger volume"
        )
    return fa, ga, k, pp


def estimate_kernel_chunked(
    f: Any,
    g: Any,
    *,
    similarity: str = "l2",
    regularizer: str = "gradient-l2",
    solver: str = "exact",
    support: Support = 9,
    alpha: float | None = None,
    p: Factor = 2,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    init: np.ndarray | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    callback: Callback | None = None,
    similarity_params: Mapping[str, Any] | None = None,
    solver_params: Mapping[str, Any] | None = None,
    cache_boxes: bool = False,
) -> KernelEstimate:
    r""":func:`boneframe.kernel.estimate_kernel` on dask arrays (large volumes).

    Parameters
    ----------
    f, g : dask.array.Array, ndarray or Volume
        High- and low-resolution volumes (as for
        :func:`~boneframe.kernel.estimate_kernel`); the chunks of ``g`` cut the
        valid region into boxes, each read with a halo of the kernel radius.
    similarity, regularizer, solver, support, alpha, p, init_sigma, init, max_iter, tol, \
callback, similarity_params, solver_params
        As :func:`~boneframe.kernel.estimate_kernel`; ``similarity`` is ``"l2"``
        or ``"mi"``.
    cache_boxes : bool
        Trade memory for speed (see :class:`ChunkedKernelProblem`); worth it for
        MI (three passes per gradient evaluation) when the volume fits in memory.

    Returns
    -------
    KernelEstimate
        The in-memory estimate to float rounding.

    Raises
    ------
    InputError
        As :func:`~boneframe.kernel.estimate_kernel`, or another similarity.

    Notes
    -----
    See the module docstring: L2 reduces :math:`X^\top X` and friends once
    (exact solver, GCV); MI reduces ranges, the joint histogram and
    :math:`X^\top w` at every gradient evaluation (three passes over the data).
    The computation runs on the active dask scheduler.

    Examples
    --------
    >>> import dask.array as da
    >>> from boneframe.phantom import simulate_pair
    >>> pair = simulate_pair(48, seed=0, offset=0.05)
    >>> est = estimate_kernel_chunked(da.from_array(pair.hr, chunks=24),
    ...                               da.from_array(pair.lr, chunks=12), support=9)
    >>> round(est.gain, 2), round(est.offset, 2)
    (1.0, 0.05)
    """
    fa, ga, k, pp = check_pair_chunked(f, g, support, p)
    sim, slv, reg = build_strategies(
        similarity, regularizer, solver, alpha, max_iter, tol, similarity_params, solver_params
    )
    if not isinstance(sim, (L2, MutualInformation)):
        raise InputError(
            f"chunked kernel estimation supports the 'l2' and 'mi' similarities, not {similarity!r}"
        )
    stats = _global_statistics(fa, ga, k, pp)
    problem = ChunkedKernelProblem(fa, ga, sim, reg, k, pp, stats=stats, cache_boxes=cache_boxes)

    def fallback() -> float:  # pragma: no cover - no chunked similarity needs it
        raise InputError(f"give alpha for similarity {similarity!r} on chunked volumes")

    return solve_kernel_problem(
        problem,
        slv,
        similarity=similarity,
        regularizer=regularizer,
        solver=solver,
        alpha=alpha,
        init_sigma=init_sigma,
        init=init,
        callback=callback,
        fallback_alpha=fallback,
    )
