"""What a contouring asks of a scan, checked before any work."""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.calibration import calibration
from boneframe.compartments.smoothing import Units
from boneframe.errors import InputError
from boneframe.volume import Volume


def _density_unit(unit: str) -> bool:
    """True for a unit of mineral density (mg HA/ccm, mg HA/cm³, mgHA/cm3...)."""
    text = unit.lower().replace(" ", "")
    return not text or ("mg" in text and "ha" in text)


def check_scan(volume: Any, units: Units | None = None, *, finite: bool = True) -> Volume:
    """``volume`` if a contouring can work on it.

    Parameters
    ----------
    volume : Volume
        A 3-D scan with its voxel size; with ``units="density"`` it carries a
        density calibration (mg HA/cm³; a calibration without a unit is taken as one).
    units : {"density", "native"} or None
        Units of the contouring's thresholds; None: no calibration is needed.
    finite : bool
        Look for NaN and infinite values in an in-memory float scan (a caller that
        reads every value anyway skips this pass).

    Returns
    -------
    Volume

    Raises
    ------
    InputError
        One line saying what is missing, or that an in-memory scan holds NaN or
        infinite values (a dask scan's are found as it is read).
    """
    if not isinstance(volume, Volume):
        raise InputError(
            f"contouring needs a boneframe Volume (a 3D scan with its voxel size), "
            f"got {type(volume).__name__}"
        )
    if len(volume.shape) != 3:
        raise InputError(f"contouring needs a 3D scan, got shape {volume.shape}")
    if volume.dtype.kind not in "iuf":
        raise InputError(f"contouring needs integer or float values, got {volume.dtype}")
    volume.require_voxel_size()
    if finite and volume.dtype.kind == "f" and not volume.is_lazy:
        data = volume.data
        step = max(1, (1 << 24) // max(1, data[0].size))
        for z in range(0, data.shape[0], step):
            if not np.isfinite(data[z : z + step]).all():
                raise InputError(f"the scan holds NaN or infinite values (from slice {z})")
    if units == "density":
        if calibration(volume) is None:
            raise InputError(
                "the scan carries no density calibration, and the contouring's thresholds "
                "are densities (mg HA/cm³): read a calibrated scan (Scanco AIM), or give "
                "thresholds in its own values with units='native'"
            )
        unit = str(volume.metadata.get("calibration_unit", "") or "")
        if not _density_unit(unit):
            raise InputError(
                f"the scan is calibrated in {unit!r}, not mg HA/cm³, and the contouring's "
                "thresholds are densities: give thresholds in its own values with units='native'"
            )
    return volume
