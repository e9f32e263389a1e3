"""Automatic periosteal and endosteal contours by the dual-threshold technique.

After Buie et al. (Bone 41, 2007, 505–515) as Scanco's IPL autocontour scripts
and ORMIR_XCT's ``autocontour`` carry it out, in four stages:

1. Bones. The scan, in mg HA/cm³, is smoothed by a Gaussian (3-D) and
   thresholded at the low periosteal threshold; the 26-connected components of
   that mask are the bones (the radius and the ulna of a forearm: the soft
   tissue, at a few tens of mg HA/cm³, is far below). The largest one is kept,
   or every large one (``bones``). This replaces IPL's first step (largest
   component at the high threshold, dilated, to mask the scan).
2. Periosteal mask, per bone and slice (:func:`~.periosteal.periosteal`): the
   low- and high-threshold masks closed with their enclosed background filled,
   the band between them opened and added where wide, a smoothing closing.
3. Endosteal mask, per bone and slice (:func:`~.endosteal.trabecular`): the
   scan smoothed more and thresholded at the cortical threshold; the marrow side
   within the periosteal mask eroded by the minimum cortical thickness, its
   largest piece cleaned and smoothed by openings and closings.
4. Compartments: trabecular = the endosteal masks, cortical = periosteal less
   trabecular.

Smoothing and bone finding are 3-D; the morphology is 2-D, slice by slice, with
Euclidean disks of the given radii (IPL: 3-D, chamfer metric). The scan is read
in slabs of slices (a dask volume is computed slab by slab) and every bone is
processed in a crop around it, so a 1536 × 1536 × 110 XtremeCT scan needs its
bone masks, a label image and one slab of floats at a time.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from boneframe.compartments.bones import find_bones
from boneframe.compartments.checks import check_scan
from boneframe.compartments.endosteal import trabecular
from boneframe.compartments.params import DualThresholdParams
from boneframe.compartments.periosteal import periosteal
from boneframe.compartments.smoothing import above, smoothed
from boneframe.interfaces import Contouring
from boneframe.volume import Volume

__all__ = ["DualThreshold", "DualThresholdParams"]


class DualThreshold(Contouring):
    """Periosteal, trabecular and cortical masks by the dual-threshold technique.

    Parameters
    ----------
    params : DualThresholdParams, mapping or None
        See :class:`~boneframe.compartments.params.DualThresholdParams` for each
        parameter, its default and where the default comes from.

    Examples
    --------
    >>> from boneframe.phantom_radius import radius_section
    >>> section = radius_section((2, 160, 160), voxel_size=164.0, radius_width=12.0)
    >>> masks = DualThreshold(bones="all").compartments(section.scan)
    >>> sorted(masks), masks["periosteal"].dtype
    (['cortical', 'periosteal', 'trabecular'], dtype('uint8'))
    """

    name: ClassVar[str] = "dual-threshold"
    description: ClassVar[str] = (
        "periosteal and endosteal contours by dual thresholds and morphology (Buie 2007, IPL)"
    )
    Params = DualThresholdParams
    params: DualThresholdParams

    def compartments(self, volume: Volume) -> dict[str, Volume]:
        """The periosteal, trabecular and cortical masks of ``volume``.

        Parameters
        ----------
        volume : Volume
            A calibrated scan (``units="density"``) with its voxel size; a dask
            volume is read slab by slab.

        Returns
        -------
        dict of str to Volume
            uint8 masks (0/1, numpy) with ``volume``'s geometry; ``trabecular`` and
            ``cortical`` partition ``periosteal``.

        Raises
        ------
        InputError
            An uncalibrated scan (with ``units="density"``), no voxel size, NaN or
            infinite values, or no bone above the low threshold.
        """
        p = self.params
        check_scan(volume, p.units, finite=False)
        low = above(volume, p.peri_low, p.peri_sigma, p.peri_support, p.units)
        bones = find_bones(low, p.bones, p.min_bone_fraction, p.margin())
        del low
        peri_out = np.zeros(volume.shape, np.uint8)
        trab_out = np.zeros(volume.shape, np.uint8)
        for bone in bones:
            high = smoothed(volume, bone.box, p.peri_sigma, p.peri_support, p.units)
            high = high > p.peri_high
            cortex = smoothed(volume, bone.box, p.endo_sigma, p.endo_support, p.units)
            cortex = cortex > p.endo_threshold
            peri_box, trab_box = peri_out[bone.box], trab_out[bone.box]
            # a bone near the scan's side: its crop is padded with background to the
            # full margin, so that closings there act as they do elsewhere
            cut = bone.cut
            keep = tuple(slice(a, a + n) for (a, _), n in zip(cut, peri_box.shape[1:], strict=True))
            for k in range(bone.mask.shape[0]):
                m, hk, ck = (np.pad(a[k], cut) for a in (bone.mask, high, cortex))
                peri = periosteal(m, hk, p)
                trab = trabecular(peri, ck, p)
                peri_box[k] |= peri[keep].view(np.uint8)
                trab_box[k] |= trab[keep].view(np.uint8)
        trab_out &= peri_out
        cort_out = peri_out - trab_out
        masks = {"periosteal": peri_out, "trabecular": trab_out, "cortical": cort_out}
        return {
            name: volume.with_data(data, metadata={"contouring": self.name, "compartment": name})
            for name, data in masks.items()
        }
