"""Quadratic gradient penalty (Tikhonov): ``R(x) = weight * ||D x||²``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from boneframe.interfaces import Regularizer


class GradientL2Params(BaseModel):
    """Parameters of :class:`GradientL2`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    weight: float = Field(1.0, ge=0, description="Multiplier of ||D x||² (the paper's alpha).")


class GradientL2(Regularizer):
    r"""Squared norm of the forward-difference gradient.

    Notes
    -----
    .. math:: R(x) = w \, \|D x\|_2^2, \qquad \nabla R(x) = 2 w \, D^T D x = -2 w \Delta x

    with Neumann boundaries (no difference across the array border): the penalty
    :math:`\varphi(v) = w \|v\|^2` of the differences, whose gradient is
    :math:`2 w v` and proximal step :math:`v / (1 + 2 w \tau)`.
    """

    name: ClassVar[str] = "gradient-l2"
    description: ClassVar[str] = "weight * ||grad x||^2 (smooth Tikhonov penalty)"
    Params: ClassVar[type[BaseModel]] = GradientL2Params
    params: GradientL2Params

    def penalty(self, v: np.ndarray) -> float:
        """``weight * ||v||²``."""
        return float(self.params.weight * np.vdot(v, v).real)

    def penalty_grad(self, v: np.ndarray) -> np.ndarray:
        """``2 weight v``."""
        return 2.0 * self.params.weight * v

    def prox_penalty(self, v: np.ndarray, tau: float) -> np.ndarray:
        """Proximal step of ``tau * weight * ||v||²``: ``v / (1 + 2 weight tau)``."""
        return v / (1.0 + 2.0 * self.params.weight * tau)
