"""Calibrated density: a scan's stored values in mg HA/cm³.

A calibrated volume carries ``calibration_slope`` and ``calibration_intercept``
in its metadata (the Scanco AIM reader takes them from the processing log, the
DICOM reader from the rescale tags): ``density = value * slope + intercept``,
in ``calibration_unit`` (mg HA/cm³ for HR-pQCT; Scanco writes "mg HA/ccm").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.volume import Volume

#: The density unit boneframe reports.
DENSITY_UNIT = "mg HA/cm³"

#: Metadata keys of a scan's calibration: every volume format keeps them (in the
#: file, or in the sidecar of formats that cannot).
CALIBRATION_KEYS = (
    "calibration_slope",
    "calibration_intercept",
    "calibration_unit",
    "mu_scaling",
    "mu_water_per_cm",
    "hu_slope",
    "hu_intercept",
)


def calibration(volume: Volume) -> tuple[float, float] | None:
    """``(slope, intercept)`` of a calibrated volume (density = value * slope +
    intercept, mg HA/cm³), or None when the volume carries no calibration.

    Raises
    ------
    InputError
        If the calibration is present but not two finite numbers with a non-zero slope.
    """
    meta = volume.metadata
    if "calibration_slope" not in meta or "calibration_intercept" not in meta:
        return None
    try:
        slope, intercept = float(meta["calibration_slope"]), float(meta["calibration_intercept"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"the volume's density calibration is not numeric: {exc}") from None
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0.0:
        raise InputError(
            f"the volume's density calibration is unusable: slope {slope}, intercept {intercept}"
        )
    return slope, intercept


def is_calibrated(volume: Volume) -> bool:
    """True when :func:`calibration` finds a calibration in the volume's metadata."""
    return calibration(volume) is not None


def to_density(volume: Volume) -> Volume:
    """The volume in mg HA/cm³ (float32; lazy for a dask volume; same geometry).

    The result's metadata says it is already a density (slope 1, intercept 0), so
    converting twice changes nothing.

    Raises
    ------
    InputError
        If the volume carries no density calibration.
    """
    cal = calibration(volume)
    if cal is None:
        raise InputError(
            "the volume carries no density calibration (calibration_slope and "
            "calibration_intercept in its metadata, as a Scanco AIM or calibrated DICOM "
            "gives them)"
        )
    slope, intercept = cal
    data: Any = volume.data.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    meta = {**volume.metadata, "calibration_slope": 1.0, "calibration_intercept": 0.0}
    meta["calibration_unit"] = DENSITY_UNIT
    return volume.with_data(data, metadata=meta)


def from_density(density: Any, like: Volume) -> Any:
    """Values in ``like``'s stored scale from densities in mg HA/cm³ (the inverse of
    :func:`to_density`, as float32; ``like`` must be calibrated)."""
    cal = calibration(like)
    if cal is None:
        raise InputError("the volume carries no density calibration")
    slope, intercept = cal
    return (density - np.float32(intercept)) / np.float32(slope)
