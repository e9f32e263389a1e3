"""Mean-intercept counts along lines, restricted to a mask (DA inside a region).

The lines are those of :func:`boneframe.metrics.thickness_kernels.intercept_counts`
(the same directions, grids and samples); here a sample outside the mask ends
the run: a change counts only between two consecutive samples inside the mask,
and the length is the samples inside the mask times the sampling increment. So
the region's boundary is no phase change, as the volume's border is none.
"""

from __future__ import annotations

import numpy as np

from boneframe.metrics.thickness_kernels import OUTSIDE, run_intercepts


def masked_intercept_counts(
    bone: np.ndarray,
    mask: np.ndarray,
    directions: np.ndarray,
    grid_offsets: np.ndarray,
    spacing: float,
    increment: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase changes and sampled length inside ``mask`` along parallel lines, per direction.

    Parameters
    ----------
    bone, mask : numpy.ndarray of bool
        The bone and the region (one shape).
    directions, grid_offsets, spacing, increment
        As :func:`boneframe.metrics.thickness_kernels.intercept_counts`.

    Returns
    -------
    changes : numpy.ndarray of int64
    lengths : numpy.ndarray of float
        Sampled length inside the mask (voxels).
    """
    state = np.where(mask, bone.astype(np.uint8), np.uint8(OUTSIDE)).astype(np.uint8)
    return run_intercepts(state, True, directions, grid_offsets, spacing, increment)
