r"""The local thickness of one block, from the smallest neighbourhood that makes it exact.

:func:`~boneframe.metrics.thickness.thickness_of_block` is exact with a halo of
:math:`2R + 2`, :math:`R` the largest distance over the *whole* volume, which a
pass over every block must measure first. :func:`block_thickness` needs no
such pass: each block checks, from its own distances, that its map is exact,
and grows its neighbourhood when it is not. With :math:`R_w` the largest
distance (voxels, rounded down) over the block grown by :math:`m + 1`:

* **Balls.** Every ball that paints the block grown by 2 is centred in the
  window, the block grown by :math:`m`, when :math:`m \ge R_w + 2`. A ball
  centred at :math:`c` outside the window that contains a voxel :math:`p` of
  the block + 2 has radius :math:`d(c) \ge |c - p|`. Let :math:`y` be the
  point of the block grown by :math:`m + 1` nearest to :math:`c`: along the
  axes where :math:`c` lies beyond it, :math:`p` lies at least :math:`m - 1`
  further in, so :math:`|c - p| \ge |c - y| + m - 1`, and since the distance
  to the other phase changes by at most the step,
  :math:`d(y) \ge d(c) - |c - y| \ge m - 1 \ge R_w + 1`, which no voxel of
  the block + (m + 1) reaches (if :math:`c` is itself in the block + (m + 1),
  :math:`d(c) \ge m - 1` directly). The rest is the module notes of
  :mod:`boneframe.metrics.thickness`: the window's ridge holds every true
  ridge point that matters, the extra ones change nothing.
* **Distances.** The distance transform of the block grown by :math:`h` is
  exact at a voxel whose distance is less than the gap to the faces where the
  neighbourhood (not the volume's border) is cut: a voxel :math:`t` voxels
  beyond the block towards such a face is :math:`h - t + 1` from the first
  voxel left out, so its distance is exact when
  :math:`\lfloor\sqrt q\rfloor + t \le h`. The distances must be exact on
  the block grown by :math:`m + 1` (the window's ridge and its balls read
  them): the largest of :math:`\lfloor\sqrt q\rfloor + t` there, at most
  :math:`R_w + m + 1`, is the halo needed (a distance that passes the test is
  exact, so the test may run on the distances it checks).

:math:`R_w` is found from the block's own largest distance, raised while the
block grown by :math:`m + 1` holds a larger one. So a block needs
:math:`m = R_w + 2` and a halo of at most :math:`2 R_w + 3`, with :math:`R_w`
its own neighbourhood's reach (at most the volume's :math:`R`): the map equals
the in-memory one voxel for voxel, whatever the halo the block was given, and
a block whose halo is too small says how much it needs. The ridge is taken on
the block grown by :math:`m + 1`, so that every ridge point of the window has
all its neighbours (no extra ones on its faces); those of the outer layer are
too far to paint the block + 2.
"""

from __future__ import annotations

import math

import numpy as np

from boneframe.interfaces import MetricBlock
from boneframe.metrics.thickness import (
    Phase,
    painted_thickness,
    phase_distances,
    window_of,
    window_ridge,
)


def _reach(d2: np.ndarray) -> int | None:
    """:math:`\\lfloor\\sqrt{\\max q}\\rfloor` of squared distances; None when one is infinite."""
    if d2.size == 0:
        return 0
    top = float(d2.max())
    return math.isqrt(int(top + 0.5)) if math.isfinite(top) else None


#: Per axis, whether the low and the high face of a block's neighbourhood are cut by
#: the halo (not by the volume's border).
Cuts = tuple[tuple[bool, bool], ...]


def _roots(d2: np.ndarray) -> np.ndarray:
    r""":math:`\lfloor\sqrt q\rfloor` of finite squared distances (whole numbers)."""
    return np.floor(np.sqrt(d2.astype(np.float64) + 0.5)).astype(np.int64)


def _exact_from(d2: np.ndarray, core: tuple[slice, ...], cuts: Cuts) -> int:
    r"""The least halo for which the distances ``d2`` (of a box holding ``core``) are
    exact: the largest :math:`\lfloor\sqrt q\rfloor + t` over the voxels ``t`` beyond
    the core towards a cut face (see the module's notes); 0 when nothing is cut."""
    need = 0
    for axis, (c, (low, high)) in enumerate(zip(core, cuts, strict=True)):
        if not (low or high):
            continue
        others = tuple(a for a in range(d2.ndim) if a != axis)
        profile = _roots(d2.max(axis=others))  # the largest distance of each layer
        if low and c.start > 0:
            beyond = np.arange(c.start, 0, -1)  # t of the layers before the core
            need = max(need, int(np.max(profile[: c.start] + beyond)))
        if high and c.stop < d2.shape[axis]:
            beyond = np.arange(1, d2.shape[axis] - c.stop + 1)
            need = max(need, int(np.max(profile[c.stop :] + beyond)))
    return need


def exact_margin(d2: np.ndarray, core: tuple[slice, ...], halo: int, cuts: Cuts) -> tuple[int, int]:
    """The window's margin for an exact map, and the halo that makes it exact.

    Parameters
    ----------
    d2 : numpy.ndarray
        :func:`~boneframe.metrics.thickness.phase_distances` of the block grown
        by ``halo`` (cut at the volume's border).
    core : tuple of slice
        Where the block lies in ``d2``.
    halo : int
        The halo ``d2`` was computed with.
    cuts : per axis, (low, high)
        Which faces of the neighbourhood the halo cuts (elsewhere the volume's
        border does, and the distances are exact).

    Returns
    -------
    (int, int)
        ``(margin, need)``: the map is exact on the window of that margin when
        the halo is at least ``need`` (see the module's notes); ``margin`` is 0
        when ``halo`` is less (or nothing is known: no other phase within it).
    """
    reach = _reach(d2[core])
    while reach is not None:
        margin = reach + 2
        outer, inner = window_of(core, d2.shape, margin + 1)
        wide = _reach(d2[outer])
        if wide is None:
            break
        if wide > reach:
            reach = wide
            continue
        need = max(margin + 1, _exact_from(d2[outer], inner, cuts))
        cut = any(low or high for low, high in cuts)
        return (margin if not cut or halo >= need else 0), need
    return 0, 2 * halo + 2  # no other phase within the halo: it must grow


def _cuts(b: MetricBlock, halo: int) -> Cuts:
    """Which faces of the block grown by ``halo`` stop short of the volume's border."""
    return tuple(
        (s - halo > 0, s + size + halo < n)
        for s, size, n in zip(b.start, b.shape, b.context.shape, strict=True)
    )


def block_thickness(
    b: MetricBlock, phase: Phase, side: float, threads: int = 1, loops: int | None = 1
) -> tuple[np.ndarray | None, int]:
    """The local thickness map (µm) of the block's voxels and the halo it needs.

    Starts with the block's ``halo`` and grows it, up to the ``grown_by`` voxels
    the block holds (one distance transform per try), until :func:`exact_margin`
    finds the map exact; the map is then that of
    :func:`~boneframe.metrics.thickness.thickness_of_block` on the whole volume,
    cut to the block.

    ``threads`` run the distance transform, ``loops`` the compiled loops (None:
    all the CPUs; blocks side by side on dask's workers want one each, while the
    distance transform, which holds the GIL, wants them all).

    Returns
    -------
    (numpy.ndarray of float32 or None, int)
        The map (NaN outside the phase) and the least halo that makes it exact
        (0 when any does: no phase in the block, or nothing but it in the
        volume); or None and the halo needed, more than ``grown_by``.
    """
    most = max(int(b.grown_by), 0)
    halo = min(max(int(b.halo), 1), most)
    while True:
        grown, core = b.neighbourhood(halo)
        inside = np.ascontiguousarray(grown if phase == "bone" else ~grown)
        cuts = _cuts(b, halo)
        cut = any(low or high for low, high in cuts)
        if not inside[core].any() or (not cut and inside.all()):
            return np.full(b.shape, np.nan, dtype=np.float32), 0  # as thickness_of_block
        d2 = phase_distances(inside, threads)
        margin, need = exact_margin(d2, core, halo, cuts)
        if margin:
            # the ridge of the window + 1, whose distances are exact too: every ridge
            # point of the window is then a true one (a point on its faces keeps all
            # its neighbours), and those of the outer layer reach nothing painted
            window, block = window_of(core, inside.shape, margin + 1)
            ridge = window_ridge(d2, window, loops)
            del d2
            return painted_thickness(ridge, inside[window], block, side, loops), need
        if halo >= most:
            return None, need
        halo = min(need, most)
