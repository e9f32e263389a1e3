"""Bone compartments of a scan: periosteal, trabecular and cortical masks."""

from __future__ import annotations

from boneframe.interfaces import Contouring

#: The built-in contouring strategies, registered by :mod:`boneframe.builtins`.
BUILTIN_CONTOURINGS: tuple[type[Contouring], ...] = ()
