r"""Local thickness (Tb.Th, Tb.Sp) of a large binary volume, chunk by chunk.

:func:`local_thickness_chunked` gives, chunk for chunk, the same map as the
in-memory :func:`boneframe.metrics.thickness.local_thickness` (the same
compiled kernels, the same BoneJ2 conventions), by solving each chunk on a
larger window whose reach is derived from the volume itself.

Why the halo is :math:`2R + 2` (:func:`required_halo`), with :math:`R =
\lfloor\sqrt{\max q}\rfloor` the largest distance (voxels) from a phase voxel to
the other phase, over the whole volume:

* **Clean-up (2).** A kept voxel's value reads its 26-neighbours' painted
  values and surface flags, and a flag reads the painted values of *its*
  26-neighbours: the painted map must be exact on the chunk grown by 2.
* **Painting (R).** A voxel is painted by the ridge balls that contain it;
  a ball of squared radius :math:`q \le R^2` reaches at most :math:`R` voxels
  along each axis, so every ball that paints the chunk + 2 is centred in
  the chunk grown by :math:`R + 2`, the *window*. On the window the ridge
  is computed from exact distances; cutting the window only removes
  neighbours, so the window's ridge holds every true ridge point plus a
  few extra ones on its faces, whose balls (exact radii) are covered by
  true ridge balls at least as large and so change nothing.
* **Distances (R).** The distance transform of a region is exact at a voxel
  when the voxel's nearest other-phase voxel lies in the region, which holds
  when the voxel's distance is less than its distance to the region's cut
  faces. Every distance is at most :math:`\sqrt{\max q} < R + 1`, so the
  transform of the window grown by another :math:`R` is exact on the window.

Where a window reaches the volume's border it is cut there, so the border is
handled exactly as in memory (not the other phase; balls and neighbourhoods
clipped). :math:`R` comes from a first pass (:func:`required_halo`): the
distance transform of each chunk grown by a trial halo ``t``, exact on the
chunk when the chunk's largest distance is below ``t + 1`` (the same argument),
with ``t`` doubled for the chunks where it is not, so the pass never
underestimates :math:`R`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from boneframe.errors import InputError
from boneframe.metrics.thickness import Phase, isotropic_voxel_size, trabecular_number

#: First trial halo (voxels) of the distance pass of :func:`required_halo`.
TRIAL_HALO = 8


@dataclass(frozen=True)
class HaloInfo:
    """What the first pass of :func:`required_halo` found.

    Attributes
    ----------
    halo : int
        The smallest exact halo, ``2 * reach + 2`` (0 when the phase is empty or full).
    reach : int
        :math:`R = \\lfloor\\sqrt{\\max q}\\rfloor`, the largest ball's reach (voxels).
    max_distance2 : float
        The largest squared distance :math:`\\max q` (voxels²).
    count : int
        Voxels of the phase.
    size : int
        Voxels of the volume.
    """

    halo: int
    reach: int
    max_distance2: float
    count: int
    size: int

    @property
    def degenerate(self) -> bool:
        """True when the phase is empty or fills the volume (an all-NaN map)."""
        return self.count == 0 or self.count == self.size


@dataclass(frozen=True)
class ThicknessStatistics:
    """Mean, SD (``ddof=1``), max and count of a thickness map's finite values."""

    mean: float
    sd: float
    max: float
    count: int


def _phase_of(mask: Any, phase: Phase) -> Any:
    """The dask boolean array of ``phase`` (non-zero of ``mask`` is bone)."""
    import dask.array as da

    if phase not in ("bone", "marrow"):
        raise InputError(f"phase must be 'bone' or 'marrow', got {phase!r}")
    data = getattr(mask, "data", mask) if hasattr(mask, "voxel_size") else mask
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data))
    if data.ndim != 3:
        raise InputError(f"the binary volume must be a 3D array, got shape {data.shape}")
    if data.size == 0:
        raise InputError(f"the binary volume is empty (shape {data.shape})")
    bone = data if data.dtype == bool else data != 0
    return bone if phase == "bone" else ~bone


def _chunk_boxes(x: Any) -> list[tuple[tuple[int, int], ...]]:
    """``((start, stop),) * 3`` of every chunk, in C order of the chunk grid."""
    bounds = []
    for sizes in x.chunks:
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        bounds.append([(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return [tuple(bounds[a][i] for a, i in enumerate(idx)) for idx in np.ndindex(*x.numblocks)]


def _grow(
    box: Sequence[tuple[int, int]], by: int, shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The box grown by ``by`` on every side (cut at the volume's border) and the box inside it."""
    outer, inner = [], []
    for (a, b), n in zip(box, shape, strict=True):
        lo, hi = max(a - by, 0), min(b + by, n)
        outer.append(slice(lo, hi))
        inner.append(slice(a - lo, b - lo))
    return tuple(outer), tuple(inner)


def _has_cut(box: Sequence[tuple[int, int]], by: int, shape: Sequence[int]) -> bool:
    """Whether growing ``box`` by ``by`` stays inside the volume on some side."""
    return any(a - by > 0 or b + by < n for (a, b), n in zip(box, shape, strict=True))


def _edt_sq(inside: np.ndarray) -> np.ndarray:
    """Squared distances to the other phase, the border not counted as one (as BoneJ).

    One thread: the chunks already run in parallel under dask's scheduler.
    """
    import edt

    return edt.edtsq(np.ascontiguousarray(inside).view(np.uint8), black_border=False, parallel=1)


def _distance_pass(inside: np.ndarray, core: tuple[slice, ...]) -> tuple[float, int]:
    """Largest squared distance over ``core`` (``inside`` grown by a trial halo) and its count."""
    part = inside[core]
    count = int(np.count_nonzero(part))
    if count == 0:
        return 0.0, 0
    return float(_edt_sq(inside)[core].max()), count


def required_halo(mask: Any, phase: Phase = "bone", *, trial: int = TRIAL_HALO) -> HaloInfo:
    """The smallest halo for which :func:`local_thickness_chunked` is exact.

    Parameters
    ----------
    mask : dask array, array or Volume
        Binary volume; non-zero is bone. Its chunks are the units of work.
    phase : {"bone", "marrow"}
        The phase measured.
    trial : int
        First trial halo of the distance pass (doubled where too small).

    Returns
    -------
    HaloInfo
        ``halo = 2 R + 2`` with ``R`` the largest distance, rounded down; see
        the module's docstring for why.
    """
    import dask

    inside = _phase_of(mask, phase)
    shape = tuple(int(n) for n in inside.shape)
    pending = _chunk_boxes(inside)
    t = max(1, int(trial))
    best, count = 0.0, 0
    while pending:
        tasks = []
        for box in pending:
            outer, core = _grow(box, t, shape)
            tasks.append(dask.delayed(_distance_pass)(inside[outer], core))
        results = dask.compute(*tasks)
        retry = []
        for box, (d2, n) in zip(pending, results, strict=True):
            # exact on the chunk unless a distance reaches a cut face (see the module)
            if _has_cut(box, t, shape) and not d2 < (t + 1) ** 2:
                retry.append(box)
                continue
            best, count = max(best, d2), count + n
        pending, t = retry, 2 * t
    size = int(math.prod(shape))
    if count == 0 or count == size:
        return HaloInfo(0, 0, 0.0, count, size)
    reach = math.isqrt(int(round(best)))
    return HaloInfo(2 * reach + 2, reach, best, count, size)


def _thickness_block(
    inside: np.ndarray,
    window: tuple[slice, ...],
    chunk: tuple[slice, ...],
    side: float,
) -> np.ndarray:
    """Local thickness of one chunk: ``inside`` is the chunk grown by the halo,
    ``window`` the chunk grown by ``reach + 2`` inside it, ``chunk`` the chunk
    inside the window."""
    from boneframe.metrics import thickness_kernels as kernels

    inside = np.asarray(inside, dtype=bool)
    part = inside[window]
    if not part[chunk].any():
        return np.full(part[chunk].shape, np.nan, dtype=np.float32)
    d2 = np.ascontiguousarray(_edt_sq(inside)[window])
    part = np.ascontiguousarray(part)
    slice_start, cj, ci, q = kernels.distance_ridge(d2)
    del d2
    painted = kernels.paint_spheres(part.shape, slice_start, cj, ci, q)
    del cj, ci, q
    out = kernels.clean_and_mask(painted, part, side)[0]
    return np.ascontiguousarray(out[chunk])


def local_thickness_chunked(
    mask: Any,
    voxel_size: float | Sequence[float] = 1.0,
    phase: Phase = "bone",
    halo: int | None = None,
) -> Any:
    """Local thickness map of a large binary volume, chunk by chunk, as BoneJ2's Thickness.

    Parameters
    ----------
    mask : dask array, array or Volume
        Binary volume; non-zero is bone. The map has the same chunks.
    voxel_size : float or three floats
        Isotropic voxel size (µm); 1 gives the map in voxels.
    phase : {"bone", "marrow"}
        Measure the bone (Tb.Th) or the marrow (Tb.Sp).
    halo : int or None
        Voxels of context around each chunk; None: the smallest exact one,
        :func:`required_halo`. A given halo is checked against it.

    Returns
    -------
    dask.array.Array
        float32 map (µm, NaN outside the phase), lazy; equal to
        :func:`boneframe.metrics.thickness.thickness_map` of the whole volume.
        All NaN when the phase is empty or fills the volume.

    Raises
    ------
    InputError
        If the volume is not 3-D, the voxels are not isotropic, the phase is
        unknown, or ``halo`` is smaller than the exact one.

    Notes
    -----
    A first pass over the chunks (distance transforms only) finds the largest
    distance and so the halo; the map itself is computed when the returned
    array is. Each chunk costs the in-memory computation on the chunk grown
    by ``2 R + 2`` voxels (distances) and by ``R + 2`` voxels (ridge,
    painting, clean-up), so chunks well larger than the structures' size
    keep the overhead low.
    """
    import dask
    import dask.array as da

    side = isotropic_voxel_size(voxel_size)
    inside = _phase_of(mask, phase)
    if halo is not None and (
        isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0
    ):
        raise InputError(f"halo must be a non-negative integer, got {halo!r}")
    # ``inside`` is already the phase: "bone" takes it as it is
    info = required_halo(inside, "bone", trial=int(halo) if halo else TRIAL_HALO)
    if info.degenerate:
        return da.full(inside.shape, np.nan, dtype=np.float32, chunks=inside.chunks)
    if halo is None:
        halo = info.halo
    elif halo < info.halo:
        raise InputError(
            f"halo {halo} is too small for this {phase}: its largest distance to the other "
            f"phase is {math.sqrt(info.max_distance2):.2f} voxels, so an exact map needs a "
            f"halo of at least 2 * {info.reach} + 2 = {info.halo} voxels (or give none)"
        )
    shape = tuple(int(n) for n in inside.shape)
    task = dask.delayed(_thickness_block, pure=True)
    grid: Any = np.empty(inside.numblocks, dtype=object)
    for index, box in zip(np.ndindex(*inside.numblocks), _chunk_boxes(inside), strict=True):
        outer, _ = _grow(box, int(halo), shape)
        window = tuple(
            slice(max(a - info.reach - 2, 0) - o.start, min(b + info.reach + 2, n) - o.start)
            for (a, b), o, n in zip(box, outer, shape, strict=True)
        )
        chunk = tuple(
            slice(a - (w.start + o.start), b - (w.start + o.start))
            for (a, b), w, o in zip(box, window, outer, strict=True)
        )
        block = task(inside[outer], window, chunk, side)
        grid[index] = da.from_delayed(block, shape=tuple(b - a for a, b in box), dtype=np.float32)
    return da.block(grid.tolist())


def _chunk_sums(block: np.ndarray) -> np.ndarray:
    finite = np.asarray(block, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.array([0.0, 0.0, -np.inf, 0.0])
    return np.array([finite.sum(), np.dot(finite, finite), finite.max(), float(finite.size)])


def thickness_statistics(tmap: Any) -> ThicknessStatistics:
    """Mean, SD (``ddof=1``), max and count of a (chunked) thickness map's finite values.

    Reduced over the chunks (sums, sums of squares, maxima, counts), with the
    formulas of :func:`boneframe.metrics.thickness.local_thickness`; NaN when
    there are no finite values (SD also for a single one).
    """
    import dask
    import dask.array as da

    x = tmap if isinstance(tmap, da.Array) else da.from_array(np.asarray(tmap))
    parts = dask.compute(*[dask.delayed(_chunk_sums)(b) for b in x.to_delayed().ravel()])
    total, total_sq, largest, count = (
        float(np.sum([p[0] for p in parts])),
        float(np.sum([p[1] for p in parts])),
        float(np.max([p[2] for p in parts])),
        int(round(np.sum([p[3] for p in parts]))),
    )
    if count == 0:
        nan = float("nan")
        return ThicknessStatistics(nan, nan, nan, 0)
    mean = total / count
    sd = (
        math.sqrt(max(total_sq - count * mean * mean, 0.0) / (count - 1))
        if count > 1
        else float("nan")
    )
    return ThicknessStatistics(mean, sd, largest, count)


def thickness_metrics_chunked(
    mask: Any,
    voxel_size_um: float | Sequence[float],
    *,
    tb_n_model: Literal["inverse_sum", "plate"] = "inverse_sum",
) -> dict[str, float]:
    """Tb.Th, Tb.Sp (mean, SD, max; mm) and Tb.N (mm⁻¹) of a large binary volume.

    The thickness part of :func:`boneframe.metrics.thickness.structure_metrics`
    (same keys, same values), from :func:`local_thickness_chunked` maps reduced
    over the chunks.
    """
    import dask.array as da

    side = isotropic_voxel_size(voxel_size_um)
    out: dict[str, float] = {}
    phases: tuple[tuple[Phase, str], ...] = (("bone", "tb_th"), ("marrow", "tb_sp"))
    for phase, key in phases:
        stats = thickness_statistics(local_thickness_chunked(mask, side, phase))
        out[key] = stats.mean / 1000.0
        out[f"{key}_sd"] = stats.sd / 1000.0
        out[f"{key}_max"] = stats.max / 1000.0
    bv_tv = math.nan  # a pass over the volume, only for the model that reads it
    if tb_n_model == "plate":
        bone = _phase_of(mask, "bone")
        bv_tv = float(da.count_nonzero(bone).compute()) / bone.size
    out["tb_n"] = trabecular_number(out["tb_th"], out["tb_sp"], bv_tv, tb_n_model)
    return out
