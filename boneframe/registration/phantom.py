"""A simulated micro-CT / HR-pQCT pair that is *not* registered, with its truth.

The micro-CT is a trabecular structure on its own grid (e.g. 24 µm, int16). The
HR-pQCT sees the same structure through a rigid transform ``T`` (fixed → moving
points): on the HR-pQCT-aligned fine grid (spacing HR-pQCT / p, voxel ``p·i`` on
HR-pQCT voxel ``i``) the true micro-CT is ``f(x) = micro_ct(T(x))`` (linear
interpolation), and the HR-pQCT scan is

.. math:: g = m(U(h * f)) + s + n

with a Gaussian blur ``h`` (FWHM ≈ 140 µm), decimation ``U``, a non-linear
monotone grey-level map ``m`` (tanh), a smooth shading ``s`` and white noise ``n``.
Used by the registration tests and benchmark; the structure needs no data files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.phantom import gaussian_kernel, simulate_acquisition, trabecular_occupancy
from boneframe.registration.resample import FWHM_PER_SIGMA, fine_grid
from boneframe.registration.sitk import RigidTransform, index_grid_points, world_to_index
from boneframe.volume import DEFAULT_DIRECTION, Volume

MARROW, BONE = 150.0, 1150.0  # micro-CT grey levels (int16)


def synthetic_structure(
    shape: int | Sequence[int],
    seed: int = 0,
    *,
    voxel_um: float = 24.0,
    thickness_um: float = 120.0,
    bv_tv: float = 0.25,
    period: int | None = None,
) -> np.ndarray:
    """Trabecular occupancy in [0, 1] on a micro-CT grid, made at half resolution.

    The random fields cost most of :func:`~boneframe.phantom.trabecular_occupancy`'s
    time; building them at half the resolution and interpolating ×2 (linear) is
    8× cheaper and leaves the structure (plates and rods ``thickness_um`` thick)
    unchanged to within the partial-volume ramp.

    Parameters
    ----------
    shape : int or 3 ints
        Micro-CT shape.
    seed : int
        Seed of the structure.
    voxel_um, thickness_um, bv_tv : float
        Voxel size, trabecular thickness and bone volume fraction.
    period : int, optional
        Build a cube of ``period`` voxels and repeat it (the fields are periodic,
        so there is no seam): the cheap way to a large volume.
    """
    shp = np.broadcast_to(np.asarray(shape, int), (3,))
    half = tuple(int(n) // 2 + 2 for n in shp)
    cell = half if period is None else (int(period) // 2,) * 3
    occ = trabecular_occupancy(
        cell, seed, bv_tv=bv_tv, thickness=float(np.clip(thickness_um / voxel_um / 2, 1.5, 8))
    )
    if cell != half:
        occ = np.pad(occ, [(0, h - c) for h, c in zip(half, cell, strict=True)], mode="wrap")
    big = ndimage.zoom(occ, 2, order=1, grid_mode=False)
    return np.ascontiguousarray(big[: shp[0], : shp[1], : shp[2]])


def grey_map(u: np.ndarray) -> np.ndarray:
    """The HR-pQCT's non-linear, monotone grey-level map of micro-CT grey levels."""
    x = (np.asarray(u, dtype=np.float64) - MARROW) / (BONE - MARROW)
    return 500.0 + 400.0 * np.tanh(2.5 * (x - 0.35))


@dataclass
class SimulatedPair:
    """A misregistered pair and everything that made it.

    Attributes
    ----------
    moving : Volume
        Micro-CT (int16).
    fixed : Volume
        HR-pQCT (float32) ``m(U(h * f)) + s + n``.
    truth : RigidTransform
        The fixed → moving transform.
    fine : Volume
        ``f``: the micro-CT on the HR-pQCT-aligned fine grid (float32).
    kernel : numpy.ndarray
        ``h`` in fine-grid voxels.
    shading : numpy.ndarray
        ``s`` on the HR-pQCT grid.
    noise : float
        Standard deviation of ``n``.
    p : int
        Fine-grid factor.
    """

    moving: Volume
    fixed: Volume
    truth: RigidTransform
    fine: Volume
    kernel: np.ndarray
    shading: np.ndarray
    noise: float
    p: int


def simulate_pair(
    occupancy: np.ndarray,
    *,
    angle_deg: float,
    axis: Sequence[float],
    translation_um: Sequence[float],
    lr_shape: int | Sequence[int] = 40,
    lr_voxel_um: float = 82.0,
    moving_voxel_um: float = 24.0,
    p: int = 2,
    fwhm_um: float = 140.0,
    noise: float = 15.0,
    shading: float = 150.0,
    fixed_direction: np.ndarray | None = None,
    center_um: Sequence[float] = (1200.0, -800.0, 400.0),
    seed: int = 0,
    moving_shape: int | Sequence[int] | None = None,
) -> SimulatedPair:
    """Simulate a micro-CT / HR-pQCT pair related by a known rigid transform.

    Parameters
    ----------
    occupancy : ndarray
        Bone occupancy in [0, 1] on the micro-CT grid (e.g. from
        :func:`synthetic_structure`, or a real segmented scan).
    angle_deg, axis, translation_um
        The true transform: rotation about ``axis`` through the HR-pQCT's centre,
        then translation (µm).
    lr_shape : int or 3 ints
        HR-pQCT shape.
    lr_voxel_um, moving_voxel_um : float
        HR-pQCT and micro-CT voxel sizes (µm).
    p : int
        Fine-grid factor.
    fwhm_um : float
        FWHM of the HR-pQCT's Gaussian blur (µm).
    noise, shading : float
        Noise standard deviation and shading amplitude in HR-pQCT grey levels
        (the grey-level map spans about 100–900).
    fixed_direction : ndarray, optional
        Direction of the HR-pQCT's array axes, of the micro-CT's handedness; by
        default both scans have :data:`~boneframe.volume.DEFAULT_DIRECTION`
        (arrays indexed z, y, x).
    center_um : 3 floats
        World position of both scans' centres (so the image centres agree and a
        geometry initialiser starts exactly ``translation_um`` away).
    seed : int
        Seed of the noise of both scans.
    moving_shape : int or 3 ints, optional
        Return only the central part of this shape as the micro-CT (the
        HR-pQCT still sees the whole structure), as when the micro-CT's field of
        view is the smaller one.

    Raises
    ------
    InputError
        When the micro-CT does not cover the HR-pQCT's field of view (with the
        blur's margin) under the transform.
    """
    rng = np.random.default_rng(seed)
    occ = np.asarray(occupancy)
    m_dir = DEFAULT_DIRECTION
    direction = m_dir if fixed_direction is None else np.asarray(fixed_direction, float)
    lr = np.broadcast_to(np.asarray(lr_shape, int), (3,))
    vs_lr = np.full(3, float(lr_voxel_um))
    centre = np.asarray(center_um, float)
    fixed_origin = centre - direction @ ((lr - 1) / 2.0 * vs_lr)
    vs_m = np.full(3, float(moving_voxel_um))
    moving_origin = centre - m_dir @ ((np.asarray(occ.shape) - 1) / 2.0 * vs_m)
    truth = RigidTransform.from_rotation(axis, angle_deg, translation_um, tuple(centre))

    micro = np.empty(occ.shape, np.int16)
    for a in range(0, occ.shape[0], 32):  # slabs: float64 noise of a whole scan is large
        slab = MARROW + (BONE - MARROW) * occ[a : a + 32].astype(np.float32)
        slab += rng.normal(0.0, 10.0, slab.shape).astype(np.float32)
        micro[a : a + 32] = np.clip(np.rint(slab), -32768, 32767)
    moving = Volume(micro, tuple(vs_m), tuple(moving_origin), m_dir)
    fixed_geom = Volume(np.empty(tuple(lr), np.uint8), tuple(vs_lr), tuple(fixed_origin), direction)
    sigma = fwhm_um / FWHM_PER_SIGMA / (lr_voxel_um / p)
    support = 2 * math.ceil(3.5 * sigma) + 1
    h = gaussian_kernel(sigma, support)
    pad = -(-(support // 2) // p)  # HR-pQCT voxels of margin for the blur
    grid = fine_grid(fixed_geom, p, pad)
    grid_vol = Volume(np.empty((1, 1, 1)), grid.voxel_size, grid.origin, grid.direction)
    f_big = np.empty(grid.shape, np.float32)
    j, k = np.meshgrid(np.arange(grid.shape[1]), np.arange(grid.shape[2]), indexing="ij")
    upper = np.asarray(moving.shape) - 1
    for i in range(grid.shape[0]):
        idx = np.stack([np.full(j.shape, i), j, k], axis=-1).reshape(-1, 3)
        pts = world_to_index(moving, truth.apply(index_grid_points(grid_vol, idx)))
        if np.any(pts < 0) or np.any(pts > upper):
            raise InputError(
                "the micro-CT does not cover the HR-pQCT field of view under this transform "
                f"(fine-grid row {i} maps to indices {pts.min(axis=0)} .. {pts.max(axis=0)}, "
                f"outside 0 .. {upper})"
            )
        f_big[i] = ndimage.map_coordinates(
            micro, pts.T, order=1, mode="nearest", output=np.float32
        ).reshape(j.shape)
    f, clean = simulate_acquisition(f_big, h, p=p, margin=p * pad)
    del f_big
    # smooth shading over the HR-pQCT's field of view
    x = [np.linspace(-1.0, 1.0, int(n)) for n in lr]
    x0, x1, x2 = np.meshgrid(*x, indexing="ij")
    shade = shading * (0.6 * x0 + 0.4 * x1**2 - 0.5 * x0 * x2 + 0.3 * x2)
    g = grey_map(clean) + shade + rng.normal(0.0, noise, clean.shape)
    fixed = Volume(g.astype(np.float32), tuple(vs_lr), tuple(fixed_origin), direction)
    fine_vol = Volume(f, tuple(vs_lr / p), tuple(fixed_origin), direction)
    if moving_shape is not None:
        # a micro-CT that sees only the middle of the structure
        ms = np.broadcast_to(np.asarray(moving_shape, int), (3,))
        lo = (np.asarray(micro.shape) - ms) // 2
        if np.any(lo < 0):
            raise InputError(f"moving_shape {tuple(ms)} exceeds the structure {micro.shape}")
        crop = tuple(slice(a, a + n) for a, n in zip(lo, ms, strict=True))
        moving = Volume(
            np.ascontiguousarray(micro[crop]),
            tuple(vs_m),
            tuple(moving_origin + m_dir @ (lo * vs_m)),
            m_dir,
        )
    return SimulatedPair(moving, fixed, truth, fine_vol, h, shade, float(noise), int(p))
