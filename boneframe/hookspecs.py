"""Hook specifications: what a boneframe plugin may provide.

A plugin is a module named by an entry point in the ``boneframe`` group. It
implements any of these hooks with :data:`boneframe.hookimpl`; each returns a list
of strategy classes. Built-in strategies are registered the same way
(:mod:`boneframe.builtins`).
"""

from __future__ import annotations

import pluggy

PROJECT = "boneframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def boneframe_similarities() -> list[type]:
    """Return :class:`~boneframe.interfaces.Similarity` subclasses."""


@hookspec
def boneframe_regularizers() -> list[type]:
    """Return :class:`~boneframe.interfaces.Regularizer` subclasses."""


@hookspec
def boneframe_solvers() -> list[type]:
    """Return :class:`~boneframe.interfaces.Solver` subclasses."""


@hookspec
def boneframe_metrics() -> list[type]:
    """Return :class:`~boneframe.interfaces.Metric` subclasses."""


@hookspec
def boneframe_formats() -> list[type]:
    """Return :class:`~boneframe.interfaces.VolumeFormat` subclasses."""


@hookspec
def boneframe_segmentations() -> list[type]:
    """Return :class:`~boneframe.interfaces.Segmentation` subclasses."""


@hookspec
def boneframe_contourings() -> list[type]:
    """Return :class:`~boneframe.interfaces.Contouring` subclasses."""
