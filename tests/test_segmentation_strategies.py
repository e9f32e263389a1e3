"""Segmentation as a strategy kind: Otsu (the paper's) and Gaussian + fixed density threshold."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from pydantic import ValidationError

from boneframe.errors import InputError
from boneframe.metrics import measure, otsu_threshold
from boneframe.registry import get_registry
from boneframe.segmentation import PUBLISHED_DEFAULTS, GaussThreshold, OtsuSegmentation, smooth
from boneframe.volume import Volume

SLOPE, INTERCEPT = 0.5, -100.0


@pytest.fixture
def calibrated(rng) -> Volume:
    """A calibrated scan: density 0..1000 mg HA/cm³ as a smooth random field, stored scaled."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal((24, 26, 28)), 2.0)
    density = 500.0 + 2000.0 * field
    stored = ((density - INTERCEPT) / SLOPE).astype(np.float32)
    meta = {"calibration_slope": SLOPE, "calibration_intercept": INTERCEPT}
    return Volume(stored, voxel_size=82.0, metadata=meta)


def gaussian_by_hand(x: np.ndarray, sigma: float, support: int) -> np.ndarray:
    """Separable truncated Gaussian, edges repeated: the independent reference."""
    offsets = np.arange(-support, support + 1)
    w = np.exp(-(offsets**2) / (2 * sigma**2))
    w /= w.sum()
    out = x.astype(np.float64)
    for axis in range(3):
        padded = np.pad(out, [(support, support) if a == axis else (0, 0) for a in range(3)],
                        mode="edge")  # fmt: skip
        n = out.shape[axis]
        out = sum(wk * np.take(padded, np.arange(k, k + n), axis=axis) for k, wk in enumerate(w))
    return out


def test_both_are_registered_segmentations():
    registry = get_registry()
    assert {"otsu", "gauss-threshold"} <= set(registry.names("segmentation"))
    assert registry.get("segmentation", "otsu") is OtsuSegmentation
    assert registry.entry("segmentation", "gauss-threshold").cls is GaussThreshold
    assert PUBLISHED_DEFAULTS["xtremect2-trabecular"] == {"sigma": 0.8, "support": 1,
                                                          "threshold": 320.0}  # fmt: skip
    assert PUBLISHED_DEFAULTS["xtremect2-cortical"]["threshold"] == 450.0
    assert GaussThreshold().params.model_dump() == PUBLISHED_DEFAULTS["xtremect2-trabecular"]
    for bad in ({"sigma": 0.0}, {"support": 0}, {"threshold": float("nan")}, {"radius": 1}):
        with pytest.raises(ValidationError):
            GaussThreshold(bad)


def test_otsu_is_the_metrics_otsu_in_memory_and_chunked(calibrated, rng):
    data = calibrated.data
    bone = OtsuSegmentation().segment(calibrated)
    assert np.array_equal(bone, data > otsu_threshold(data))
    lazy = calibrated.with_data(da.from_array(data, chunks=(8, 9, 10)))
    chunked = OtsuSegmentation().segment(lazy)
    assert isinstance(chunked, da.Array) and np.array_equal(chunked.compute(), bone)
    mask = rng.random(data.shape) > 0.3
    assert np.array_equal(OtsuSegmentation().segment(calibrated, mask), bone & mask)
    default = measure(calibrated, structure=False)
    by_name = measure(calibrated, structure=False, segmentation="otsu")
    assert by_name["threshold"] is None and by_name["segmentation"] == {"name": "otsu"}
    for key in ("bv_tv", "euler", "betti0", "conn_d", "bmd"):
        assert by_name[key] == default[key], key


def test_gauss_threshold_smooths_then_thresholds_densities(calibrated):
    density = calibrated.data.astype(np.float64) * SLOPE + INTERCEPT
    expected = gaussian_by_hand(density, 0.8, 1)
    got = smooth(density.astype(np.float32), 0.8, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    seg = GaussThreshold(threshold=450.0)
    bone = seg.segment(calibrated)
    clear = np.abs(expected - 450.0) > 0.05  # away from rounding at the threshold
    assert bone.dtype == bool and np.array_equal(bone[clear], (expected > 450.0)[clear])
    assert 0.2 < bone.mean() < 0.8


@pytest.mark.parametrize("chunks", [8, (5, 13, 28), (3, 26, 14)])
def test_gauss_threshold_chunked_equals_in_memory(calibrated, chunks):
    seg = GaussThreshold(sigma=1.2, support=2, threshold=400.0)
    memory = seg.segment(calibrated)
    lazy = calibrated.with_data(da.from_array(calibrated.data, chunks=chunks))
    chunked = seg.segment(lazy)
    assert isinstance(chunked, da.Array) and np.array_equal(chunked.compute(), memory)
    density = calibrated.data * np.float32(SLOPE) + np.float32(INTERCEPT)
    assert np.array_equal(smooth(da.from_array(density, chunks=chunks), 1.2, 2).compute(),
                          smooth(density, 1.2, 2))  # fmt: skip


def test_gauss_threshold_needs_a_calibrated_volume(calibrated):
    plain = Volume(calibrated.data, voxel_size=82.0)
    with pytest.raises(InputError, match="calibrated volume.*'otsu'"):
        GaussThreshold().segment(plain)
    with pytest.raises(InputError, match="calibrated volume"):
        measure(calibrated.data, segmentation="gauss-threshold", names=["bv_tv"])


def test_measure_with_the_gauss_threshold_segmentation(calibrated):
    params = {"sigma": 0.8, "support": 1, "threshold": 450.0}
    bone = GaussThreshold(params).segment(calibrated)
    m = measure(calibrated, names=["bv_tv", "bmd"], segmentation="gauss-threshold",
                segmentation_params=params)  # fmt: skip
    assert m["threshold"] is None
    assert m["segmentation"] == {"name": "gauss-threshold", **params}
    assert m["bv_tv"] == np.count_nonzero(bone) / bone.size
    lazy = calibrated.with_data(da.from_array(calibrated.data, chunks=7))
    chunked = measure(lazy, names=["bv_tv", "bmd"], segmentation=GaussThreshold(params))
    assert chunked["bv_tv"] == m["bv_tv"] and chunked["bmd"] == pytest.approx(m["bmd"], 1e-12)
    with pytest.raises(InputError, match="threshold or a segmentation"):
        measure(calibrated, threshold=1.0, segmentation="otsu")
    with pytest.raises(InputError, match="without a segmentation"):
        measure(calibrated, segmentation_params={"sigma": 1.0})
