"""Similarity (data-term) strategies."""

from boneframe.similarity.l2 import L2
from boneframe.similarity.mi import MutualInformation

BUILTIN_SIMILARITIES: list[type] = [L2, MutualInformation]
