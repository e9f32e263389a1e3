"""The region measured: the mask's voxels, or the whole box without a mask.

With a mask, the structure metrics measure the bone inside it (``bone & mask``,
:attr:`boneframe.metrics.blocks.VolumeBlocks.bone`) and the densities divide by
the mask's volume; :data:`REGION` counts its voxels once per measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import MetricBlock, MetricContext, Quantity


@dataclass(frozen=True)
class RegionVoxels(Quantity):
    """Voxels of the region measured: the mask's, or all of the box's without one."""

    def block(self, b: MetricBlock) -> int:
        return b.volume.size if b.mask is None else int(np.count_nonzero(b.mask))

    def finish(self, total: int, context: MetricContext) -> int:
        if total == 0:
            raise InputError("the mask is empty: there is no region to measure")
        return int(total)


#: The voxels of the region measured, shared by the densities (Conn.D).
REGION = RegionVoxels()


def region_mm3(context: MetricContext) -> float:
    """Volume (mm³) of the region measured (needs :data:`REGION` in the metric's quantities)."""
    return context[REGION] * context.voxel_volume_mm3
