"""Sum of squared differences, normalised so that its weight is scale-free."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from boneframe.additive import AdditiveSimilarity, Blocks, GreyMoments, LinearGradient
from boneframe.interfaces import Similarity

Normalisation = Literal["variance", "voxels", "none"]


class L2Params(BaseModel):
    """Parameters of :class:`L2`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    normalise: Normalisation = Field(
        "variance",
        description=(
            "Divide ||u - g||² by: 'variance' the energy of g about its mean "
            "(scale-free, the default), 'voxels' the number of voxels (mean squared "
            "error), 'none' nothing (the paper's plain sum)."
        ),
    )


class L2(AdditiveSimilarity, Similarity):
    r"""Squared Euclidean distance between a prediction ``u`` and the data ``g``.

    Notes
    -----
    .. math::

        D(u, g) = \frac{\|u - g\|_2^2}{Z(g)}, \qquad
        \nabla_u D = \frac{2 (u - g)}{Z(g)},

    with :math:`Z = \sum_x (g_x - \bar g)^2` (``normalise="variance"``),
    :math:`Z = N` (``"voxels"``) or :math:`Z = 1` (``"none"``, the paper's eq. 2).

    Why the default divides by the energy of ``g``: multiplying ``f`` and ``g``
    by ``s`` leaves the kernel unchanged but multiplies :math:`\|u - g\|^2` by
    :math:`s^2`, while :math:`\alpha\|\nabla h\|^2` does not move; dividing by
    :math:`Z` makes ``D`` dimensionless (a fraction of the signal energy left
    unexplained, :math:`1 - R^2`) and independent of the number of voxels, so one
    value of :math:`\alpha` means the same on every scan. ``Z`` depends on ``g``
    only, so ``D`` stays quadratic in ``u``.

    References
    ----------
    .. [1] Paper §2.2, eq. (2): :math:`J_1 = \|U(h * (f + c)) - g\|_2^2 + \alpha R(h)`.
    """

    name: ClassVar[str] = "l2"
    description: ClassVar[str] = "||u - g||^2 / energy of g (least squares)"
    Params: ClassVar[type[BaseModel]] = L2Params
    params: L2Params
    quadratic: ClassVar[bool] = True
    scale_sensitive: ClassVar[bool] = True

    def normaliser(self, data: GreyMoments) -> float:
        """The normaliser ``Z`` from the moments of ``g`` (1 when ``g`` is constant
        and ``Z`` would vanish)."""
        mode = self.params.normalise
        if mode == "none":
            return 1.0
        if mode == "voxels":
            return float(data.n)
        return data.m2 if data.m2 > 0 else 1.0

    def curvature(self, data: GreyMoments) -> float:
        """``kappa`` of ``D(u) = kappa/2 ||u - g||²``: ``2 / Z``."""
        return 2.0 / self.normaliser(data)

    def evaluate(self, blocks: Blocks, gradient: bool) -> tuple[float, LinearGradient | None]:
        """``||u - g||² / Z`` summed over the blocks; gradient ``2 (u - g) / Z``."""
        z = self.normaliser(blocks.data)
        value = blocks.reduce(_squared_residual) / z
        if not gradient:
            return value, None
        return value, LinearGradient(_residual, (), _Weight(2.0 / z))


def _squared_residual(u: np.ndarray, g: np.ndarray) -> float:
    r = u - g
    return float(np.vdot(r, r))


def _residual(
    u: np.ndarray, g: np.ndarray, index: tuple[slice, ...]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    return {"r": u - g}, {}


class _Weight:
    """The coefficient of the residual field (a picklable constant)."""

    def __init__(self, c: float):
        self.c = c

    def __call__(self, sums: dict[str, float]) -> dict[str, float]:
        return {"r": self.c}
