"""Otsu's thresholds of a volume (and its reference), in memory or chunk by chunk.

Two passes over the blocks of :class:`~boneframe.metrics.blocks.VolumeBlocks`:
the value ranges, then the histograms over those ranges, summed over the
blocks (:func:`~boneframe.metrics.segmentation.histogram` applies its rule voxel
by voxel, so the sums are the whole volume's histograms and the thresholds are
identical in memory and chunked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.interfaces import MetricContext
from boneframe.metrics.blocks import VolumeBlocks
from boneframe.metrics.segmentation import (
    OTSU_BINS,
    histogram,
    intensity_range,
    otsu_from_histogram,
)


def _ranges(volume: np.ndarray, reference: np.ndarray | None, of_volume: bool, of_ref: bool):
    return (
        intensity_range(volume) if of_volume else None,
        intensity_range(reference) if of_ref and reference is not None else None,
    )


def _wider(x: Any, y: Any) -> Any:
    return tuple(
        None if a is None else (min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(x, y, strict=True)
    )


def _histograms(volume: np.ndarray, reference: np.ndarray | None, vrange: Any, rrange: Any):
    return (
        None if vrange is None else histogram(volume, OTSU_BINS, vrange),
        None if rrange is None or reference is None else histogram(reference, OTSU_BINS, rrange),
    )


def thresholds(
    blocks: VolumeBlocks,
    threshold: float | None,
    reference_threshold: float | None,
    *,
    need_otsu: bool,
    need_reference: bool,
) -> MetricContext:
    """The context with the thresholds: given ones, Otsu's (two passes) for the others.

    Without ``threshold`` and ``need_otsu`` (a segmentation gives the bone), the
    context's threshold is NaN.
    """
    otsu = reference_otsu = vrange = rrange = None
    if need_otsu or need_reference:
        vrange, rrange = blocks.map_values(_ranges, need_otsu, need_reference, combine=_wider)
        hist, rhist = blocks.map_values(_histograms, vrange, rrange)
        if need_otsu:
            otsu = otsu_from_histogram(hist, vrange)
        if need_reference:
            reference_otsu = otsu_from_histogram(rhist, rrange)
    if threshold is not None:
        t = float(threshold)
    else:
        t = float("nan") if otsu is None else float(otsu)
    rt = reference_threshold if reference_threshold is not None else reference_otsu
    if blocks.reference is None:
        rt = None
    return MetricContext(
        shape=blocks.shape,
        threshold=t,
        reference_threshold=None if rt is None else float(rt),
        otsu=otsu,
        value_range=vrange,
        reference_range=rrange,
    )


def otsu_of(volume: Any) -> float:
    """Otsu's threshold of a volume (numpy, dask or Volume): 256 bins over its
    ``[min, max]``, the histogram summed chunk by chunk for a dask volume.

    Equals :func:`~boneframe.metrics.segmentation.otsu_threshold` of the volume
    in memory, and ``measure``'s ``threshold``.
    """
    blocks = VolumeBlocks.of(volume)
    context = thresholds(blocks, None, None, need_otsu=True, need_reference=False)
    return float(context.threshold)
