r"""What a super-resolved volume carries over from its scan: geometry and calibration.

The HR grid is the scan's with the voxel size divided by ``p`` and the same
origin and direction (HR voxel ``p i`` lies on LR voxel ``i``).

A calibrated scan stays calibrated. The estimate ``f`` solves
:math:`g = U(h * (f + c))`, so a uniform region of value ``f`` would be
scanned as :math:`\gamma (f + c)`, :math:`\gamma = \sum h`; its density is
therefore

.. math:: \rho = s\,\gamma\,(f + c) + t = (s\gamma)\, f + (s\gamma c + t)

for the scan's calibration :math:`\rho = s\,g + t` (Hounsfield units likewise):
the estimate's calibration slope is :math:`s\gamma` and its intercept
:math:`s\gamma c + t`. (With a
kernel of gain 1 and no offset the calibration is the scan's.) The scan's own
processing log, which states the scan's calibration, is not carried over: a
writer that needs one (Scanco AIM) writes a new log from the new calibration.
"""

from __future__ import annotations

from typing import Any

from boneframe.volume import Volume

#: Metadata of the scan that does not describe the estimate.
_NOT_CARRIED = ("processing_log", "aim_offset", "aim_position")
#: Linear scales of the stored values (slope, intercept): density, Hounsfield units.
_LINEAR_SCALES = (("calibration_slope", "calibration_intercept"), ("hu_slope", "hu_intercept"))


def fine_geometry(
    lr: Any, p: tuple[int, int, int], gain: float = 1.0, offset: float = 0.0
) -> dict[str, Any]:
    """Geometry and metadata of the estimate of the scan ``lr`` on the ``p``-times finer grid.

    Parameters
    ----------
    lr : Volume or array
        The scan; an array carries nothing (voxel size None).
    p : tuple of int
        Resolution factor per axis.
    gain, offset : float
        The kernel's gain :math:`\\gamma` and the grey-level offset ``c``.

    Returns
    -------
    dict
        Keyword arguments of :class:`~boneframe.volume.Volume`: ``voxel_size``,
        ``origin``, ``direction`` and ``metadata`` (the scan's, calibration
        converted).
    """
    if not isinstance(lr, Volume):
        return {"voxel_size": None}
    vs = None
    if lr.voxel_size is not None:
        vs = tuple(v / q for v, q in zip(lr.voxel_size, p, strict=True))
    meta = {k: v for k, v in lr.metadata.items() if k not in _NOT_CARRIED}
    for a, b in _LINEAR_SCALES:
        if a in meta and b in meta:
            slope, intercept = float(meta[a]), float(meta[b])
            meta[a], meta[b] = slope * gain, slope * gain * offset + intercept
    return {"voxel_size": vs, "origin": lr.origin, "direction": lr.direction, "metadata": meta}
