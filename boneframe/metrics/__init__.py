"""Metric strategies: PSNR, Otsu/DICE, and bone morphometry (BV/TV, Euler, Betti, Conn.D).

``compute_metrics`` measures them all at once; the functions below work on plain
numpy arrays, and the χ and histogram pieces work block by block.
"""

from boneframe.metrics.compute import DEFAULT_METRICS, compute_metrics
from boneframe.metrics.morphometry import (
    Betti0,
    Betti1,
    Betti2,
    BoneVolumeFraction,
    ConnectivityDensity,
    ConnectivityDensityBoneJ,
    EulerCharacteristic,
    EulerCounts,
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

BUILTIN_METRICS: list[type] = [
    PSNR,
    Otsu,
    Dice,
    BoneVolumeFraction,
    EulerCharacteristic,
    Betti0,
    Betti1,
    Betti2,
    ConnectivityDensity,
    ConnectivityDensityBoneJ,
]

__all__ = [
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "OTSU_BINS",
    "PSNR",
    "Betti0",
    "Betti1",
    "Betti2",
    "BoneVolumeFraction",
    "ConnectivityDensity",
    "ConnectivityDensityBoneJ",
    "Dice",
    "EulerCharacteristic",
    "EulerCounts",
    "Otsu",
    "bin_centers",
    "binarize",
    "bone_volume_fraction",
    "compute_metrics",
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
    "otsu_from_histogram",
    "otsu_threshold",
    "psnr",
    "total_volume_mm3",
]
