"""The bones of a scan: the large 3-D connected components of its bone mask.

A forearm scan holds the radius and the ulna, disconnected; the soft tissue
around them is far below any bone threshold, so what a threshold leaves beside
the bones is noise and small dense specks. The bones are the components of the
thresholded scan (26-connected), biggest first; each is handed on as a boolean
mask cropped to its bounding box grown by a margin, so that the slice-wise
contouring works on a few hundred pixels a side instead of the whole field of
view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cc3d
import numpy as np

from boneframe.errors import InputError

Box = tuple[slice, slice, slice]

#: Which bones a contouring keeps: the biggest one (the radius or the tibia of a
#: standard distal scan), or every component at least ``min_fraction`` of it.
Keep = Literal["largest", "all"]


@dataclass(frozen=True)
class Bone:
    """One bone: its voxels within ``box`` (a crop of the scan), and the in-plane margin
    the scan's sides cut off that crop (``((top, bottom), (left, right))`` voxels)."""

    box: Box
    mask: np.ndarray
    voxels: int
    cut: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))


def _grown(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    """``box`` grown in-plane by ``margin`` voxels (clipped to the scan)."""
    z, y, x = box
    return (
        slice(int(z.start), int(z.stop)),
        slice(max(0, int(y.start) - margin), min(shape[1], int(y.stop) + margin)),
        slice(max(0, int(x.start) - margin), min(shape[2], int(x.stop) + margin)),
    )


def find_bones(mask: np.ndarray, keep: Keep, min_fraction: float, margin: int) -> list[Bone]:
    """The bones in a thresholded scan, biggest first.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        The scan thresholded at a bone threshold (3-D).
    keep : {"largest", "all"}
        The biggest component only, or every component with at least
        ``min_fraction`` of the biggest one's voxels.
    min_fraction : float
        In (0, 1].
    margin : int
        In-plane margin of each crop, voxels.

    Returns
    -------
    list of Bone

    Raises
    ------
    InputError
        If the mask is empty: no bone in the scan.
    """
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    if n == 0:
        raise InputError("no bone found: no voxel of the smoothed scan is above the threshold")
    stats = cc3d.statistics(labels)
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)
    counts[0] = 0
    order = np.argsort(counts)[::-1]
    biggest = int(counts[order[0]])
    chosen = (
        [order[0]]
        if keep == "largest"
        else [k for k in order if counts[k] > 0 and counts[k] >= min_fraction * biggest]
    )
    bones = []
    for k in chosen:
        # cc3d's bounding boxes follow the array's axes: slices (axis 0, 1, 2)
        tight = tuple(stats["bounding_boxes"][int(k)])
        box = _grown(tight, margin, mask.shape)  # type: ignore[arg-type]
        cut = tuple(
            (margin - (t.start - b.start), margin - (b.stop - t.stop))
            for t, b in zip(tight[1:], box[1:], strict=True)
        )
        bones.append(Bone(box, labels[box] == k, int(counts[k]), cut))  # type: ignore[arg-type]
    return bones
