"""Mean bone mineral density (mg HA/cm³) of a calibrated volume, inside the mask.

A calibrated scan stores values ``v`` with ``density = v * slope + intercept``
(:mod:`boneframe.calibration`); the mean density over the region measured is
that map of the mean stored value, so the blocks sum their values (float64)
and count their voxels, and ``finish`` applies the calibration once.

Inside a compartment's mask it is the compartment's vBMD (Tt.vBMD, Tb.vBMD,
Ct.vBMD of :func:`boneframe.evaluation.evaluate`): every voxel of the mask
counts, bone or not.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from boneframe.calibration import DENSITY_UNIT, calibration
from boneframe.errors import InputError
from boneframe.interfaces import Metric, MetricBlock, MetricContext

#: Why ``bmd`` is not computed on a volume without a calibration.
NOT_CALIBRATED = (
    "needs a calibrated volume (density = value * slope + intercept, mg HA/cm³), "
    "and this one carries no calibration"
)


class BoneMineralDensity(Metric):
    """BMD: mean density (mg HA/cm³) of the voxels inside the mask (all of them without one).

    ``measure`` fills ``slope`` and ``intercept`` from a calibrated Volume's
    metadata; without them the metric is not defined.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
        slope: float | None = Field(None, description="mg HA/cm³ per stored unit")
        intercept: float | None = Field(None, description="mg HA/cm³ at a stored 0")

    params: Params

    name: ClassVar[str] = "bmd"
    description: ClassVar[str] = "mean density inside the mask, mg HA/cm³ (calibrated scans)"
    uses_mask: ClassVar[bool] = True
    unit: ClassVar[str] = DENSITY_UNIT

    @classmethod
    def of(cls, volume: Any) -> BoneMineralDensity:
        """The metric with ``volume``'s calibration (none when it carries none)."""
        cal = calibration(volume) if hasattr(volume, "metadata") else None
        return cls() if cal is None else cls(slope=cal[0], intercept=cal[1])

    @property
    def calibrated(self) -> bool:
        """The calibration is known."""
        return self.params.slope is not None and self.params.intercept is not None

    def block(self, b: MetricBlock) -> tuple[float, int]:
        values = b.volume if b.mask is None else b.volume[b.mask]
        return float(np.sum(values, dtype=np.float64)), int(values.size)

    def finish(self, total: tuple[float, int], context: MetricContext) -> float:
        if not self.calibrated:
            raise InputError(f"bmd {NOT_CALIBRATED}")
        value_sum, voxels = total
        if voxels == 0:
            raise InputError("the mask is empty: BMD has no voxels to average")
        slope, intercept = float(self.params.slope), float(self.params.intercept)  # type: ignore[arg-type]
        return slope * (value_sum / voxels) + intercept
