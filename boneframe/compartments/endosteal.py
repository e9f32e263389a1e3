"""The trabecular mask of one bone in one slice: inside the cortex, smoothed.

Inside the periosteal mask eroded by the minimum cortical thickness, what is
not above the cortical threshold is the marrow side (dense trabeculae enclosed
in it are marrow side too); its largest piece, cut off the pores hanging on it
by thin necks, is closed and opened to smooth the endosteal surface, so that
trabeculae touching the cortex do not count as cortex. The opening also cuts
the cavity's narrow corners; the large ones are given back. A wide closing
ends it, kept within the eroded periosteal mask.
"""

from __future__ import annotations

import numpy as np

from boneframe.compartments import morphology as mo
from boneframe.compartments.params import DualThresholdParams


def trabecular(peri: np.ndarray, cortex: np.ndarray, p: DualThresholdParams) -> np.ndarray:
    """The trabecular mask of a bone.

    Parameters
    ----------
    peri : numpy.ndarray of bool
        The bone's periosteal mask, one slice.
    cortex : numpy.ndarray of bool
        The slice above ``p.endo_threshold`` (after the endosteal smoothing).
    p : DualThresholdParams
        Radii and sizes.

    Returns
    -------
    numpy.ndarray of bool
        The trabecular mask, within ``peri`` eroded by ``p.min_cortical_thickness``.
    """
    inner = mo.erode(peri, p.min_cortical_thickness)
    trab = mo.keep_largest(mo.fill_enclosed(inner & ~cortex))
    if not trab.any():
        return trab
    trab = mo.open_largest(trab, p.endo_open)
    trab = mo.closing(trab, p.endo_smooth) & peri
    smooth = mo.opening(trab, p.endo_smooth)
    corners = mo.keep_large(mo.erode(trab & ~smooth, p.corner_radius), p.corner_min_voxels)
    corners = mo.keep_large(mo.dilate(corners, p.corner_radius), p.corner_min_voxels)
    trab = mo.closing(smooth | corners, p.endo_close) & inner
    return mo.fill_enclosed(trab)
