r"""Peak signal-to-noise ratio of an estimate against its reference (paper §3.1)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Metric, MetricBlock, MetricContext
from boneframe.metrics._arrays import as_array, sum_of_squares

#: ``(sum of squared differences, voxels, min f, max f)``: PSNR's partial sums.
ErrorSums = tuple[float, int, float, float]


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
    return psnr_from_sums(error_sums(f_hat, f))


def error_sums(estimate: np.ndarray, reference: np.ndarray, inside: Any = None) -> ErrorSums:
    """PSNR's partial sums over the voxels (``inside`` a mask, if given); they add over blocks."""
    if inside is not None:
        estimate, reference = estimate[inside], reference[inside]
    if reference.size == 0:
        return 0.0, 0, float("inf"), float("-inf")
    diff = np.subtract(reference, estimate, dtype=np.float64)
    return sum_of_squares(diff), diff.size, float(reference.min()), float(reference.max())


def combine_error_sums(x: ErrorSums, y: ErrorSums) -> ErrorSums:
    """The :func:`error_sums` of two blocks together."""
    return x[0] + y[0], x[1] + y[1], min(x[2], y[2]), max(x[3], y[3])


def psnr_from_sums(sums: ErrorSums) -> float:
    """PSNR in dB from :func:`error_sums` (of the whole volume)."""
    sse, n, lo, hi = sums
    if n == 0:
        raise InputError("PSNR has no voxels to compare: the mask is empty")
    return psnr_from_error(sse / n, hi - lo)


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
    r"""PSNR (dB) of the volume against the reference, peak = the reference's range.

    With a mask, the mean squared error and the reference's range are taken
    over the voxels inside it.
    """

    name: ClassVar[str] = "psnr"
    description: ClassVar[str] = "peak signal-to-noise ratio vs the reference (dB)"
    needs_reference: ClassVar[bool] = True
    uses_mask: ClassVar[bool] = True
    unit: ClassVar[str] = "dB"

    def block(self, b: MetricBlock) -> ErrorSums:
        assert b.reference is not None  # needs_reference: measure gives it
        return error_sums(b.volume, b.reference, b.mask)

    def combine(self, x: ErrorSums, y: ErrorSums) -> ErrorSums:
        return combine_error_sums(x, y)

    def finish(self, total: ErrorSums, context: MetricContext) -> float:
        return psnr_from_sums(total)
