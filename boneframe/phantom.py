"""Synthetic trabecular bone and a simulated HR-pQCT acquisition of it.

The structure is a union of *plates* (thin shells around the zero level set of
a band-limited Gaussian random field) and *rods* (tubes around the intersection
curve of two more level sets). Dividing each field by its gradient magnitude
turns it into an approximate signed distance, so that the thickness is set
directly in voxels; the spacing of the level sets (the fields' wavelength) is
then tuned to reach the requested BV/TV.

The low-resolution scan follows the paper's model ``g = U(h * (f + c)) + n``,
simulated on a domain larger than the returned crop, so that low-resolution
voxels at the border see bone outside ``f`` exactly as in real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft

from boneframe.errors import InputError
from boneframe.operators import ForwardModel, as_factor, check_kernel, decimate
from boneframe.operators.geometry import per_axis
from boneframe.volume import Volume, as_triple

DEFAULT_SIGMA = (1.6, 1.3, 1.1)
DEFAULT_SHIFT = (0.3, -0.2, 0.1)


def gaussian_kernel(
    sigma: float | Sequence[float],
    support: int | Sequence[int] = 9,
    shift: float | Sequence[float] = 0.0,
    gain: float = 1.0,
) -> np.ndarray:
    """A sampled, possibly anisotropic and off-centre 3D Gaussian kernel.

    Parameters
    ----------
    sigma : float or 3 floats
        Standard deviation per axis, in voxels (must be positive).
    support : int or 3 ints
        Odd support per axis; the centre is at index ``K // 2``.
    shift : float or 3 floats
        Offset of the Gaussian's centre from the kernel centre, in voxels.
    gain : float
        Sum of the kernel after truncation.

    Returns
    -------
    numpy.ndarray
        float64 kernel of shape ``support``.

    Examples
    --------
    >>> h = gaussian_kernel(1.0, 5)
    >>> h.shape, round(float(h.sum()), 6)
    ((5, 5, 5), 1.0)
    """
    s = as_triple(sigma, "sigma")
    if min(s) <= 0:
        raise InputError(f"kernel sigma must be positive, got {s}")
    k = per_axis(support)
    if len(k) != 3 or any(v < 1 or v % 2 == 0 for v in k):
        raise InputError(f"kernel support must be odd and positive on every axis, got {support!r}")
    d = as_triple(shift, "shift")
    axes = [
        np.exp(-0.5 * ((np.arange(n) - n // 2 - mu) / sd) ** 2)
        for n, mu, sd in zip(k, d, s, strict=True)
    ]
    h = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return h * (gain / h.sum())


def _random_fields(
    shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """White-noise spectra for ``count`` independent fields (filtered later)."""
    return [
        scipy.fft.rfftn(rng.standard_normal(shape, dtype=np.float32), workers=1)
        for _ in range(count)
    ]


def _distance_field(spectrum: np.ndarray, shape: tuple[int, ...], wavelength: float) -> np.ndarray:
    """Band-pass the white-noise spectrum around ``wavelength`` voxels and return
    the field divided by its gradient magnitude (an approximate signed distance
    to its zero level set)."""
    freqs = np.meshgrid(
        *[scipy.fft.fftfreq(n) for n in shape[:-1]], scipy.fft.rfftfreq(shape[-1]), indexing="ij"
    )
    k = np.sqrt(sum(f * f for f in freqs))
    k0 = 1.0 / wavelength
    filt = np.exp(-0.5 * ((k - k0) / (0.35 * k0)) ** 2).astype(np.float32)
    phi = scipy.fft.irfftn(spectrum * filt, s=shape, workers=1)
    # the field is periodic: central differences that wrap around
    norm = np.sqrt(
        sum((0.5 * (np.roll(phi, -1, a) - np.roll(phi, 1, a))) ** 2 for a in range(phi.ndim))
    )
    return (phi / np.maximum(norm, 1e-6 * float(norm.max()))).astype(np.float32)


def _occupancy(
    spectra: list[np.ndarray],
    shape: tuple[int, ...],
    wavelength: float,
    thickness: float,
    plate_fraction: float,
) -> np.ndarray:
    """Partial-volume bone occupancy in [0, 1] of plates and rods."""
    d_plate = np.abs(_distance_field(spectra[0], shape, wavelength))
    d_rod = np.hypot(
        _distance_field(spectra[1], shape, wavelength),
        _distance_field(spectra[2], shape, wavelength),
    )
    # where a slow selector field is high, plates; elsewhere rods
    selector = _distance_field(spectra[3], shape, 2.5 * wavelength)
    cut = np.quantile(selector[::4, ::4, ::4], 1.0 - plate_fraction)
    dist = np.where(selector > cut, d_plate, d_rod)
    # one-voxel linear ramp across the surface: partial-volume effect
    return np.clip(thickness / 2.0 - dist + 0.5, 0.0, 1.0)


def trabecular_occupancy(
    shape: int | Sequence[int],
    seed: int = 0,
    *,
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    plate_fraction: float = 0.5,
    region: tuple[slice, ...] | None = None,
) -> np.ndarray:
    """Synthetic trabecular bone as a partial-volume occupancy map in [0, 1].

    Parameters
    ----------
    shape : int or 3 ints
        Volume shape.
    seed : int
        Seed of the random fields: the same seed gives the same bytes.
    bv_tv : float
        Target bone volume fraction (0.05–0.5), reached to a few percent.
    thickness : float
        Plate thickness and rod diameter in voxels (1.5–8).
    plate_fraction : float
        Share of the volume where the structure is plate-like (rest rod-like).
    region : tuple of slices, optional
        Where BV/TV is measured while tuning (default: everywhere).

    Returns
    -------
    numpy.ndarray
        float32 occupancy; ``occupancy > 0.5`` is the binary bone phase.
    """
    shp = per_axis(shape)
    if len(shp) != 3 or min(shp) < 8:
        raise InputError(f"phantom shape must be 3 sizes of at least 8, got {shape!r}")
    if not 0.05 <= bv_tv <= 0.5:
        raise InputError(f"bv_tv must lie in [0.05, 0.5], got {bv_tv}")
    if not 1.5 <= thickness <= 8:
        raise InputError(f"thickness must lie in [1.5, 8] voxels, got {thickness}")
    if not 0.0 <= plate_fraction <= 1.0:
        raise InputError(f"plate_fraction must lie in [0, 1], got {plate_fraction}")
    rng = np.random.default_rng(seed)
    spectra = _random_fields(shp, 4, rng)
    # BV/TV falls roughly like 1/wavelength: a few secant steps in log-log space
    wavelength = 6.0 * thickness
    log_w, log_bv = [], []
    for _ in range(6):
        occ = _occupancy(spectra, shp, wavelength, thickness, plate_fraction)
        bv = float(np.mean(occ[region or ...] > 0.5))
        log_w.append(np.log(wavelength))
        log_bv.append(np.log(max(bv, 1e-4)))
        if abs(bv - bv_tv) <= 0.01 * bv_tv:
            break
        slope = -1.0
        if len(log_w) >= 2 and log_w[-1] != log_w[-2]:
            slope = min(-0.3, (log_bv[-1] - log_bv[-2]) / (log_w[-1] - log_w[-2]))
        wavelength = float(np.exp(log_w[-1] + (np.log(bv_tv) - log_bv[-1]) / slope))
        wavelength = float(np.clip(wavelength, 2.0 * thickness, 4.0 * max(shp)))
    return occ.astype(np.float32)


def micro_ct(
    occupancy: np.ndarray,
    *,
    bone: float = 1.0,
    marrow: float = 0.15,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Micro-CT grey levels from an occupancy map (linear partial volume + noise)."""
    f = marrow + (bone - marrow) * occupancy
    if noise > 0:
        f = f + np.random.default_rng(seed).normal(0.0, noise, f.shape)
    return f.astype(np.float32)


def simulate_acquisition(
    f_big: np.ndarray,
    kernel: np.ndarray,
    *,
    offset: float = 0.0,
    noise: float = 0.0,
    p: int | Sequence[int] = 2,
    margin: int | Sequence[int] = 0,
    seed: int = 0,
    shading: float = 0.0,
    blur: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``g = U(h * (f + c)) + n`` on a large volume and crop the margin.

    The noise-free scan is :meth:`boneframe.operators.ForwardModel.predict` of
    the whole ``f_big`` (zeros beyond it), computed in float64.

    Parameters
    ----------
    f_big : ndarray
        High-resolution volume including ``margin`` voxels on every side.
    kernel : ndarray
        Odd-support blurring kernel (any gain).
    offset : float
        Grey-level shift ``c``.
    noise : float
        Standard deviation of the additive Gaussian noise ``n``.
    p : int or 3 ints
        Decimation factor per axis.
    margin : int or 3 ints
        Width cropped from each side; a multiple of ``p`` and at least the kernel
        radius, so that the crop sees no boundary effect.
    seed : int
        Seed of the noise.
    shading : float
        A scanner's slowly varying gain across the field of view: the noise-free
        scan is multiplied by :func:`shading_field` (from ``1 - shading`` to
        ``1 + shading`` along the last axis) before the noise is added.
    blur : LinearOperator, optional
        A blur of ``f_big``'s shape replacing ``h *`` (e.g. a spatially variant
        :class:`~boneframe.operators.variant.VariantBlur`); ``kernel`` then only
        states its largest support (for the margin).

    Returns
    -------
    (f, g) : tuple of ndarray
        The cropped high-resolution volume and the low-resolution scan, with
        ``f``'s voxel ``p*i`` on ``g``'s voxel ``i``.
    """
    h = check_kernel(kernel)
    pp = as_factor(p)
    m = as_factor(margin) if not np.isscalar(margin) or margin else (0, 0, 0)
    for mi, qi, ki in zip(m, pp, h.shape, strict=True):
        if mi % qi:
            raise InputError(f"margin {mi} must be a multiple of the decimation factor {qi}")
        if mi < ki // 2:
            raise InputError(f"margin {mi} is smaller than the kernel radius {ki // 2}")
    crop = tuple(slice(mi, n - mi) for mi, n in zip(m, f_big.shape, strict=True))
    f = f_big[crop]
    if any(n % q for n, q in zip(f.shape, pp, strict=True)):
        raise InputError(f"cropped shape {f.shape} must be a multiple of p={pp}")
    if blur is None:
        g_big = ForwardModel(h, pp, f_big.shape).predict(f_big.astype(np.float64), offset)
    else:
        g_big = decimate(blur.matvec(f_big.astype(np.float64) + offset), pp)
    lr_crop = tuple(
        slice(mi // qi, mi // qi + n // qi) for mi, qi, n in zip(m, pp, f.shape, strict=True)
    )
    g = g_big[lr_crop]
    if shading:
        g = g * shading_field(g.shape, shading)
    if noise > 0:
        g = g + np.random.default_rng(seed + 1).normal(0.0, noise, g.shape)
    return np.ascontiguousarray(f), np.ascontiguousarray(g.astype(np.float32))


def shading_field(shape: Sequence[int], amplitude: float) -> np.ndarray:
    """A multiplicative gain rising linearly from ``1 - amplitude`` to ``1 + amplitude``
    across the last axis (broadcastable to ``shape``).

    Raises
    ------
    InputError
        Unless ``0 <= amplitude < 1``.
    """
    if not 0.0 <= amplitude < 1.0:
        raise InputError(f"shading must lie in [0, 1), got {amplitude}")
    n = int(shape[-1])
    ramp = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return (1.0 + amplitude * ramp).reshape((1,) * (len(shape) - 1) + (n,))


@dataclass
class PhantomPair:
    """A synthetic registered pair and the truth that produced it."""

    hr: np.ndarray
    lr: np.ndarray
    kernel: np.ndarray
    offset: float
    noise: float
    p: tuple[int, int, int]
    voxel_size_hr: tuple[float, float, float]
    params: dict[str, Any] = field(default_factory=dict)
    variation: Any = None

    def regional_truth(self, regions: Any) -> Any:
        """The true kernels of a grid of regions over ``lr``, or at the regions of an
        estimate (a :class:`~boneframe.kernel.regional.RegionalKernel`): the blur's
        own (:meth:`~boneframe.phantom_variation.KernelVariation.regional`), or the
        one kernel in every region when the blur does not vary."""
        from boneframe.phantom_variation import KernelVariation

        variation = self.variation or KernelVariation(self.kernel, 1.0, 1.0)
        return variation.regional(self.lr.shape, regions, self.voxel_size_hr, self.p, self.offset)

    @property
    def voxel_size_lr(self) -> tuple[float, float, float]:
        """Low-resolution voxel size (µm)."""
        return tuple(v * q for v, q in zip(self.voxel_size_hr, self.p, strict=True))  # type: ignore[return-value]

    def volumes(self) -> tuple[Volume, Volume]:
        """``(hr, lr)`` as volumes with voxel sizes, voxel ``p*i`` of hr on voxel ``i`` of lr."""
        return (
            Volume(self.hr, voxel_size=self.voxel_size_hr),
            Volume(self.lr, voxel_size=self.voxel_size_lr),
        )


def simulate_pair(
    size: int | Sequence[int] = 64,
    seed: int = 0,
    *,
    kernel: np.ndarray | None = None,
    offset: float = 0.0,
    noise: float = 0.0,
    p: int | Sequence[int] = 2,
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    plate_fraction: float = 0.5,
    bone: float = 1.0,
    marrow: float = 0.15,
    hr_noise: float = 0.0,
    voxel_size_hr: float | Sequence[float] = 41.0,
    shading: float = 0.0,
    kernel_variation: float = 1.0,
) -> PhantomPair:
    """A synthetic micro-CT / HR-pQCT pair with a known kernel.

    Parameters
    ----------
    size : int or 3 ints
        High-resolution shape (a multiple of ``p`` per axis).
    seed : int
        Seed of the structure and the noise; the same seed gives the same bytes.
    kernel : ndarray, optional
        Blurring kernel; default ``gaussian_kernel((1.6, 1.3, 1.1), 9,
        shift=(0.3, -0.2, 0.1))``, an anisotropic, off-centre Gaussian.
    offset : float
        Grey-level shift ``c``.
    noise : float
        Noise standard deviation in the low-resolution scan (grey units of ``f``,
        whose bone and marrow levels are ``bone`` and ``marrow``).
    p : int or 3 ints
        Decimation factor.
    bv_tv, thickness, plate_fraction : float
        Structure parameters (see :func:`trabecular_occupancy`).
    bone, marrow, hr_noise : float
        Micro-CT grey levels and noise.
    voxel_size_hr : float or 3 floats
        High-resolution voxel size in µm (default 41, the paper's).
    shading : float
        Slowly varying gain of the low-resolution scan across its last axis,
        ``1 ± shading`` (see :func:`simulate_acquisition`); 0: none.
    kernel_variation : float
        ``S >= 1``: the blur widens across the last axis from ``kernel`` on one
        side to ``S`` times wider on the other
        (:class:`~boneframe.phantom_variation.KernelVariation`; the pair's
        :meth:`PhantomPair.regional_truth` gives the true regional kernels); 1:
        one kernel everywhere.

    Returns
    -------
    PhantomPair
    """
    pp = as_factor(p)
    shp = per_axis(size)
    if len(shp) != 3 or any(n % q for n, q in zip(shp, pp, strict=True)):
        raise InputError(f"phantom size {size!r} must be a multiple of p={pp} on every axis")
    h = gaussian_kernel(DEFAULT_SIGMA, 9, DEFAULT_SHIFT) if kernel is None else check_kernel(kernel)
    vs = as_triple(voxel_size_hr, "voxel size")
    variation = None
    reach = h.shape
    if kernel_variation != 1.0:
        from boneframe.phantom_variation import KernelVariation

        variation = KernelVariation(h, kernel_variation, (shp[2] - 1) * vs[2])
        reach = variation.support
    margin = tuple(q * (-(-(k // 2 + 2) // q)) for k, q in zip(reach, pp, strict=True))
    big = tuple(n + 2 * m for n, m in zip(shp, margin, strict=True))
    crop = tuple(slice(m, m + n) for m, n in zip(margin, shp, strict=True))
    occ = trabecular_occupancy(
        big, seed, bv_tv=bv_tv, thickness=thickness, plate_fraction=plate_fraction, region=crop
    )
    f_big = micro_ct(occ, bone=bone, marrow=marrow, noise=hr_noise, seed=seed)
    blur = None if variation is None else variation.blur(big, vs, [-m for m in margin])
    f, g = simulate_acquisition(
        f_big,
        h if variation is None else np.ones(reach),  # the support the margin must cover
        offset=offset,
        noise=noise,
        p=pp,
        margin=margin,
        seed=seed,
        shading=shading,
        blur=blur,
    )
    params = {
        "size": list(shp),
        "seed": seed,
        "offset": offset,
        "noise": noise,
        "p": list(pp),
        "bv_tv_target": bv_tv,
        "bv_tv": float(np.mean(f > (bone + marrow) / 2)),
        "thickness": thickness,
        "plate_fraction": plate_fraction,
        "bone": bone,
        "marrow": marrow,
        "hr_noise": hr_noise,
        "kernel_shape": list(h.shape),
        "kernel_gain": float(h.sum()),
        "margin": list(margin),
        "shading": shading,
        "kernel_variation": float(kernel_variation),
    }
    params["voxel_size_hr_um"] = list(vs)
    return PhantomPair(f, g, h, float(offset), float(noise), pp, vs, params, variation)
