"""Segmentation strategies: how bone is told from the rest of a volume."""

from __future__ import annotations

from boneframe.interfaces import Segmentation

#: The built-in segmentations, registered by :mod:`boneframe.builtins`.
BUILTIN_SEGMENTATIONS: tuple[type[Segmentation], ...] = ()
