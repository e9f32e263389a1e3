"""A synthetic distal-radius section with its compartments known.

An HR-pQCT-like scan (82 µm voxels by default) of a forearm: soft tissue with a
subcutaneous fat layer in air, the radius and, optionally, the ulna beside it as
a second, disconnected bone. Each bone is a cortical shell whose thickness
varies around the bone between 0.45 and 1.2 mm, with a few longitudinal pores,
around a trabecular core whose texture is :func:`boneframe.phantom.trabecular_occupancy`
(plates and rods) in marrow. The density map (mg HA/cm³) is blurred by the
scanner's point-spread function, noise is added, and the scan is stored as the
scanner's native integers with the linear calibration an AIM's processing log
gives (``density = value * calibration_slope + calibration_intercept``), so it
goes through :func:`boneframe.compartments.contour` and the AIM writer like a real
scan.

The truth is geometric: each bone's periosteal and endosteal surfaces are
star-shaped curves ``r(θ)`` around the bone's centre, changing slowly from slice
to slice; a voxel belongs to a compartment when its centre lies inside the
curve. The endosteal curve is the periosteal one moved inwards by the local
thickness along the normal, so the shell's thickness measured across it is the
one asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.operators.geometry import per_axis
from boneframe.phantom import trabecular_occupancy
from boneframe.volume import Volume

__all__ = ["SCANCO_CALIBRATION", "RadiusSection", "radius_section"]

#: A Scanco XtremeCT calibration: native value ``v = µ · mu_scaling`` (µ in 1/cm),
#: density ``= µ · 1603.51904 - 391.209015`` mg HA/cm³, water µ = 0.2409 /cm;
#: keys and meaning as :func:`boneframe.io.scanco.calibration_from_log` gives them.
SCANCO_CALIBRATION: dict[str, Any] = {
    "mu_scaling": 8192.0,
    "mu_water_per_cm": 0.2409,
    "calibration_slope": 1603.51904 / 8192.0,
    "calibration_intercept": -391.209015,
    "calibration_unit": "mg HA/ccm",
    "hu_slope": 1000.0 / (8192.0 * 0.2409),
    "hu_intercept": -1000.0,
}

#: Densities of the tissues, mg HA/cm³ (air is the calibration's intercept).
DENSITY = {
    "soft_tissue": 35.0,
    "fat": -60.0,
    "marrow": 10.0,
    "trabecular_tissue": 950.0,
    "cortical_tissue": 1100.0,
}

_THETA = np.linspace(0.0, 2.0 * np.pi, 2048, endpoint=False)


@dataclass(frozen=True)
class RadiusSection:
    """A synthetic scan and the truth that produced it.

    Attributes
    ----------
    scan : Volume
        int16 native values, voxel size in µm, calibration in its metadata.
    periosteal, trabecular, cortical : Volume
        uint8 masks (1 inside) of the bones, the trabecular compartment (inside
        the endosteal surface) and the cortical one (between the two), on the
        scan's grid.
    bones : Volume
        uint8 labels of the bones: 1 the radius, 2 the ulna.
    params : dict
        What made it (for reports).
    """

    scan: Volume
    periosteal: Volume
    trabecular: Volume
    cortical: Volume
    bones: Volume
    params: dict[str, Any] = field(default_factory=dict)

    def density(self) -> np.ndarray:
        """The scan in mg HA/cm³ (float32), through its calibration."""
        meta = self.scan.metadata
        slope, intercept = meta["calibration_slope"], meta["calibration_intercept"]
        return (self.scan.numpy() * np.float32(slope) + np.float32(intercept)).astype(np.float32)


@dataclass(frozen=True)
class _Bone:
    """One bone's outline: a star-shaped periosteal curve and a shell thickness, in mm."""

    centre: tuple[float, float]  # (y, x) mm from the field of view's centre
    semi_axes: tuple[float, float]  # (along y, along x), mm
    harmonics: np.ndarray  # (k, amplitude, phase) rows: shape wobbles
    notch: tuple[float, float, float]  # (angle, half-width rad, depth as a fraction)
    thickness_range: tuple[float, float]  # mm
    thickness_phases: tuple[float, float]
    drift: float  # rad/mm: how fast the shape turns from slice to slice

    def periosteal_radius(self, z_mm: float) -> np.ndarray:
        """``r_p(θ)`` (mm) on the dense angle grid, at height ``z_mm``."""
        b, a = self.semi_axes
        t = _THETA
        r = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
        wobble = np.ones_like(t)
        for k, amp, phase in self.harmonics:
            wobble += amp * np.cos(k * t + phase + self.drift * z_mm * k)
        angle, width, depth = self.notch
        gap = np.angle(np.exp(1j * (t - angle)))
        wobble -= depth * np.exp(-0.5 * (gap / width) ** 2)
        return r * wobble

    def thickness(self, z_mm: float) -> np.ndarray:
        """Shell thickness ``t(θ)`` (mm), spanning exactly ``thickness_range``."""
        p0, p1 = self.thickness_phases
        f = np.cos(_THETA - p0 - self.drift * z_mm) + 0.35 * np.cos(2 * _THETA - p1)
        u = (f - f.min()) / (f.max() - f.min())
        lo, hi = self.thickness_range
        return lo + (hi - lo) * u


def _normal_factor(r: np.ndarray) -> np.ndarray:
    """``sqrt(1 + (r'/r)²)``: radial distance over normal distance for a curve ``r(θ)``."""
    dr = (np.roll(r, -1) - np.roll(r, 1)) / (2.0 * (_THETA[1] - _THETA[0]))
    return np.sqrt(1.0 + (dr / r) ** 2)


def _signed_distance(
    rho: np.ndarray, index: np.ndarray, frac: np.ndarray, r: np.ndarray
) -> np.ndarray:
    """Signed distance (mm, negative inside) of points at ``rho`` from the curve ``r(θ)``,
    measured along the normal (to first order)."""
    n = _normal_factor(r)
    nxt = (index + 1) % r.size
    r_at = r[index] * (1 - frac) + r[nxt] * frac
    n_at = n[index] * (1 - frac) + n[nxt] * frac
    return (rho - r_at) / n_at


def _ramp(signed_mm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Partial-volume occupancy of the inside of a surface: a one-voxel linear ramp."""
    return np.clip(0.5 - signed_mm / voxel_mm, 0.0, 1.0)


def _bones(
    scale: float, ulna: bool, thickness: tuple[float, float], rng: np.random.Generator
) -> list[_Bone]:
    """The radius (and ulna), sized by ``scale`` (the radius's width in mm / 22), their
    shells ``thickness`` (mm) thick."""

    def harmonics() -> np.ndarray:
        ks = np.array([2.0, 3.0, 4.0])
        return np.column_stack([ks, rng.uniform(0.01, 0.04, 3), rng.uniform(0, 2 * np.pi, 3)])

    radius = _Bone(
        centre=(0.0, -6.0 * scale),
        semi_axes=(8.0 * scale, 11.0 * scale),
        harmonics=harmonics(),
        notch=(0.0, 0.35, 0.08),  # the sigmoid notch faces the ulna (+x)
        thickness_range=thickness,
        thickness_phases=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        drift=0.01,
    )
    if not ulna:
        return [radius]
    # the ulna's head sits in the notch, a few millimetres from the radius
    ulna_bone = _Bone(
        centre=(1.0 * scale, 11.0 * scale),
        semi_axes=(4.6 * scale, 5.0 * scale),
        harmonics=harmonics(),
        notch=(np.pi, 0.5, 0.0),
        thickness_range=thickness,
        thickness_phases=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        drift=-0.01,
    )
    return [radius, ulna_bone]


def _surfaces(
    bone: _Bone, z_mm: float, yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances (mm, negative inside) of the grid points ``(yy, xx)`` from a
    bone's periosteal and endosteal surfaces at height ``z_mm``."""
    cy, cx = bone.centre
    rho = np.hypot(yy - cy, xx - cx)
    pos = (np.arctan2(yy - cy, xx - cx) % (2 * np.pi)) / (_THETA[1] - _THETA[0])
    index = np.floor(pos).astype(np.intp) % _THETA.size
    frac = pos - np.floor(pos)
    r_p = bone.periosteal_radius(z_mm)
    r_e = r_p - bone.thickness(z_mm) * _normal_factor(r_p)
    return (
        _signed_distance(rho, index, frac, r_p),
        _signed_distance(rho, index, frac, r_e),
    )


def _texture(shape: tuple[int, int, int], voxel_um: float, seed: int, bv_tv: float) -> np.ndarray:
    """Trabecular occupancy over the whole grid: a periodic tile, repeated."""
    thickness = float(np.clip(150.0 / voxel_um, 1.5, 8.0))  # trabeculae ~150 µm thick
    tile = tuple(max(8, min(n, 64 if a == 0 else 192)) for a, n in enumerate(shape))
    occ = trabecular_occupancy(tile, seed, bv_tv=bv_tv, thickness=thickness)
    reps = [-(-n // t) for n, t in zip(shape, tile, strict=True)]
    return np.tile(occ, reps)[: shape[0], : shape[1], : shape[2]]


def _pores(
    cortex: np.ndarray, porosity: float, voxel_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Longitudinal canals (the same disks in every slice) filling ``porosity`` of the
    cortex (2-D mask), each about 0.2 mm across."""
    out = np.zeros_like(cortex)
    where = np.flatnonzero(cortex)
    if porosity <= 0 or where.size == 0:
        return out
    radius_px = max(0.6, 0.1 / voxel_mm)
    per_pore = np.pi * radius_px**2
    count = int(round(porosity * where.size / per_pore))
    centres = rng.choice(where, size=min(count, where.size), replace=False)
    seeds = np.zeros(cortex.shape, bool)
    seeds.flat[centres] = True
    dist = ndimage.distance_transform_edt(~seeds)
    return (dist <= radius_px) & cortex


def radius_section(
    shape: int | Sequence[int] = (16, 448, 448),
    voxel_size: float = 82.0,
    seed: int = 0,
    *,
    radius_width: float = 22.0,
    ulna: bool = True,
    noise: float = 50.0,
    blur: float = 60.0,
    porosity: float = 0.03,
    cortical_thickness: tuple[float, float] = (0.45, 1.2),
    bv_tv: float = 0.2,
) -> RadiusSection:
    """A synthetic distal-radius HR-pQCT section, calibrated, with its true compartments.

    Parameters
    ----------
    shape : int or 3 ints
        ``(slices, rows, columns)``; the bones sit at the centre of each slice.
    voxel_size : float
        Isotropic voxel size in µm (82 µm: XtremeCT; 60.7 µm: XtremeCT II).
    seed : int
        Seed of the shapes, the trabecular texture, the pores and the noise: the
        same seed gives the same bytes.
    radius_width : float
        The radius's mediolateral width in mm (about 22 mm at the distal site); the
        ulna, the forearm and their places scale with it, the cortical thickness
        (0.45–1.2 mm) does not.
    ulna : bool
        Add the ulna, a second bone a few millimetres from the radius.
    noise : float
        Standard deviation of the Gaussian noise, mg HA/cm³.
    blur : float
        Standard deviation of the scanner's Gaussian point-spread function, µm.
    porosity : float
        Fraction of the cortex taken by pores (about 0.2 mm canals along z).
    cortical_thickness : (float, float)
        Thinnest and thickest cortex around each bone, mm (0.45–1.2 mm at the distal
        radius); the thickness varies smoothly around the bone between the two.
    bv_tv : float
        Trabecular bone volume fraction (0.05–0.5); the trabeculae (about 150 µm
        thick) reach the endosteal surface and join the cortex there.

    Returns
    -------
    RadiusSection
        The int16 scan (metadata: :data:`SCANCO_CALIBRATION`) and the uint8 truth.

    Raises
    ------
    InputError
        A shape under 8 rows or columns, or parameters out of range.

    Examples
    --------
    >>> section = radius_section((4, 128, 128), voxel_size=164.0, radius_width=14.0)
    >>> section.scan.dtype, section.periosteal.shape
    (dtype('int16'), (4, 128, 128))
    """
    shp = per_axis(shape)
    if len(shp) != 3 or shp[0] < 1 or min(shp[1:]) < 8:
        raise InputError(
            f"section shape must be (slices >= 1, rows >= 8, columns >= 8), got {shape!r}"
        )
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InputError(f"voxel_size must be a positive number of µm, got {voxel_size}")
    if not 5.0 <= radius_width <= 40.0:
        raise InputError(f"radius_width must lie in [5, 40] mm, got {radius_width}")
    for name, value in (("noise", noise), ("blur", blur)):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a non-negative number, got {value}")
    if not 0.0 <= porosity < 0.5:
        raise InputError(f"porosity must lie in [0, 0.5), got {porosity}")
    lo, hi = (float(t) for t in cortical_thickness)
    if not 0.05 <= lo <= hi <= 3.0:
        raise InputError(
            f"cortical_thickness must be (thinnest, thickest) within [0.05, 3] mm, "
            f"got {cortical_thickness!r}"
        )
    if not 0.05 <= bv_tv <= 0.5:
        raise InputError(f"bv_tv must lie in [0.05, 0.5], got {bv_tv}")
    if seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    nz, ny, nx = (int(n) for n in shp)
    vox = voxel_size / 1000.0
    rng = np.random.default_rng(seed)
    scale = radius_width / 22.0
    bones = _bones(scale, ulna, (lo, hi), rng)
    for bone in bones:
        r_p = bone.periosteal_radius(0.0)
        if np.min(r_p - hi * _normal_factor(r_p)) < 0.5:
            raise InputError(
                f"a cortex {hi} mm thick leaves no marrow in bones this small "
                f"(radius_width {radius_width} mm): thin it or widen the radius"
            )
    texture = _texture((nz, ny, nx), voxel_size, seed, bv_tv)

    y = (np.arange(ny) - (ny - 1) / 2.0) * vox
    x = (np.arange(nx) - (nx - 1) / 2.0) * vox
    yy, xx = np.meshgrid(y, x, indexing="ij")
    # the forearm: soft tissue under a fat layer, in air
    arm = np.hypot(yy / (22.0 * scale), xx / (31.0 * scale))
    arm_sd = (arm - 1.0) * 22.0 * scale  # mm, roughly
    fat_sd = (arm - 1.0) * 22.0 * scale + 3.0 * scale
    air = SCANCO_CALIBRATION["calibration_intercept"]
    outside = (
        air
        + (DENSITY["fat"] - air) * _ramp(arm_sd, vox)
        + (DENSITY["soft_tissue"] - DENSITY["fat"]) * _ramp(fat_sd, vox)
    )

    def surfaces(z: int) -> list[tuple[np.ndarray, np.ndarray]]:
        z_mm = (z - (nz - 1) / 2.0) * vox
        return [_surfaces(bone, z_mm, yy, xx) for bone in bones]

    # the canals run through every slice: placed in the middle slice's cortex
    pore_maps = [
        _pores((sd_p < -vox) & (sd_e > vox), porosity, vox, rng) for sd_p, sd_e in surfaces(nz // 2)
    ]
    density = np.empty((nz, ny, nx), np.float32)
    peri = np.zeros((nz, ny, nx), np.uint8)
    trab = np.zeros((nz, ny, nx), np.uint8)
    labels = np.zeros((nz, ny, nx), np.uint8)
    marrow, tissue = DENSITY["marrow"], DENSITY["trabecular_tissue"]
    for z in range(nz):
        value = outside.copy()
        for b, (sd_p, sd_e) in enumerate(surfaces(z)):
            occ_p, occ_e = _ramp(sd_p, vox), _ramp(sd_e, vox)
            shell = np.clip(occ_p - occ_e, 0.0, 1.0)
            cortical_tissue = np.where(pore_maps[b], marrow, DENSITY["cortical_tissue"])
            core = marrow + (tissue - marrow) * texture[z]
            value = value * (1.0 - occ_p) + shell * cortical_tissue + occ_e * core
            inside = sd_p < 0
            peri[z][inside] = 1
            trab[z][sd_e < 0] = 1
            labels[z][inside] = b + 1
        density[z] = value
    edge = labels[:, [0, -1], :].any() or labels[:, :, [0, -1]].any()
    if edge:
        raise InputError(
            f"the bones do not fit in {ny} x {nx} voxels of {voxel_size:g} µm "
            f"({ny * vox:.1f} x {nx * vox:.1f} mm) with radius_width {radius_width:g} mm"
            f"{' and the ulna' if ulna else ''}: give more rows and columns or a smaller radius"
        )
    sigma = blur / voxel_size
    if sigma > 0:
        ndimage.gaussian_filter(density, sigma, output=density, mode="nearest", truncate=3.0)
    if noise > 0:
        noise_rng = np.random.default_rng(seed + 1)
        density += noise_rng.standard_normal(density.shape, dtype=np.float32) * np.float32(noise)
    slope = SCANCO_CALIBRATION["calibration_slope"]
    native = np.rint((density - np.float32(air)) / np.float32(slope))
    scan = np.clip(native, -32768, 32767).astype(np.int16)
    cortical = (peri & (1 - trab)).astype(np.uint8)

    params = {
        "shape": [nz, ny, nx],
        "voxel_size_um": voxel_size,
        "seed": seed,
        "radius_width_mm": radius_width,
        "ulna": ulna,
        "noise": noise,
        "blur_um": blur,
        "porosity": porosity,
        "cortical_thickness_mm": [lo, hi],
        "bv_tv": bv_tv,
    }
    geom: dict[str, Any] = {"voxel_size": (voxel_size,) * 3}
    return RadiusSection(
        scan=Volume(scan, metadata=dict(SCANCO_CALIBRATION), **geom),
        periosteal=Volume(peri, **geom),
        trabecular=Volume(trab, **geom),
        cortical=Volume(cortical, **geom),
        bones=Volume(labels, **geom),
        params=params,
    )
