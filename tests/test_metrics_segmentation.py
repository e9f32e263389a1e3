"""Histograms, Otsu's threshold, DICE and PSNR against direct formulas and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_otsu

from boneframe.errors import InputError
from boneframe.interfaces import MetricInput
from boneframe.metrics import (
    OTSU_BINS,
    PSNR,
    Dice,
    Otsu,
    dice,
    histogram,
    intensity_range,
    measure,
    otsu_from_histogram,
    otsu_threshold,
    psnr,
)


def grey_bone(rng: np.random.Generator, shape=(40, 36, 32)) -> np.ndarray:
    """Smoothed noise split into two grey levels plus noise: a bimodal CT-like volume."""
    structure = ndimage.gaussian_filter(rng.standard_normal(shape), 2) > 0
    return np.where(structure, 1200.0, 300.0) + 80.0 * rng.standard_normal(shape)


# -- histograms and Otsu -----------------------------------------------------------------
def test_histogram_matches_numpy(rng: np.random.Generator) -> None:
    volume = grey_bone(rng)
    lo, hi = intensity_range(volume)
    expected, _ = np.histogram(volume, bins=OTSU_BINS, range=(lo, hi))
    np.testing.assert_array_equal(histogram(volume), expected)
    assert histogram(volume).sum() == volume.size  # max lands in the last bin


def test_block_histograms_sum_to_the_volume(rng: np.random.Generator) -> None:
    volume = grey_bone(rng)
    value_range = intensity_range(volume)
    blocks = [volume[a:b, c:d] for a, b in ((0, 13), (13, 40)) for c, d in ((0, 7), (7, 36))]
    summed = sum(histogram(block, OTSU_BINS, value_range) for block in blocks)
    np.testing.assert_array_equal(summed, histogram(volume))
    assert otsu_from_histogram(summed, value_range) == otsu_threshold(volume)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_otsu_matches_skimage_on_floats(rng: np.random.Generator, dtype) -> None:
    # Same binning as scikit-image for floating point: 256 bins over [min, max].
    volume = grey_bone(rng).astype(dtype)
    lo, hi = intensity_range(volume)
    ours, theirs = otsu_threshold(volume), float(threshold_otsu(volume))
    assert abs(ours - theirs) <= (hi - lo) / OTSU_BINS
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert 300 < ours < 1200


def test_otsu_on_integers_within_one_bin(rng: np.random.Generator) -> None:
    # scikit-image bins integers one value per bin; ours keeps 256 bins.
    volume = np.clip(grey_bone(rng), 0, None).astype(np.uint16)
    lo, hi = intensity_range(volume)
    assert abs(otsu_threshold(volume) - float(threshold_otsu(volume))) <= (hi - lo) / OTSU_BINS


def test_otsu_of_a_binary_mask_and_a_constant() -> None:
    mask = np.zeros((4, 4, 4))
    mask[:, :2] = 1.0
    t = otsu_threshold(mask)
    assert 0.0 < t < 1.0
    np.testing.assert_array_equal(mask > t, mask == 1.0)
    constant = np.full((3, 3, 3), 7.0)  # undefined for Otsu: nonzero is bone, as in a mask
    assert otsu_threshold(constant) == 0.0
    assert (constant > otsu_threshold(constant)).all()
    for value in (0.0, -3.0):
        constant = np.full((3, 3, 3), value)
        assert otsu_threshold(constant) == value
        assert not (constant > otsu_threshold(constant)).any()


def test_nan_is_refused() -> None:
    volume = np.zeros((3, 3, 3))
    volume[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        otsu_threshold(volume)


# -- DICE ---------------------------------------------------------------------------
def test_dice_matches_formula(rng: np.random.Generator) -> None:
    a = rng.random((10, 11, 12)) < 0.4
    b = rng.random((10, 11, 12)) < 0.6
    expected = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    assert dice(a, b) == pytest.approx(expected)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_dice_metric_uses_each_volumes_otsu(rng: np.random.Generator) -> None:
    reference = grey_bone(rng)
    estimate = 0.5 * ndimage.gaussian_filter(reference, 1) + 40.0  # other grey scale
    m = measure(estimate, reference, names=["dice"])
    a = estimate > threshold_otsu(estimate)
    b = reference > threshold_otsu(reference)
    expected = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    assert m["dice"] == pytest.approx(expected)
    assert m["threshold"] == pytest.approx(float(threshold_otsu(estimate)))
    assert m["reference_threshold"] == pytest.approx(float(threshold_otsu(reference)))
    # Given thresholds replace Otsu's (the volume's is still reported as otsu).
    m = measure(estimate, reference, threshold=400.0, reference_threshold=900.0,
                names=["dice", Otsu()])  # fmt: skip
    a, b = estimate > 400.0, reference > 900.0
    assert m["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert m["otsu"] == pytest.approx(float(threshold_otsu(estimate)))
    given = MetricInput(estimate, reference, threshold=400.0, reference_threshold=900.0)
    assert Dice()(given) == m["dice"]


def test_dice_shapes_must_match() -> None:
    with pytest.raises(InputError, match="shape"):
        dice(np.ones((2, 2, 2)), np.ones((2, 2, 3)))


# -- PSNR ---------------------------------------------------------------------------
def test_psnr_matches_formula(rng: np.random.Generator) -> None:
    f = grey_bone(rng)
    f_hat = f + 25.0 * rng.standard_normal(f.shape)
    mse = np.mean((f - f_hat) ** 2)
    expected = -10 * np.log10(mse / (f.max() - f.min()) ** 2)
    assert psnr(f_hat, f) == pytest.approx(expected, rel=1e-12)
    assert PSNR()(MetricInput(f_hat, f)) == pytest.approx(expected, rel=1e-12)
    # The peak is the *reference's* range: swapping the arguments changes it.
    assert psnr(f, f_hat) != pytest.approx(expected, rel=1e-9)


def test_psnr_hand_case_and_limits() -> None:
    f = np.zeros((2, 2, 2))
    f[0] = 2.0  # range 2
    assert psnr(f + 0.2, f) == pytest.approx(-10 * np.log10(0.04 / 4))  # 20 dB
    assert psnr(f, f) == float("inf")
    with pytest.raises(InputError, match="constant"):
        psnr(f, np.ones((2, 2, 2)))
    with pytest.raises(InputError, match="shape"):
        psnr(f, np.ones((2, 2, 3)))
