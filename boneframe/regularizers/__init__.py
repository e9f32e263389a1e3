"""Regulariser strategies."""

from boneframe.regularizers.gradient_l2 import GradientL2

BUILTIN_REGULARIZERS: list[type] = [GradientL2]
