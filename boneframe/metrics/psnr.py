r"""Peak signal-to-noise ratio of an estimate against its reference (paper §3.1)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Metric, MetricInput
from boneframe.metrics._arrays import as_array
from boneframe.metrics.segmentation import image_of


def psnr(estimate: Any, reference: Any) -> float:
    r"""PSNR in dB of ``estimate`` :math:`\hat f` against ``reference`` :math:`f`.

    Notes
    -----
    .. math:: \mathrm{PSNR} = -10 \log_{10}
              \frac{\operatorname{mean}\big((f - \hat f)^2\big)}{(\max f - \min f)^2}

    The peak is the reference's dynamic range, as in the paper (not the data
    type's maximum). Identical volumes give ``inf``.

    Raises
    ------
    InputError
        If the shapes differ, the reference is constant (no dynamic range) or
        either volume holds NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> f = np.zeros((2, 2, 2)); f[0] = 1.0
    >>> round(psnr(f + 0.1, f), 6)  # mse 0.01, range 1
    20.0
    """
    f_hat = as_array(estimate, "estimate")
    f = as_array(reference, "reference")
    if f.shape != f_hat.shape:
        raise InputError(f"PSNR needs volumes of one shape, got {f_hat.shape} and {f.shape}")
    peak = float(f.max()) - float(f.min())
    diff = np.subtract(f, f_hat, dtype=np.float64)
    return psnr_from_error(float(np.vdot(diff, diff) / diff.size), peak)


def psnr_from_error(mse: float, peak: float) -> float:
    """PSNR in dB from the mean squared error and the reference's range ``max f - min f``.

    Raises
    ------
    InputError
        If either is not finite, or the range is zero (a constant reference).
    """
    if not (np.isfinite(peak) and np.isfinite(mse)):
        raise InputError("PSNR: the volumes contain NaN or infinite values")
    if peak == 0:
        raise InputError("PSNR is undefined for a constant reference (max f = min f)")
    if mse == 0:
        return float("inf")
    return float(-10.0 * np.log10(mse / peak**2))


class PSNR(Metric):
    r"""PSNR (dB) of the volume against the reference, peak = the reference's range."""

    name: ClassVar[str] = "psnr"
    description: ClassVar[str] = "peak signal-to-noise ratio vs the reference (dB)"
    needs_reference: ClassVar[bool] = True
    unit: ClassVar[str] = "dB"

    def __call__(self, data: MetricInput) -> float:
        return psnr_of(data)


def psnr_of(data: MetricInput) -> float:
    """PSNR of ``data.volume`` against ``data.reference`` (cached in ``data``)."""
    if "psnr" not in data.cache:
        data.cache["psnr"] = psnr(image_of(data, "volume"), image_of(data, "reference"))
    return data.cache["psnr"]
