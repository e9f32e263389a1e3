r"""Resolution figures of a blurring kernel: gain, centroid, FWHM and MTF per axis.

Each axis is summarised through the kernel's *line spread function* (LSF), its
marginal along that axis (the sum over the two other axes). The LSF is what a
sharp plane perpendicular to the axis would show, its Fourier transform is the
3D transfer function on that frequency axis (so FWHM and MTF describe the same
curve), and it does not depend on where a profile line is drawn; for a
separable kernel (e.g. a Gaussian) it is exactly the 1D kernel along the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.signal

from boneframe.errors import InputError
from boneframe.operators import check_kernel
from boneframe.volume import as_triple

#: Samples per voxel of the interpolant used to find the half-maximum crossings.
FWHM_OVERSAMPLING = 64
#: Length of the zero-padded FFT of each LSF (frequency step 1/4096 cycle/voxel).
MTF_FFT_LENGTH = 4096


def line_spread(kernel: np.ndarray, axis: int) -> np.ndarray:
    """Marginal of the kernel along ``axis`` (sum over the other axes)."""
    others = tuple(a for a in range(kernel.ndim) if a != axis)
    return np.asarray(kernel, dtype=np.float64).sum(axis=others)


def fwhm(profile: np.ndarray) -> float:
    r"""Full width at half maximum of a 1D profile, in samples.

    Notes
    -----
    The samples are interpolated band-limitedly (Fourier zero-padding of the
    profile, itself padded with zeros on both sides so that the periodic
    transform does not wrap), on a grid of 1/64 sample; the width is the
    distance between the crossings of half the interpolant's maximum nearest to
    it on either side, each located by linear interpolation on the fine grid.
    This is the continuous profile whose Fourier transform the MTF reports
    (cubic splines overestimate the FWHM of a Gaussian of :math:`\sigma = 1`
    voxel by 1–2.5 %; this by under 0.6 %). ``nan`` when the profile does not
    fall below half its maximum inside the support. For a Gaussian,
    :math:`\mathrm{FWHM} = 2\sqrt{2 \ln 2}\,\sigma \approx 2.3548\,\sigma`.
    """
    y = np.asarray(profile, dtype=np.float64)
    n = y.size
    padded = np.concatenate([np.zeros(n), y, np.zeros(n)])
    fine = scipy.signal.resample(padded, 3 * n * FWHM_OVERSAMPLING)[
        n * FWHM_OVERSAMPLING : (2 * n - 1) * FWHM_OVERSAMPLING + 1
    ]
    x = np.arange(fine.size) / FWHM_OVERSAMPLING
    peak = int(np.argmax(fine))
    half = 0.5 * fine[peak]
    if half <= 0:
        return float("nan")
    below = np.nonzero(fine < half)[0]
    left, right = below[below < peak], below[below > peak]
    if left.size == 0 or right.size == 0:
        return float("nan")
    i, j = left[-1], right[0]
    xl = x[i] + (half - fine[i]) / (fine[i + 1] - fine[i]) * (x[i + 1] - x[i])
    xr = x[j - 1] + (half - fine[j - 1]) / (fine[j] - fine[j - 1]) * (x[j] - x[j - 1])
    return float(xr - xl)


def mtf(profile: np.ndarray, n_fft: int = MTF_FFT_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Modulation transfer function of a 1D profile.

    Returns
    -------
    freqs : ndarray
        Frequencies in cycles per voxel, 0 to 0.5 (Nyquist).
    values : ndarray
        ``|FFT(profile)| / |sum(profile)|`` (1 at zero frequency).
    """
    y = np.asarray(profile, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(y, n=max(n_fft, y.size)))
    return np.fft.rfftfreq(max(n_fft, y.size)), spectrum / spectrum[0]


def mtf_crossing(freqs: np.ndarray, values: np.ndarray, level: float) -> float | None:
    """First frequency where the MTF falls to ``level`` (linear interpolation);
    ``None`` when it stays above ``level`` up to Nyquist."""
    below = np.nonzero(values <= level)[0]
    if below.size == 0:
        return None
    j = int(below[0])
    if j == 0:
        return 0.0
    f0, f1, v0, v1 = freqs[j - 1], freqs[j], values[j - 1], values[j]
    return float(f0 + (v0 - level) / (v0 - v1) * (f1 - f0))


def summarize_kernel(kernel: np.ndarray, voxel_size: float | Sequence[float]) -> dict[str, Any]:
    r"""Gain, centroid, FWHM and MTF50/MTF10 of a kernel, as a JSON-ready dict.

    Parameters
    ----------
    kernel : ndarray
        3D kernel with odd support (centre at ``K // 2``), on the high-resolution grid.
    voxel_size : float or 3 floats
        High-resolution voxel size in µm per axis.

    Returns
    -------
    dict
        ``gain`` (:math:`\sum h`); ``centroid`` with ``voxels`` and ``um`` (per
        axis, relative to the kernel centre); ``fwhm_um`` (per axis, FWHM of the
        line spread function, see :func:`fwhm`; ``None`` if undefined);
        ``mtf50_lpmm`` and ``mtf10_lpmm`` (per axis, first frequency where the
        LSF's normalised transfer function falls to 50 % / 10 %, in line pairs
        per mm; ``None`` when it stays above up to the Nyquist frequency
        :math:`1000 / (2 \Delta)` lp/mm, :math:`\Delta` the voxel size in µm).

    Notes
    -----
    .. math::

        \bar x_a = \frac{\sum_x x_a h(x)}{\sum_x h(x)} - \frac{K_a - 1}{2}, \qquad
        \mathrm{MTF}_a(\nu) = \frac{|\sum_j \ell_a(j) e^{-2\pi i \nu j}|}{|\sum_j \ell_a(j)|}

    with :math:`\ell_a` the LSF along axis :math:`a`, evaluated by a 4096-point
    zero-padded FFT; :math:`\nu` in cycles/voxel becomes lp/mm by
    :math:`1000 \nu / \Delta_a`. For a Gaussian of standard deviation
    :math:`\sigma` voxels, :math:`\mathrm{MTF}(\nu) = e^{-2\pi^2\sigma^2\nu^2}`, so
    :math:`\nu_{50} = \sqrt{\ln 2 / 2}/(\pi\sigma)` and
    :math:`\nu_{10} = \sqrt{\ln 10 / 2}/(\pi\sigma)`.

    References
    ----------
    .. [1] I. A. Cunningham, "Applied linear-systems theory", in *Handbook of
       Medical Imaging*, vol. 1, SPIE, 2000 (LSF, MTF).
    """
    h = check_kernel(np.asarray(kernel, dtype=np.float64))
    vs = as_triple(voxel_size, "voxel size")
    if min(vs) <= 0:
        raise InputError(f"voxel size must be positive, got {vs}")
    gain = float(h.sum())
    if gain == 0:
        raise InputError("the kernel sums to zero: no centroid, FWHM or MTF")
    centroid: list[float] = []
    fwhm_um: list[float | None] = []
    mtf50: list[float | None] = []
    mtf10: list[float | None] = []
    for axis in range(3):
        lsf = line_spread(h, axis)
        pos = np.arange(lsf.size) - (lsf.size - 1) / 2.0
        centroid.append(float(np.dot(pos, lsf) / gain))
        width = fwhm(lsf)
        fwhm_um.append(None if np.isnan(width) else width * vs[axis])
        freqs, values = mtf(lsf)
        to_lpmm = 1000.0 / vs[axis]
        for out, level in ((mtf50, 0.5), (mtf10, 0.1)):
            nu = mtf_crossing(freqs, values, level)
            out.append(None if nu is None else nu * to_lpmm)
    return {
        "gain": gain,
        "centroid": {
            "voxels": centroid,
            "um": [c * v for c, v in zip(centroid, vs, strict=True)],
        },
        "fwhm_um": fwhm_um,
        "mtf50_lpmm": mtf50,
        "mtf10_lpmm": mtf10,
    }
