"""The built-in strategies, registered through the ``boneframe`` entry-point group
like any third-party plugin (entry point ``builtin`` in ``pyproject.toml``)."""

from __future__ import annotations

from boneframe.hookspecs import hookimpl


@hookimpl
def boneframe_similarities() -> list[type]:
    from boneframe.similarity import BUILTIN_SIMILARITIES

    return list(BUILTIN_SIMILARITIES)


@hookimpl
def boneframe_regularizers() -> list[type]:
    from boneframe.regularizers import BUILTIN_REGULARIZERS

    return list(BUILTIN_REGULARIZERS)


@hookimpl
def boneframe_solvers() -> list[type]:
    from boneframe.solvers import BUILTIN_SOLVERS

    return list(BUILTIN_SOLVERS)


@hookimpl
def boneframe_metrics() -> list[type]:
    from boneframe.metrics import BUILTIN_METRICS

    return list(BUILTIN_METRICS)


@hookimpl
def boneframe_formats() -> list[type]:
    from boneframe.io import BUILTIN_FORMATS

    return list(BUILTIN_FORMATS)


@hookimpl
def boneframe_segmentations() -> list[type]:
    from boneframe.segmentation import BUILTIN_SEGMENTATIONS

    return list(BUILTIN_SEGMENTATIONS)


@hookimpl
def boneframe_contourings() -> list[type]:
    from boneframe.compartments import BUILTIN_CONTOURINGS

    return list(BUILTIN_CONTOURINGS)
