"""Bone compartments of a scan: periosteal, trabecular and cortical masks.

:func:`contour` splits an HR-pQCT scan into its compartments with a registered
:class:`~boneframe.interfaces.Contouring` strategy; the built-in one is
``"dual-threshold"`` (:class:`~boneframe.compartments.dual_threshold.DualThreshold`).

Examples
--------
>>> from boneframe.compartments import contour
>>> from boneframe.phantom_radius import radius_section
>>> section = radius_section((2, 160, 160), voxel_size=164.0, radius_width=12.0)
>>> masks = contour(section.scan)
>>> bool(((masks["trabecular"].data | masks["cortical"].data) == masks["periosteal"].data).all())
True
"""

from __future__ import annotations

from typing import Any

from boneframe.compartments.checks import check_scan
from boneframe.compartments.dual_threshold import DualThreshold, DualThresholdParams
from boneframe.interfaces import COMPARTMENTS, Contouring
from boneframe.volume import Volume

__all__ = [
    "BUILTIN_CONTOURINGS",
    "COMPARTMENTS",
    "DualThreshold",
    "DualThresholdParams",
    "contour",
]

#: The built-in contouring strategies, registered by :mod:`boneframe.builtins`.
BUILTIN_CONTOURINGS: tuple[type[Contouring], ...] = (DualThreshold,)


def contour(
    volume: Volume, method: str = "dual-threshold", params: Any = None, **overrides: Any
) -> dict[str, Volume]:
    """The periosteal, trabecular and cortical masks of a scan.

    Parameters
    ----------
    volume : Volume
        The scan: 3-D, finite, with its voxel size (and, for the density
        thresholds of ``"dual-threshold"``, its density calibration).
    method : str
        A registered contouring (kind ``"contour"``).
    params : pydantic model, mapping or None
        The strategy's parameters; keyword arguments override them.

    Returns
    -------
    dict of str to Volume
        ``periosteal``, ``trabecular`` and ``cortical``: uint8 masks (0/1) with the
        scan's geometry; the last two partition the first.

    Raises
    ------
    InputError
        A scan the contouring cannot work on (one line saying why).
    PluginError
        An unknown ``method``.
    pydantic.ValidationError
        Parameters out of their bounds.
    """
    from boneframe.registry import get_registry

    check_scan(volume)
    strategy = get_registry().create("contour", method, params, **overrides)
    return strategy.compartments(volume)
