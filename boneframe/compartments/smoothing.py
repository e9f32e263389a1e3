"""Smoothed values of a scan, read region by region.

A contouring thresholds Gaussian-smoothed densities. The scan is read one
region at a time (a slab of slices, a box around a bone), grown by the filter's
support on every side where the scan has voxels, converted to the thresholds'
units, smoothed and cut back: the result is the one the whole volume would give
(replicated edge values beyond the scan's border, as ``mode="nearest"``), while
only one region's floats are held at a time. A dask volume is computed region by
region.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from boneframe.calibration import to_density
from boneframe.errors import InputError
from boneframe.segmentation.gauss import smooth
from boneframe.volume import Volume

#: Units of a contouring's thresholds: the scan's calibrated density (mg HA/cm³)
#: or its own stored values.
Units = Literal["density", "native"]

Box = tuple[slice, slice, slice]

#: Voxels per slab of :func:`above` (128 MiB of float32).
SLAB_VOXELS = 1 << 25


def smoothed(volume: Volume, box: Box, sigma: float, support: int, units: Units) -> np.ndarray:
    """The scan's values over ``box``, in ``units``, smoothed by a Gaussian.

    Parameters
    ----------
    volume : Volume
        The scan (numpy or dask).
    box : three slices
        The region, with explicit, in-range ``start`` and ``stop``.
    sigma : float
        Standard deviation of the Gaussian, voxels (the same on every axis).
    support : int
        Half-width of the kernel in voxels (IPL's support); 0: no smoothing.
    units : {"density", "native"}
        ``"density"``: mg HA/cm³ through :func:`boneframe.calibration.to_density`.

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``box``.

    Raises
    ------
    InputError
        If the region holds NaN or infinite values.
    """
    shape = volume.shape
    grown = tuple(
        slice(max(0, s.start - support), min(n, s.stop + support))
        for s, n in zip(box, shape, strict=True)
    )
    block = np.asarray(volume.data[grown])
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        z = grown[0]
        raise InputError(
            f"the scan holds NaN or infinite values (between slices {z.start} and {z.stop - 1})"
        )
    if units == "density":
        values = np.asarray(to_density(volume.with_data(block)).data, dtype=np.float32)
    else:
        values = block.astype(np.float32)
    if support > 0 and sigma > 0:
        values = smooth(values, sigma, support)
    inner = tuple(
        slice(s.start - g.start, s.stop - g.start) for s, g in zip(box, grown, strict=True)
    )
    return values[inner]


def above(volume: Volume, threshold: float, sigma: float, support: int, units: Units) -> np.ndarray:
    """Where the smoothed scan exceeds ``threshold``: a boolean array of the whole
    scan, computed slab by slab (see :func:`smoothed`)."""
    nz, ny, nx = volume.shape
    step = max(1, SLAB_VOXELS // (ny * nx))
    out = np.empty((nz, ny, nx), bool)
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        box = (slice(z0, z1), slice(0, ny), slice(0, nx))
        np.greater(smoothed(volume, box, sigma, support, units), threshold, out=out[z0:z1])
    return out
