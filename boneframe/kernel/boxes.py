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

**Cells and weights** (the block bootstrap, :mod:`boneframe.kernel.bootstrap`).
Given ``box``, the valid region is also cut into *cells* of about that many
low-resolution voxels per axis (:func:`cell_edges`), which cut each box into
:class:`Pieces`. With integer ``weights`` (one per cell,
:attr:`KernelBoxes.weights`) every pass still blurs and correlates each box
whole, but sums over its pieces, each counted as often as its cell's weight (a
reduction's result added that many times with ``+``, the gradient's fields
multiplied, 0 leaving it out): every sum, every reduction of a similarity and
every gradient is that of the data set in which each cell's voxels appear that
many times — a bootstrap replicate, for any additive similarity — at about the
cost of a pass without weights. Without weights (``None``, the default) the
passes are exactly those above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from boneframe.additive import GreyMoments, LinearGradient
from boneframe.compute import add, compute, is_lazy, map_reduce
from boneframe.errors import InputError
from boneframe.kernel.design import ValidDesign
from boneframe.kernel.quadratic import cell_counts, upper_indices
from boneframe.operators import valid_lr_slices

__all__ = ["Box", "KernelBoxes", "PairMoments", "cell_edges", "hr_crop", "lr_boxes"]

Box = tuple[slice, slice, slice]
T = TypeVar("T")


def lr_boxes(
    lr_slices: Sequence[slice],
    chunks: Sequence[Sequence[int]],
    cuts: Sequence[Sequence[int]] | None = None,
) -> list[Box]:
    """Cut the valid low-resolution region along chunk boundaries.

    Parameters
    ----------
    lr_slices : 3 slices
        The valid region (:func:`~boneframe.operators.valid_lr_slices`).
    chunks : dask chunks of the low-resolution volume
    cuts : 3 sequences of ints, optional
        Further cuts per axis (global indices; e.g. the :func:`cell_edges`).

    Returns
    -------
    list of 3-tuples of slices
        Boxes (global low-resolution indices) tiling the valid region, C order.
    """
    per_axis = []
    extra = cuts if cuts is not None else ((),) * len(lr_slices)
    for sl, sizes, more in zip(lr_slices, chunks, extra, strict=True):
        edges = [*np.concatenate([[0], np.cumsum(sizes)]).tolist(), *more]
        inner = sorted({int(e) for e in edges if sl.start < e < sl.stop})
        bounds = [sl.start, *inner, sl.stop]
        per_axis.append([slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return [(s0, s1, s2) for s0 in per_axis[0] for s1 in per_axis[1] for s2 in per_axis[2]]


def cell_edges(lr_slices: Sequence[slice], box: Sequence[int]) -> list[list[int]]:
    """Edges of the cells that cut the valid region into blocks of about ``box`` voxels.

    Parameters
    ----------
    lr_slices : 3 slices
        The valid region (:func:`~boneframe.operators.valid_lr_slices`).
    box : 3 ints
        Wanted low-resolution side of a cell per axis (at least 1).

    Returns
    -------
    list of 3 lists of ints
        Per axis, the global indices ``start = e_0 < e_1 < ... < e_m = stop``:
        ``m = max(1, round(n / box))`` cells of ``floor(n / m)`` or
        ``ceil(n / m)`` voxels for ``n`` valid voxels (nearly equal cells, so that
        every cell weighs about the same in a bootstrap).
    """
    out = []
    for sl, b in zip(lr_slices, box, strict=True):
        n = sl.stop - sl.start
        m = max(1, int(np.floor(n / b + 0.5)))
        out.append([sl.start + (i * n) // m for i in range(m + 1)])
    return out


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
@dataclass(frozen=True)
class Pieces:
    """A box cut along the cells, each piece counted as often as its cell's weight.

    Given as the ``index`` of a box when :attr:`KernelBoxes.weights` are set: every
    function of a box then evaluates the box as a whole (one blur, one
    correlation) and sums over its pieces.

    Attributes
    ----------
    items : tuple of (cell, times, local, index)
        Per piece: its cell, how many times it counts (0: left out), its slices
        inside the box and inside the valid region.
    """

    items: tuple[tuple[int, int, Box, Box], ...]

    @property
    def counted(self) -> list[tuple[int, Box, Box]]:
        """``(times, local, index)`` of the pieces counted at least once."""
        return [(m, local, index) for _, m, local, index in self.items if m > 0]

    def total(self, fn: Callable[[Box, Box], T]) -> T:
        """``fn(local, index)`` summed (``+``) over the pieces, each as often as it counts."""
        out: Any = None
        for m, local, index in self.counted:
            one = fn(local, index)
            for _ in range(m):
                out = one if out is None else add(out, one)
        return cast(T, out)

    def counts(self, shape: Sequence[int]) -> np.ndarray:
        """How many times each voxel of the box counts."""
        out = np.zeros(tuple(shape))
        for m, local, _ in self.counted:
            out[local] = m
        return out

    def grouped(self, fn: Callable[..., T], *arrays: np.ndarray) -> T:
        """``fn(*selected)`` summed (``+``) over the voxels of the box, each as often
        as it counts: the voxels counted ``m`` times are selected together (flat)
        and the result added ``m`` times, so a reduction runs once per distinct
        count, not once per piece."""
        counts = self.counts(arrays[0].shape)
        out: Any = None
        for m in np.unique(counts[counts > 0]).astype(int).tolist():
            mask = counts == m
            one = fn(*(a[mask] for a in arrays))
            for _ in range(m):
                out = one if out is None else add(out, one)
        return cast(T, out)


def _design(crop: Any, f_mean: float, support: tuple, p: tuple) -> ValidDesign:
    """The box's design (a crop is mean-removed and transformed; a design is kept)."""
    if isinstance(crop, ValidDesign):
        return crop
    return ValidDesign(np.asarray(crop, dtype=np.float64) - f_mean, support, p)


def _piece_design(design: ValidDesign, local: Box) -> ValidDesign:
    """The design of the rows ``local`` of a box's design (its own crop)."""
    crop = tuple(
        slice(q * s.start, q * (s.stop - 1) + k)
        for s, q, k in zip(local, design.p, design.support, strict=True)
    )
    return ValidDesign(design.f[crop], design.support, design.p)


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
    index: Box | Pieces,
    f_mean: float,
    support: tuple,
    p: tuple,
    h: np.ndarray,
    t: float,
    fn: Callable[..., Any],
    *shared: Any,
) -> Any:
    _, u, gb = _predict(crop, g, f_mean, support, p, h, t)
    if isinstance(index, Pieces):
        return index.grouped(lambda ub, gs: fn(ub, gs, *shared), u, gb)
    return fn(u, gb, *shared)


def _gradient_box(
    crop: Any,
    g: Any,
    index: Box | Pieces,
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
    totals), ``w`` is combined first and correlated once, under the name ``"w"``.
    Cut into :class:`Pieces`, each piece's fields are counted as often as it counts
    (the constant field 1 becomes :meth:`Pieces.counts`)."""
    design, u, gb = _predict(crop, g, f_mean, support, p, h, t)
    one: Any = 1.0
    if isinstance(index, Pieces):
        phi: dict[str, Any] = {}
        total: dict[str, Any] | None = None
        for m, local, at in index.counted:
            part_phi, part_sums = fields(u[local], gb[local], at, *shared)
            for k, v in part_phi.items():
                if k not in phi:
                    phi[k] = np.zeros(design.lr_shape)
                phi[k][local] += m * np.asarray(v)
            for _ in range(m):
                total = dict(part_sums) if total is None else add(total, dict(part_sums))
        sums = total or {}
        one = index.counts(design.lr_shape)
    else:
        phi, sums = fields(u, gb, index, *shared)
    if coefficients is not None:
        w = LinearGradient.combine(phi, one, coefficients(sums))
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


def _g_moments(crop: Any, g: Any, index: Box | Pieces) -> GreyMoments:
    if isinstance(index, Pieces):
        return index.grouped(GreyMoments.of, np.asarray(g))
    return GreyMoments.of(np.asarray(g))


def _gram_box(
    crop: Any, g: Any, index: Box | Pieces, f_mean: float, support: tuple, p: tuple
) -> dict:
    design = _design(crop, f_mean, support, p)
    gb = np.asarray(g, dtype=np.float64)
    if isinstance(index, Pieces):
        count = index.counts(design.lr_shape)
        return {
            "xtx": index.total(lambda local, _: _piece_design(design, local).gram()),
            "xt1": design.correlate(count),
            "xtg": design.correlate(count * gb),
        }
    return {
        "xtx": design.gram(),
        "xt1": design.correlate(np.ones_like(gb)),
        "xtg": design.correlate(gb),
    }


def _xt1_box(
    crop: Any, g: Any, index: Box | Pieces, f_mean: float, support: tuple, p: tuple
) -> np.ndarray:
    design = _design(crop, f_mean, support, p)
    if isinstance(index, Pieces):
        return design.correlate(index.counts(design.lr_shape))
    return design.correlate(np.ones(design.lr_shape))


def _pair_moments(u: np.ndarray, g: np.ndarray) -> PairMoments:
    return PairMoments.of(u, g)


def _cell_sums_box(
    crop: Any, g: Any, index: Pieces, f_mean: float, support: tuple, p: tuple
) -> dict[int, dict[str, Any]]:
    r"""Each piece's :math:`X^\top X` (upper triangle, row by row), :math:`X^\top 1`,
    :math:`X^\top g` and moments of ``g``, keyed by its cell (counts ignored)."""
    design = _design(crop, f_mean, support, p)
    gb = np.asarray(g, dtype=np.float64)
    out: dict[int, dict[str, Any]] = {}
    for cell, _, local, _ in index.items:
        piece = _piece_design(design, local)
        xtx = piece.gram()
        sums = {
            "xtx": xtx[upper_indices(xtx.shape[0])],
            "xt1": piece.correlate(np.ones(piece.lr_shape)).ravel(),
            "xtg": piece.correlate(gb[local]).ravel(),
            "data": GreyMoments.of(gb[local]),
        }
        out = _merge_cells(out, {cell: sums})
    return out


def _merge_cells(a: dict[int, Any], b: dict[int, Any]) -> dict[int, Any]:
    """Two sets of per-cell sums in one (a cell in both: its sums added)."""
    out = dict(a)
    for cell, sums in b.items():
        out[cell] = add(out[cell], sums) if cell in out else sums
    return out


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
    box : 3 ints, optional
        Cut the valid region into cells of about this many low-resolution voxels
        per axis (:func:`cell_edges`), the units :attr:`weights` count; the boxes
        stay as they are (each evaluated whole, then summed over the
        :class:`Pieces` the cells cut it into). Default: the cells are the boxes
        (one in memory, the chunks).

    Attributes
    ----------
    cells : list of 3-tuples of slices
        The cells (global low-resolution indices), C order.
    pieces : list of list of (cell, local, index)
        Per box, the cells it meets: the cell, its slices inside the box and inside
        the valid region.

    Raises
    ------
    InputError
        NaN or infinite values, a constant volume (first pass).
    """

    def __init__(
        self,
        f: Any,
        g: Any,
        support: tuple[int, int, int],
        p: tuple[int, int, int],
        *,
        cache: bool = False,
        box: Sequence[int] | None = None,
    ):
        self.support, self.p = support, p
        self.lr_slices = valid_lr_slices(f.shape, support, p)
        self.valid_shape = tuple(s.stop - s.start for s in self.lr_slices)
        self.lazy = is_lazy(f) or is_lazy(g)
        if self.lazy:
            f, g = _as_dask_pair(f, g, p)
            boxes = lr_boxes(self.lr_slices, g.chunks)
        else:
            boxes = [self.lr_slices]
        self.boxes: list[Box] = boxes
        origin = [s.start for s in self.lr_slices]
        index = [_shifted(b, origin) for b in boxes]
        whole = [[n] for n in g.shape]
        self.cells = (
            list(boxes)
            if box is None
            else lr_boxes(self.lr_slices, whole, cell_edges(self.lr_slices, box))
        )
        self.pieces = [_pieces(b, self.cells, origin) for b in boxes]
        self.cell_sizes = np.array([_size(c) for c in self.cells])
        self._weights: np.ndarray | None = None
        self.f_mean, self.f_var = self._check_values(f, g)
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
        self._data0: GreyMoments = self.map(_g_moments, with_geometry=False)
        if self._data0.hi == self._data0.lo:
            raise InputError(
                "the low-resolution volume is constant: it carries no kernel information"
            )
        self._data: GreyMoments | None = self._data0
        self._xt1: np.ndarray | None = None
        self._gram: dict[str, np.ndarray] | None = None

    # -- cells and their weights -----------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self.cells)

    @property
    def cell_shape(self) -> tuple[int, int, int]:
        """Cells per axis."""
        a, b, c = (len({cell[axis].start for cell in self.cells}) for axis in range(3))
        return a, b, c

    @property
    def weights(self) -> np.ndarray | None:
        """How many times each cell counts (non-negative integers, one per cell), or
        ``None``: every voxel once, the passes exactly as without cells."""
        return self._weights

    @weights.setter
    def weights(self, weights: Any) -> None:
        w = None if weights is None else cell_counts(weights, self.n_cells)
        self._weights = w
        self._data = self._data0 if w is None else None
        self._xt1 = None
        self._gram = None

    @property
    def n_valid(self) -> int:
        """Number of valid voxels, each counted as often as its cell's weight."""
        if self._weights is None:
            return int(np.prod(self.valid_shape))
        return int(self._weights @ self.cell_sizes)

    @property
    def data(self) -> GreyMoments:
        """Moments of ``g`` over the valid voxels (weighted)."""
        if self._data is None:
            self._data = self.map(_g_moments, with_geometry=False)
        return self._data

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
        """``fn(crop_or_design, g, index, [f_mean, support, p,] *shared)`` summed over
        boxes, each counted as often as its cell's weight."""
        extra = (*self._geometry, *shared) if with_geometry else shared
        if self._weights is None:
            return map_reduce(fn, self.parts, *extra, lazy=self.lazy)
        return map_reduce(fn, self._weighted_parts(), *extra, lazy=self.lazy)

    def _weighted_parts(self, keep_all: bool = False) -> list[tuple[Any, Any, Pieces]]:
        """The boxes with their :class:`Pieces` as index (counted by the weights, all
        ones without), those with nothing counted left out unless ``keep_all``."""
        w = self._weights
        out = []
        for (crop, gb, _), pieces in zip(self.parts, self.pieces, strict=True):
            items = tuple((c, 1 if w is None else int(w[c]), lo, at) for c, lo, at in pieces)
            if keep_all or any(m > 0 for _, m, _, _ in items):
                out.append((crop, gb, Pieces(items)))
        return out

    def cell_sums(self) -> list[dict[str, Any]]:
        r"""Per cell (weights ignored), in one pass: ``xtx`` (:math:`X^\top X`, its
        upper triangle row by row), ``xt1`` and ``xtg`` (:math:`X^\top 1`,
        :math:`X^\top g`, flattened) and ``data`` (the moments of ``g``).

        Notes
        -----
        Memory: per cell :math:`K^3 (K^3 + 1) / 2` floats for the triangle (2.1 MB for
        :math:`K = 9`, 19 MB for 13), all cells held at once.
        """
        parts = self._weighted_parts(keep_all=True)
        out = map_reduce(
            _cell_sums_box, parts, *self._geometry, combine=_merge_cells, lazy=self.lazy
        )
        return [out[c] for c in range(self.n_cells)]

    # -- passes at a kernel ---------------------------------------------------------
    def reduce(self, h: np.ndarray, t: float, fn: Callable[..., T], *shared: Any) -> T:
        """``fn(u, g, *shared)`` summed over boxes, ``u = X h + t sum(h)``."""
        return self.map(_reduce_box, h, t, fn, *shared)

    def gather(self, h: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``u`` and ``g`` over the whole valid region, in memory.

        Raises
        ------
        InputError
            Weights other than all ones: the data set of a bootstrap replicate is no
            volume (a similarity that gathers it cannot be bootstrapped).
        """
        if self._weights is not None and np.any(self._weights != 1):
            raise InputError(
                "a bootstrap replicate (cells counted several times) cannot be gathered into "
                "a volume: the similarity must be additive (boneframe.additive.AdditiveSimilarity)"
            )
        parts = map_reduce(_gather_box, self.parts, *self._geometry, h, t, lazy=self.lazy)
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


def _size(box: Sequence[slice]) -> int:
    return int(np.prod([s.stop - s.start for s in box]))


def _pieces(box: Box, cells: Sequence[Box], origin: Sequence[int]) -> list[tuple[int, Box, Box]]:
    """The cells ``box`` meets: ``(cell, slices inside the box, slices inside the valid
    region whose first voxel is origin)``."""
    out = []
    for c, cell in enumerate(cells):
        meet = [
            slice(max(a.start, b.start), min(a.stop, b.stop))
            for a, b in zip(box, cell, strict=True)
        ]
        if all(s.start < s.stop for s in meet):
            local = tuple(
                slice(s.start - b.start, s.stop - b.start) for s, b in zip(meet, box, strict=True)
            )
            out.append((c, local, _shifted(tuple(meet), origin)))  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def _as_dask_pair(f: Any, g: Any, p: Sequence[int]) -> tuple[Any, Any]:
    """Both volumes as dask arrays; a numpy ``g`` is chunked like ``f / p``."""
    import dask.array as da

    fa = f if is_lazy(f) else da.from_array(np.asarray(f), chunks=-1)
    if is_lazy(g):
        return fa, g
    lr_chunks = tuple(tuple(-(-c // q) for c in axis) for axis, q in zip(fa.chunks, p, strict=True))
    fits = all(sum(c) == n for c, n in zip(lr_chunks, np.shape(g), strict=True))
    return fa, da.from_array(np.asarray(g), chunks=lr_chunks if fits else -1)
