"""Bone metrics: PSNR, Otsu/DICE, morphometry (BV/TV, TV, Euler, Betti, Conn.D), BMD, Tb.*, DA.

:func:`measure` measures them all at once, in memory or chunk by chunk (one
engine, :mod:`boneframe.metrics.measure`); each metric is a
:class:`~boneframe.interfaces.Metric` registered through the ``boneframe``
entry points, and the functions below work on plain numpy arrays.
"""

from __future__ import annotations

from boneframe.metrics.anisotropy import DegreeOfAnisotropy, MilFabric, MilRatio
from boneframe.metrics.components import (
    BONE_COMPONENTS,
    MARROW_COMPONENTS,
    ComponentCount,
    Components,
)
from boneframe.metrics.density import BoneMineralDensity
from boneframe.metrics.measure import DEFAULT_METRICS, STRUCTURE_METRICS, measure
from boneframe.metrics.morphometry import (
    EULER,
    Betti0,
    Betti1,
    Betti2,
    BoneEuler,
    BoneVolumeFraction,
    ConnectivityDensity,
    ConnectivityDensityBoneJ,
    EulerCharacteristic,
    EulerCounts,
    TotalVolume,
    bone_volume_fraction,
    connectivity_density,
    connectivity_density_bonej,
    count_cavities,
    count_components,
    edge_correction,
    euler_block_counts,
    euler_counts,
    euler_lut,
    euler_number,
    total_volume_mm3,
)
from boneframe.metrics.psnr import PSNR, psnr
from boneframe.metrics.region import REGION, RegionVoxels
from boneframe.metrics.segmentation import (
    OTSU_BINS,
    Dice,
    Otsu,
    bin_centers,
    binarize,
    dice,
    histogram,
    intensity_range,
    otsu_from_histogram,
    otsu_threshold,
)
from boneframe.metrics.thickness import local_thickness, thickness_map
from boneframe.metrics.thickness_blocks import local_thickness_map, thickness_statistics
from boneframe.metrics.thresholds import otsu_of
from boneframe.metrics.trabecular import (
    BONE_THICKNESS,
    MARROW_THICKNESS,
    PhaseThickness,
    TrabecularNumber,
    TrabecularSeparation,
    TrabecularSeparationMax,
    TrabecularSeparationSD,
    TrabecularThickness,
    TrabecularThicknessMax,
    TrabecularThicknessSD,
)

BUILTIN_METRICS: list[type] = [
    PSNR,
    Otsu,
    Dice,
    BoneVolumeFraction,
    TotalVolume,
    BoneMineralDensity,
    EulerCharacteristic,
    Betti0,
    Betti1,
    Betti2,
    ConnectivityDensity,
    ConnectivityDensityBoneJ,
    TrabecularThickness,
    TrabecularThicknessSD,
    TrabecularThicknessMax,
    TrabecularSeparation,
    TrabecularSeparationSD,
    TrabecularSeparationMax,
    TrabecularNumber,
    DegreeOfAnisotropy,
    MilRatio,
]


__all__ = [
    "BONE_COMPONENTS",
    "BONE_THICKNESS",
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "EULER",
    "MARROW_COMPONENTS",
    "MARROW_THICKNESS",
    "OTSU_BINS",
    "PSNR",
    "STRUCTURE_METRICS",
    "Betti0",
    "Betti1",
    "Betti2",
    "BoneEuler",
    "BoneMineralDensity",
    "BoneVolumeFraction",
    "ComponentCount",
    "Components",
    "ConnectivityDensity",
    "ConnectivityDensityBoneJ",
    "DegreeOfAnisotropy",
    "Dice",
    "EulerCharacteristic",
    "EulerCounts",
    "MilFabric",
    "MilRatio",
    "Otsu",
    "PhaseThickness",
    "REGION",
    "RegionVoxels",
    "TotalVolume",
    "TrabecularNumber",
    "TrabecularSeparation",
    "TrabecularSeparationMax",
    "TrabecularSeparationSD",
    "TrabecularThickness",
    "TrabecularThicknessMax",
    "TrabecularThicknessSD",
    "bin_centers",
    "binarize",
    "bone_volume_fraction",
    "connectivity_density",
    "connectivity_density_bonej",
    "count_cavities",
    "count_components",
    "dice",
    "edge_correction",
    "euler_block_counts",
    "euler_counts",
    "euler_lut",
    "euler_number",
    "histogram",
    "intensity_range",
    "local_thickness",
    "local_thickness_map",
    "measure",
    "otsu_from_histogram",
    "otsu_of",
    "otsu_threshold",
    "psnr",
    "thickness_map",
    "thickness_statistics",
    "total_volume_mm3",
]
