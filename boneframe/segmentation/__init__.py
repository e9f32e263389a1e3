"""Segmentation strategies: how bone is told from the rest of a volume.

``otsu`` (:class:`OtsuSegmentation`): Otsu's threshold of the whole volume, the
paper's and ``measure``'s default. ``gauss-threshold`` (:class:`GaussThreshold`):
Gaussian smoothing then a fixed threshold in mg HA/cm³, HR-pQCT's standard
evaluation, for calibrated scans (:data:`PUBLISHED_DEFAULTS`). Both work on
numpy and dask volumes (dask: chunk by chunk, equal to in memory).
``partial-volume`` (:class:`PartialVolumeSegmentation`): the threshold that keeps
the bone fraction the mean grey level holds between the marrow and bone levels,
for blurred and super-resolved volumes whose partial volume Otsu counts as bone.
``data-consistent`` (:class:`DataConsistentSegmentation`): a binary bone on the fine
grid whose forward model explains the scan, with few faces (greedy flips from the
partial-volume threshold); it needs the scan and the kernel (``bind``), which a
pipeline's metrics stage gives it for each super-resolution. Experimental: most
of the voxels it changes move away from the micro-CT (see its module).
"""

from __future__ import annotations

from boneframe.interfaces import Segmentation
from boneframe.segmentation.data_consistent import (
    DataConsistentSegmentation,
    data_consistent_segmentation,
)
from boneframe.segmentation.gauss import PUBLISHED_DEFAULTS, GaussThreshold, smooth
from boneframe.segmentation.otsu import OtsuSegmentation
from boneframe.segmentation.partial_volume import (
    PartialVolumeSegmentation,
    partial_volume_threshold,
)

#: The built-in segmentations, registered by :mod:`boneframe.builtins`.
BUILTIN_SEGMENTATIONS: tuple[type[Segmentation], ...] = (
    OtsuSegmentation,
    GaussThreshold,
    PartialVolumeSegmentation,
    DataConsistentSegmentation,
)

__all__ = [
    "BUILTIN_SEGMENTATIONS",
    "DataConsistentSegmentation",
    "PUBLISHED_DEFAULTS",
    "GaussThreshold",
    "OtsuSegmentation",
    "PartialVolumeSegmentation",
    "data_consistent_segmentation",
    "partial_volume_threshold",
    "smooth",
]
