"""The periosteal mask of one bone in one slice: the dual-threshold closing.

The low-threshold mask of the bone holds all of it, thin and porous cortex
included, but its surface lies outside the bone's by the blur's reach; the
high-threshold mask has the better surface but may miss a thin stretch of
cortex. Each is closed with its enclosed background filled (the marrow and the
cortical pores are bone's), and the band between them is opened: only where it
is wide, where the high threshold lost the cortex, does it add to the high
mask. A final closing smooths the surface.
"""

from __future__ import annotations

import numpy as np

from boneframe.compartments import morphology as mo
from boneframe.compartments.params import DualThresholdParams


def periosteal(bone: np.ndarray, high: np.ndarray, p: DualThresholdParams) -> np.ndarray:
    """The periosteal mask of a bone.

    Parameters
    ----------
    bone : numpy.ndarray of bool
        The bone's voxels above ``p.peri_low`` (its component only), one slice.
    high : numpy.ndarray of bool
        The slice above ``p.peri_high``.
    p : DualThresholdParams
        Radii.

    Returns
    -------
    numpy.ndarray of bool
        The slice's periosteal mask, its enclosed background filled.
    """
    if not bone.any():
        return bone.copy()
    low = mo.close_filling(bone, p.peri_close_low)
    tight = mo.close_filling(high & low, p.peri_close_high)
    peri = tight | mo.opening(low ^ tight, p.peri_open)
    return mo.fill_enclosed(mo.closing(peri, p.peri_close))
