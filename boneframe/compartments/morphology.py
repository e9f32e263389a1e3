"""Binary morphology with Euclidean disks, through distance transforms.

A dilation by a disk (ball) of radius ``r`` keeps the voxels within ``r`` of the
mask; an erosion keeps the mask's voxels farther than ``r`` from its outside.
Both are a threshold on one Euclidean distance transform (the ``edt`` package),
so their cost does not grow with the radius, unlike a structuring element's
(IPL uses a 3-4-5 chamfer metric; the Euclidean one is rounder).

Erosions see beyond the array as background: a mask cropped around a bone with a
margin of at least the dilation radius is eroded as the whole scan would be. The
functions work on 2-D and 3-D boolean arrays; "enclosed" background is background
that does not reach the array's sides along its last two axes (in-plane), so a
3-D bone's marrow, open at the top and bottom slices, still counts as enclosed.
"""

from __future__ import annotations

from typing import Literal

import cc3d
import edt
import numpy as np

__all__ = [
    "close_filling",
    "closing",
    "dilate",
    "erode",
    "fill_enclosed",
    "keep_large",
    "keep_largest",
    "open_largest",
    "opening",
]


def _distance(mask: np.ndarray, black_border: bool) -> np.ndarray:
    """Distance of each ``True`` voxel to the nearest ``False`` one (voxels)."""
    return edt.edt(np.ascontiguousarray(mask), black_border=black_border, parallel=1)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within ``radius`` (voxels) of ``mask``."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    return _distance(~mask, False) <= radius


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Voxels of ``mask`` farther than ``radius`` from its outside (the array's
    surroundings count as outside)."""
    if radius <= 0:
        return mask.copy()
    return _distance(mask, True) > radius


def closing(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological closing by a disk of ``radius``."""
    return erode(dilate(mask, radius), radius)


def opening(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological opening by a disk of ``radius``."""
    return dilate(erode(mask, radius), radius)


def _labels(mask: np.ndarray, background: bool = False) -> tuple[np.ndarray, int]:
    """Connected components: 8/26-connected foreground, 4/6-connected background."""
    conn: Literal[4, 6, 8, 26]
    if background:
        conn = 4 if mask.ndim == 2 else 6
    else:
        conn = 8 if mask.ndim == 2 else 26
    labels, n = cc3d.connected_components(
        np.ascontiguousarray(mask), connectivity=conn, return_N=True
    )
    return labels, int(n)


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the array's
    in-plane sides (last two axes) filled."""
    labels, n = _labels(~mask, background=True)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for axis in (-2, -1):
        for end in (0, -1):
            outside[np.take(labels, end, axis=axis)] = True
    outside[0] = False
    return ~outside[labels]


def keep_largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty)."""
    labels, n = _labels(mask)
    if n <= 1:
        return mask.copy()
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    counts[0] = 0
    return labels == np.argmax(counts)


def keep_large(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """The connected components of ``mask`` with at least ``min_voxels`` voxels."""
    labels, n = _labels(mask)
    if n == 0:
        return mask.copy()
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts >= min_voxels
    keep[0] = False
    return keep[labels]


def close_filling(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate, fill the enclosed background, erode back: closes gaps narrower than
    ``2 * radius`` in a shell and fills what it encloses (IPL's dilate,
    component-label the background, erode)."""
    return erode(fill_enclosed(dilate(mask, radius)), radius)


def open_largest(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erode, keep the largest component, dilate back (the opening with a
    component labelling between): drops what hangs on by necks narrower than
    ``2 * radius``."""
    return dilate(keep_largest(erode(mask, radius)), radius)
