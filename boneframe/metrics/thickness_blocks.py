r"""The local thickness *map* of a volume, in memory or chunk by chunk (``boneframe thickness``).

In memory the map is :func:`boneframe.metrics.thickness.thickness_map`. On a
dask volume the lazy map is assembled from the chunks: each chunk is
:func:`boneframe.metrics.thickness.thickness_of_block`, the function
that computes the map of a volume in memory, run on the chunk and a halo of
its neighbours; the halo comes from the data
(:func:`boneframe.metrics.thickness.measure_reach`, the same the Tb.Th and
Tb.Sp metrics use), so the map equals the in-memory one, chunk for chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import MetricBlock, MetricContext
from boneframe.metrics.blocks import VolumeBlocks
from boneframe.metrics.thickness import (
    TRIAL_HALO,
    HaloInfo,
    Phase,
    ThicknessSummary,
    isotropic_voxel_size,
    measure_reach,
    thickness_map,
    thickness_of_block,
)

__all__ = [
    "HaloInfo",
    "ThicknessStatistics",
    "local_thickness_map",
    "required_halo",
    "thickness_statistics",
]


@dataclass(frozen=True)
class ThicknessStatistics:
    """Mean, SD (``ddof=1``), max and count of a thickness map's finite values."""

    mean: float
    sd: float
    max: float
    count: int


def _blocks(mask: Any) -> VolumeBlocks:
    """The binary volume's chunks as binarised blocks (a numpy one is one block)."""
    import dask.array as da

    data = getattr(mask, "data", mask) if hasattr(mask, "voxel_size") else mask
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data))
    if data.ndim != 3:
        raise InputError(f"the binary volume must be a 3D array, got shape {data.shape}")
    if data.size == 0:
        raise InputError(f"the binary volume is empty (shape {data.shape})")
    blocks = VolumeBlocks.of(data if data.dtype == bool else data != 0)
    return blocks.binarised(MetricContext(shape=blocks.shape, threshold=0.5))


def _check_phase(phase: str) -> None:
    if phase not in ("bone", "marrow"):
        raise InputError(f"phase must be 'bone' or 'marrow', got {phase!r}")


def required_halo(mask: Any, phase: Phase = "bone", *, trial: int = TRIAL_HALO) -> HaloInfo:
    """The smallest halo for which :func:`local_thickness_map` is exact.

    :func:`boneframe.metrics.thickness.measure_reach` over the chunks of ``mask``
    (non-zero is bone).
    """
    _check_phase(phase)
    return measure_reach(_blocks(mask), phase, trial=trial)


def _map_block(b: MetricBlock, phase: Phase, side: float) -> np.ndarray:
    from boneframe.parallel import num_threads

    grown, core = b.neighbourhood()
    inside = grown if phase == "bone" else ~grown
    # every thread for the distance transform: it holds the GIL, so the transforms
    # of blocks side by side cannot overlap anyway
    return thickness_of_block(inside, core, b.halo, side, num_threads())


def local_thickness_map(
    mask: Any,
    voxel_size: float | Sequence[float] = 1.0,
    phase: Phase = "bone",
    halo: int | None = None,
) -> Any:
    """Local thickness map of a binary volume, as BoneJ2's Thickness (chunk by chunk for dask).

    Parameters
    ----------
    mask : dask array, array or Volume
        Binary volume; non-zero is bone. A dask volume's map is lazy, with the
        same chunks; a numpy one's is computed here.
    voxel_size : float or three floats
        Isotropic voxel size (µm); 1 gives the map in voxels.
    phase : {"bone", "marrow"}
        Measure the bone (Tb.Th) or the marrow (Tb.Sp).
    halo : int or None
        Voxels of context around each chunk; None: the smallest exact one,
        :func:`required_halo`. A given halo is checked against it.

    Returns
    -------
    dask.array.Array or numpy.ndarray
        float32 map (µm, NaN outside the phase); chunk by chunk it equals
        :func:`boneframe.metrics.thickness.thickness_map` of the whole volume.

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
    by ``2 R + 2`` voxels, so chunks well larger than the structures keep the
    overhead low.
    """
    side = isotropic_voxel_size(voxel_size)
    _check_phase(phase)
    if halo is not None and (
        isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0
    ):
        raise InputError(f"halo must be a non-negative integer, got {halo!r}")
    blocks = _blocks(mask)
    if not blocks.lazy and halo is None:
        return thickness_map(np.asarray(blocks.volume), side, phase=phase)
    info = measure_reach(blocks, phase, trial=int(halo) if halo else TRIAL_HALO)
    if halo is None:
        halo = info.halo
    elif halo < info.halo:
        raise InputError(
            f"halo {halo} is too small for this {phase}: its largest distance to the other "
            f"phase is {math.sqrt(info.max_distance2):.2f} voxels, so an exact map needs a "
            f"halo of at least 2 * {info.reach} + 2 = {info.halo} voxels (or give none)"
        )
    return blocks.map_blocks(_map_block, phase, side, halo=int(halo), dtype=np.float32)


def _chunk_summary(block: np.ndarray) -> ThicknessSummary:
    return ThicknessSummary.of(block)


def thickness_statistics(tmap: Any) -> ThicknessStatistics:
    """Mean, SD (``ddof=1``), max and count of a (chunked) thickness map's finite values.

    The chunks' :class:`~boneframe.metrics.thickness.ThicknessSummary`, merged;
    NaN when there are no finite values (SD also for a single one).
    """
    import dask
    import dask.array as da

    x = tmap if isinstance(tmap, da.Array) else da.from_array(np.asarray(tmap))
    parts = dask.compute(*[dask.delayed(_chunk_summary)(b) for b in x.to_delayed().ravel()])
    total = ThicknessSummary()
    for part in parts:
        total = total.merge(part)
    return ThicknessStatistics(total.mean, total.sd, total.max, total.count)
