r"""Binarisation: Otsu's threshold from a (block-summable) histogram, and DICE.

Otsu's threshold is computed from a histogram of ``OTSU_BINS`` (256) equal bins
over the volume's ``[min, max]``; the histograms of blocks of a volume, taken
over the same range, add up to the volume's, so a chunked volume needs one pass
for the range and one for the histograms. The threshold is the centre of the
last bin of the lower class. For floating-point data scikit-image's
``skimage.filters.threshold_otsu(volume)`` bins the same way and gives the same
threshold (up to float32 rounding, or a value lying within rounding error of a
bin edge); for integer data it uses one bin per integer value instead, and the
two agree to within one bin width, ``(max - min) / 256``.

Bone is ``volume > threshold``.

References
----------
.. [1] Otsu N. (1979). A threshold selection method from gray-level histograms.
   IEEE Trans. Syst. Man Cybern. 9, 62–66. https://doi.org/10.1109/TSMC.1979.4310076
.. [2] Dice L. R. (1945). Measures of the amount of ecologic association between
   species. Ecology 26, 297–302. https://doi.org/10.2307/1932409
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import Metric, MetricBlock, MetricContext
from boneframe.metrics._arrays import as_array, as_mask

#: Number of equal histogram bins over ``[min, max]`` behind Otsu's threshold.
OTSU_BINS = 256

_SLAB_VOXELS = 1 << 17  # histogram work size: its temporaries stay in cache


def intensity_range(volume: Any) -> tuple[float, float]:
    """``(min, max)`` of a volume: the histogram range Otsu's threshold uses."""
    arr = as_array(volume)
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError("the volume contains NaN or infinite values")
    return lo, hi


def histogram(
    volume: Any, bins: int = OTSU_BINS, range: tuple[float, float] | None = None
) -> np.ndarray:
    """Counts in ``bins`` equal bins over ``range`` (default: the volume's ``[min, max]``).

    Voxel value ``x`` falls in bin ``floor((x - low) * bins / (high - low))``,
    with ``x = high`` in the last bin (as :func:`numpy.histogram`); values outside
    ``range`` are counted in the end bins, since ``range`` is meant to be the
    whole volume's ``[min, max]``. The rule is applied voxel by voxel, so the
    histograms of the blocks of a volume, taken over the volume's range, sum to
    the volume's histogram.

    Returns
    -------
    numpy.ndarray of int64, shape ``(bins,)``

    Notes
    -----
    Counted in slabs of about 2**17 voxels: ``numpy.histogram``'s exact edge
    tests cost four times as much, and the two differ only for values within
    rounding error of a bin edge.
    """
    arr = as_array(volume)
    lo, hi = intensity_range(arr) if range is None else (float(range[0]), float(range[1]))
    if not hi >= lo:
        raise InputError(f"histogram range must be (low, high) with low <= high, got {range}")
    if bins < 1:
        raise InputError(f"a histogram needs at least one bin, got {bins}")
    counts = np.zeros(bins, dtype=np.int64)
    if hi == lo:  # a constant volume
        counts[0] = arr.size
        return counts
    scale = bins / (hi - lo)
    step = max(1, _SLAB_VOXELS // (arr[0].size or 1))
    for start in builtins.range(0, arr.shape[0], step):
        t = np.subtract(arr[start : start + step], lo, dtype=np.float64)
        t *= scale
        idx = t.astype(np.intp).ravel()
        np.clip(idx, 0, bins - 1, out=idx)
        counts += np.bincount(idx, minlength=bins)
    return counts


def bin_centers(bins: int, range: tuple[float, float]) -> np.ndarray:
    """Centres of ``bins`` equal bins over ``range``."""
    edges = np.linspace(float(range[0]), float(range[1]), bins + 1)
    return (edges[:-1] + edges[1:]) / 2


def otsu_from_histogram(counts: np.ndarray, range: tuple[float, float]) -> float:
    r"""Otsu's threshold from histogram counts of equal bins over ``range``.

    Notes
    -----
    The threshold is the centre :math:`t_k` of the bin :math:`k` that maximises
    the between-class variance :math:`w_0(k) w_1(k) (\mu_0(k) - \mu_1(k))^2`
    when the lower class is bins :math:`0..k` [1]_ (computed by
    ``skimage.filters.threshold_otsu(hist=...)``). Otsu's threshold of a
    constant volume (a single non-empty bin) is undefined: there, as in a binary
    mask, a nonzero value is bone, so the threshold is 0 for a positive
    constant (all bone: BoneJ's stack-filling cube) and the constant itself
    otherwise (nothing is above it, as scikit-image's threshold of a constant).
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size < 1:
        raise InputError(f"histogram counts must be a non-empty 1-D array, got {counts.shape}")
    lo, hi = float(range[0]), float(range[1])
    if hi <= lo or np.count_nonzero(counts) <= 1:
        return 0.0 if lo > 0 else lo
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(hist=(counts, bin_centers(counts.size, (lo, hi)))))


def otsu_threshold(volume: Any, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold of a volume: :func:`otsu_from_histogram` of its histogram.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((4, 4, 4)); v[:2] = 10.0
    >>> otsu_threshold(v)  # the centre of the first of 256 bins over [0, 10]
    0.01953125
    """
    arr = as_array(volume)
    value_range = intensity_range(arr)
    return otsu_from_histogram(histogram(arr, bins, value_range), value_range)


def binarize(volume: Any, threshold: float) -> np.ndarray:
    """Bone mask ``volume > threshold``."""
    return as_array(volume) > threshold


def dice(a: Any, b: Any) -> float:
    r"""DICE coefficient :math:`2|A \cap B| / (|A| + |B|)` of two binary volumes [2]_.

    Two empty volumes agree perfectly: DICE 1.
    """
    ma, mb = as_mask(a, "first mask"), as_mask(b, "second mask")
    if ma.shape != mb.shape:
        raise InputError(f"DICE needs volumes of one shape, got {ma.shape} and {mb.shape}")
    return dice_from_counts(*overlap_counts(ma, mb))


def overlap_counts(a: np.ndarray, b: np.ndarray, inside: np.ndarray | None = None) -> tuple:
    """``(|A ∩ B|, |A|, |B|)`` of two boolean arrays, counted where ``inside`` (default all)."""
    if inside is not None:
        a, b = a & inside, b & inside
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a)), int(np.count_nonzero(b))


def dice_from_counts(both: int, a: int, b: int) -> float:
    """DICE from :func:`overlap_counts` (1 when both sets are empty)."""
    return 1.0 if a + b == 0 else 2.0 * both / (a + b)


class Otsu(Metric):
    """Otsu's threshold of the volume (256 bins over its [min, max], the whole volume)."""

    name: ClassVar[str] = "otsu"
    description: ClassVar[str] = "Otsu's threshold of the volume (256 bins over [min, max])"
    uses_mask: ClassVar[bool] = True  # the threshold binarises the whole volume, mask or not

    def finish(self, total: None, context: MetricContext) -> float:
        if context.otsu is None:
            raise InputError("Otsu's threshold was not computed")
        return context.otsu


class Dice(Metric):
    r"""DICE :math:`2|A \cap B| / (|A| + |B|)` of the binarised volume and reference.

    Each is thresholded by its own Otsu threshold unless ``threshold`` /
    ``reference_threshold`` are given; with a mask, only the voxels inside count.
    """

    name: ClassVar[str] = "dice"
    description: ClassVar[str] = "DICE overlap of the binarised volume and reference"
    needs_reference: ClassVar[bool] = True
    uses_mask: ClassVar[bool] = True

    def block(self, b: MetricBlock) -> tuple:
        if b.reference_bone is None:
            raise InputError("DICE needs the reference's threshold")
        return overlap_counts(b.bone, b.reference_bone, b.mask)

    def finish(self, total: tuple, context: MetricContext) -> float:
        return dice_from_counts(*total)
