r"""The valid region of a kernel-estimation pair, cut into boxes whose sums add up.

Kernel estimation uses only the low-resolution voxels whose footprint lies inside
the high-resolution volume (:func:`boneframe.operators.valid_lr_slices`). Every
quantity it needs is a sum over those voxels — the data term's statistics
(:mod:`boneframe.additive`), :math:`X^\top w`, :math:`X^\top X` — so it
is a sum over *boxes* that tile the region, each box a block of rows of the design
matrix (a :class:`~boneframe.kernel.design.ValidDesign` of its high-resolution
crop: the box plus a halo of the kernel radius).

* An in-memory pair is **one box**: its design is built once and its blur of the
  current kernel is kept, so the several reductions of one evaluation cost one
  blur.
* A dask pair is cut along the chunks of ``g``; every pass is one
  :func:`boneframe.compute.map_reduce` over the boxes (each crop read when its
  task runs, a few in memory at a time), on the active scheduler — threads, or a
  ``dask.distributed`` cluster.

The mean of ``f`` over the whole crop is removed before any box is transformed
(a first reduction), which keeps the float32 Gram products accurate and makes
every box's rows those of the whole problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from boneframe.additive import GreyMoments, LinearGradient
from boneframe.compute import compute, is_lazy, map_reduce
from boneframe.errors import InputError
from boneframe.kernel.design import ValidDesign
from boneframe.operators import valid_lr_slices

__all__ = ["Box", "KernelBoxes", "PairMoments", "hr_crop", "lr_boxes"]

Box = tuple[slice, slice, slice]
T = TypeVar("T")


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


def _shifted(box: Box, origin: Sequence[int]) -> Box:
    """``box`` with ``origin`` as its index 0."""
    a, b, c = (slice(s.start - o, s.stop - o) for s, o in zip(box, origin, strict=True))
    return a, b, c


def hr_crop(box: Sequence[slice], support: Sequence[int], p: Sequence[int]) -> Box:
    """High-resolution crop holding the footprints of a low-resolution box:
    ``[p a - r, p (b - 1) + r + 1)`` per axis for box ``[a, b)``, ``r = K // 2``."""
    return tuple(  # type: ignore[return-value]
        slice(q * s.start - k // 2, q * (s.stop - 1) + k // 2 + 1)
        for s, k, q in zip(box, support, p, strict=True)
    )


@dataclass(frozen=True)
class PairMoments:
    """Count, means and centred second moments of a prediction ``u`` and ``g``;
    ``+`` merges two sets exactly (parallel update)."""

    n: int
    mean_u: float
    mean_g: float
    uu: float
    ug: float
    gg: float

    @classmethod
    def of(cls, u: np.ndarray, g: np.ndarray) -> PairMoments:
        """The moments of one block."""
        du = np.subtract(u, u.mean(), dtype=np.float64).ravel()
        dg = np.subtract(g, g.mean(), dtype=np.float64).ravel()
        return cls(
            du.size,
            float(u.mean()),
            float(g.mean()),
            float(du @ du),
            float(du @ dg),
            float(dg @ dg),
        )

    def __add__(self, other: PairMoments) -> PairMoments:
        n = self.n + other.n
        du, dg = other.mean_u - self.mean_u, other.mean_g - self.mean_g
        c = self.n * other.n / n
        return PairMoments(
            n,
            self.mean_u + du * other.n / n,
            self.mean_g + dg * other.n / n,
            self.uu + other.uu + du * du * c,
            self.ug + other.ug + du * dg * c,
            self.gg + other.gg + dg * dg * c,
        )


# -- work on one box (module level: a cluster pickles these) ---------------------------
def _design(crop: Any, f_mean: float, support: tuple, p: tuple) -> ValidDesign:
    """The box's design (a crop is mean-removed and transformed; a design is kept)."""
    if isinstance(crop, ValidDesign):
        return crop
    return ValidDesign(np.asarray(crop, dtype=np.float64) - f_mean, support, p)


def _predict(
    crop: Any, g: Any, f_mean: float, support: tuple, p: tuple, h: np.ndarray, t: float
) -> tuple[ValidDesign, np.ndarray, np.ndarray]:
    """The box's design, ``u = X h + t sum(h)`` and ``g`` (float64)."""
    design = _design(crop, f_mean, support, p)
    u = design.blur(h) + t * float(np.sum(h))
    return design, u, np.asarray(g, dtype=np.float64)


def _reduce_box(
    crop: Any,
    g: Any,
    index: Box,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    fn: Callable[..., Any],
    *shared: Any,
) -> Any:
    _, u, gb = _predict(crop, g, f_mean, support, p, h, t)
    return fn(u, gb, *shared)


def _gradient_box(
    crop: Any,
    g: Any,
    index: Box,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    correlate: bool,
    coefficients: Callable[..., Any] | None,
    fields: Callable[..., Any],
    *shared: Any,
) -> dict[str, Any]:
    """The box's part of ``X^T w`` and ``sum w``, field by field, with the sums the
    coefficients need. Given the ``coefficients`` (a single box: its sums are the
    totals), ``w`` is combined first and correlated once, under the name ``"w"``."""
    design, u, gb = _predict(crop, g, f_mean, support, p, h, t)
    phi, sums = fields(u, gb, index, *shared)
    if coefficients is not None:
        w = LinearGradient.combine(phi, 1.0, coefficients(sums))
        phi, sums = {"w": np.broadcast_to(np.asarray(w, dtype=np.float64), design.lr_shape)}, {}
    out: dict[str, Any] = {
        "total": {k: float(np.sum(v)) for k, v in phi.items()},
        "sums": dict(sums),
    }
    if correlate:
        out["corr"] = {k: design.correlate(np.reshape(v, design.lr_shape)) for k, v in phi.items()}
    return out


def _gather_box(
    crop: Any, g: Any, index: Box, f_mean: float, support: tuple, p: tuple, h: np.ndarray, t: float
) -> list[tuple[Box, np.ndarray, np.ndarray]]:
    _, u, gb = _predict(crop, g, f_mean, support, p, h, t)
    return [(index, u, gb)]


def _g_moments(crop: Any, g: Any, index: Box) -> GreyMoments:
    return GreyMoments.of(np.asarray(g))


def _gram_box(crop: Any, g: Any, index: Box, f_mean: float, support: tuple, p: tuple) -> dict:
    design = _design(crop, f_mean, support, p)
    gb = np.asarray(g, dtype=np.float64)
    return {
        "xtx": design.gram(),
        "xt1": design.correlate(np.ones_like(gb)),
        "xtg": design.correlate(gb),
    }


def _xt1_box(crop: Any, g: Any, index: Box, f_mean: float, support: tuple, p: tuple) -> np.ndarray:
    design = _design(crop, f_mean, support, p)
    return design.correlate(np.ones(design.lr_shape))


def _pair_moments(u: np.ndarray, g: np.ndarray) -> PairMoments:
    return PairMoments.of(u, g)


# -- the boxes -------------------------------------------------------------------------
class KernelBoxes:
    """The valid region of a pair as boxes of design-matrix rows, and the passes over them.

    Parameters
    ----------
    f, g : numpy or dask arrays
        High- and low-resolution volumes (shapes already checked: ``g.shape ==
        ceil(f.shape / p)``). When either is a dask array, the boxes follow the
        chunks of ``g`` (a numpy ``g`` is chunked like ``f / p``).
    support, p : 3 ints
        Odd kernel support and decimation factor.
    cache : bool
        Dask input only: keep every box's mean-removed crop and its transform in
        (worker) memory between passes instead of re-reading and re-transforming
        it: 2–3× faster gradient descent, about five times the high-resolution
        volume in float64 held at once.

    Raises
    ------
    InputError
        NaN or infinite values, a constant volume (first pass).
    """

    def __init__(
        self, f: Any, g: Any, support: tuple[int, int, int], p: tuple[int, int, int], *,
        cache: bool = False,
    ):
        self.support, self.p = support, p
        self.lr_slices = valid_lr_slices(f.shape, support, p)
        self.valid_shape = tuple(s.stop - s.start for s in self.lr_slices)
        self.n_valid = int(np.prod(self.valid_shape))
        self.lazy = is_lazy(f) or is_lazy(g)
        if self.lazy:
            f, g = _as_dask_pair(f, g, p)
            boxes = lr_boxes(self.lr_slices, g.chunks)
        else:
            boxes = [self.lr_slices]
        self.boxes: list[Box] = boxes
        self.f_mean, self.f_var = self._check_values(f, g)
        origin = [s.start for s in self.lr_slices]
        index = [_shifted(b, origin) for b in boxes]
        crops = [hr_crop(b, support, p) for b in boxes]
        if self.lazy:
            import dask

            self.parts: list[tuple[Any, Any, Box]] = [
                (dask.delayed(f[c]), dask.delayed(g[b]), i)
                for c, b, i in zip(crops, boxes, index, strict=True)
            ]
            if cache:
                designs = [dask.delayed(_design)(c, *self._geometry) for c, _, _ in self.parts]
                persisted = dask.persist(*designs)
                self.parts = [
                    (d, gb, i) for d, (_, gb, i) in zip(persisted, self.parts, strict=True)
                ]
        else:
            crop = np.asarray(f[crops[0]], dtype=np.float64) - self.f_mean
            gb = np.asarray(g[boxes[0]], dtype=np.float64)
            self.parts = [(ValidDesign(crop, support, p), gb, index[0])]
        self.data: GreyMoments = self.map(_g_moments, with_geometry=False)
        if self.data.hi == self.data.lo:
            raise InputError(
                "the low-resolution volume is constant: it carries no kernel information"
            )
        self._xt1: np.ndarray | None = None
        self._gram: dict[str, np.ndarray] | None = None

    def _check_values(self, f: Any, g: Any) -> tuple[float, float]:
        """One pass: finiteness, the range of ``f``, its mean and variance over the
        whole crop."""
        crop = f[hr_crop(self.lr_slices, self.support, self.p)]
        f_ok, g_ok, lo, hi, mean, var = compute(
            np.isfinite(f).all(),
            np.isfinite(g).all(),
            f.min(),
            f.max(),
            crop.mean(dtype=np.float64),
            crop.var(dtype=np.float64),
        )
        if not f_ok:
            raise InputError("the high-resolution volume contains NaN or infinite values")
        if not g_ok:
            raise InputError("the low-resolution volume contains NaN or infinite values")
        if lo == hi:
            raise InputError(
                "the high-resolution volume is constant: it carries no kernel information"
            )
        return float(mean), float(var)

    @property
    def _geometry(self) -> tuple[float, tuple, tuple]:
        return self.f_mean, self.support, self.p

    def map(self, fn: Callable[..., T], *shared: Any, with_geometry: bool = True) -> T:
        """``fn(crop_or_design, g, index, [f_mean, support, p,] *shared)`` summed over boxes."""
        extra = (*self._geometry, *shared) if with_geometry else shared
        return map_reduce(fn, self.parts, *extra, lazy=self.lazy)

    # -- passes at a kernel ---------------------------------------------------------
    def reduce(self, h: np.ndarray, t: float, fn: Callable[..., T], *shared: Any) -> T:
        """``fn(u, g, *shared)`` summed over boxes, ``u = X h + t sum(h)``."""
        return self.map(_reduce_box, h, t, fn, *shared)

    def gather(self, h: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``u`` and ``g`` over the whole valid region, in memory."""
        parts = self.map(_gather_box, h, t)
        u = np.empty(self.valid_shape)
        g = np.empty(self.valid_shape)
        for index, ub, gb in parts:
            u[index], g[index] = ub, gb
        return u, g

    def gradient(
        self, lg: LinearGradient, h: np.ndarray, t: float, *, correlate: bool = True
    ) -> tuple[np.ndarray | None, float]:
        r""":math:`X^\top w` (kernel-shaped; ``None`` unless ``correlate``) and
        :math:`\sum w` of a linear gradient, in one pass."""
        single = len(self.parts) == 1
        combined = lg.coefficients if single else None
        out = self.map(_gradient_box, h, t, correlate, combined, lg.fields, *lg.shared)
        if single:  # already combined into "w"
            corr = out["corr"]["w"] if correlate else None
            return corr, out["total"]["w"]
        coefficients = lg.coefficients(out["sums"])
        total = LinearGradient.combine(out["total"], float(self.n_valid), coefficients)
        if not correlate:
            return None, float(total)
        corr = LinearGradient.combine(out["corr"], self.xt1(), coefficients)
        return np.asarray(corr, dtype=np.float64), float(total)

    def pair_moments(self, h: np.ndarray, t: float) -> PairMoments:
        """Moments of ``u`` and ``g`` over the valid region."""
        return self.reduce(h, t, _pair_moments)

    # -- kernel-independent sums (kept) ---------------------------------------------
    def xt1(self) -> np.ndarray:
        r""":math:`X^\top 1`, kernel-shaped: every tap's sum of the mean-removed ``f``."""
        if self._xt1 is None:
            self._xt1 = self._gram["xt1"] if self._gram is not None else self.map(_xt1_box)
        return self._xt1

    def gram(self) -> dict[str, np.ndarray]:
        r""":math:`X^\top X`, :math:`X^\top 1` and :math:`X^\top g` (flattened), one pass."""
        if self._gram is None:
            out = self.map(_gram_box)
            self._xt1 = out["xt1"]
            self._gram = {k: (v if k == "xtx" else v.ravel()) for k, v in out.items()}
        return self._gram


def _as_dask_pair(f: Any, g: Any, p: Sequence[int]) -> tuple[Any, Any]:
    """Both volumes as dask arrays; a numpy ``g`` is chunked like ``f / p``."""
    import dask.array as da

    fa = f if is_lazy(f) else da.from_array(np.asarray(f), chunks=-1)
    if is_lazy(g):
        return fa, g
    lr_chunks = tuple(
        tuple(-(-c // q) for c in axis) for axis, q in zip(fa.chunks, p, strict=True)
    )
    fits = all(sum(c) == n for c, n in zip(lr_chunks, np.shape(g), strict=True))
    return fa, da.from_array(np.asarray(g), chunks=lr_chunks if fits else -1)
