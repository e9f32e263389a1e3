"""Regulariser strategies."""

from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.regularizers.sharp import MCPTV, LogTV
from boneframe.regularizers.tv import TV

BUILTIN_REGULARIZERS: list[type] = [GradientL2, TV, LogTV, MCPTV]
