"""The partial-volume segmentation: the threshold that keeps the bone fraction the grey
levels hold (hand cases, scale invariance, chunked and masked alike, bad parameters)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from pydantic import ValidationError

from boneframe.errors import InputError
from boneframe.metrics import measure
from boneframe.phantom import simulate_pair
from boneframe.registry import get_registry
from boneframe.segmentation import PartialVolumeSegmentation, partial_volume_threshold
from boneframe.volume import Volume


def layered() -> np.ndarray:
    """Marrow 0.1, three bone slices 1.0 and one slice half bone (0.55): 35 % bone."""
    x = np.full((10, 12, 14), 0.1)
    x[:3] = 1.0
    x[3] = 0.55
    return x


def test_by_hand():
    t = partial_volume_threshold(layered())
    assert t["marrow"] == pytest.approx(0.1, abs=1e-3) and t["bone"] == pytest.approx(1.0, abs=1e-3)
    assert t["fraction"] == pytest.approx(0.35, abs=1e-3)  # (0.3 * 1 + 0.1 * 0.55 + ...) / ...
    # 35 % of the voxels lie at or above 0.55: the threshold sits at the half-bone level
    assert 0.1 < t["threshold"] <= 0.5505
    # given levels are used as they are
    given = partial_volume_threshold(layered(), marrow=0.1, bone=1.9)
    assert given["fraction"] == pytest.approx((0.3 + 0.055 + 0.06 - 0.1) / 1.8)


def test_keeps_the_fraction_otsu_overcounts():
    # a blurred two-phase volume: Otsu counts the blur as bone, the fraction does not
    from scipy import ndimage

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.standard_normal((40, 40, 40)), 3)
    bone = field > 0.7 * field.std()  # about a quarter, structures wider than the blur
    blurred = ndimage.gaussian_filter(0.1 + 0.9 * bone.astype(float), 1.0)
    seg = PartialVolumeSegmentation().segment(Volume(blurred))
    assert abs(seg.mean() - bone.mean()) < 0.02 * bone.mean() + 0.005
    assert abs(seg.mean() - bone.mean()) < abs(
        measure(blurred, names=["bv_tv"])["bv_tv"] - bone.mean()
    )


def test_scale_and_offset_free_chunked_and_masked():
    pair = simulate_pair(32, 3, noise=0.01)
    x = pair.hr.astype(np.float64) + 0.2 * np.random.default_rng(1).random(pair.hr.shape)
    seg = PartialVolumeSegmentation()
    a = seg.segment(Volume(x))
    np.testing.assert_array_equal(seg.segment(Volume(x * 1000.0 + 37.0)), a)
    lazy = seg.segment(Volume(da.from_array(x, chunks=(16, 32, 11))))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), a)
    mask = np.zeros(x.shape, bool)
    mask[4:28, 2:30, 5:25] = True
    inside = seg.segment(Volume(x), mask)
    assert not inside[~mask].any()
    alone = seg.segment(Volume(x[4:28, 2:30, 5:25]))
    np.testing.assert_array_equal(inside[4:28, 2:30, 5:25], alone)  # stats from the mask only
    lazy_masked = seg.segment(Volume(da.from_array(x, chunks=16)), da.from_array(mask, chunks=8))
    np.testing.assert_array_equal(np.asarray(lazy_masked), inside)


def test_registered_and_refusals():
    assert get_registry().get("segmentation", "partial-volume") is PartialVolumeSegmentation
    with pytest.raises(ValidationError):
        PartialVolumeSegmentation(marrow=1.0, bone=0.5)
    with pytest.raises(ValidationError):
        PartialVolumeSegmentation(smoothing=0.0)
    with pytest.raises(InputError, match="constant"):
        partial_volume_threshold(np.ones((4, 4, 4)))
    with pytest.raises(InputError, match="NaN"):
        x = layered()
        x[0, 0, 0] = np.nan
        partial_volume_threshold(x)
    m = measure(layered(), names=["bv_tv"], segmentation="partial-volume")
    assert m["bv_tv"] == pytest.approx(0.3) and m["segmentation"]["name"] == "partial-volume"


def test_iteration_metrics_record_further_segmentations():
    from boneframe.superres.iteration_metrics import iteration_metrics

    pair = simulate_pair(24, 1, noise=0.01)
    fn = iteration_metrics(pair.hr, 41.0, structure_every=0, segmentations=["partial-volume"])
    rec = fn(pair.hr + 0.01)
    for k in ("dice", "bv_tv", "conn_d"):
        assert f"{k} · partial-volume" in rec
    expected = measure(pair.hr + 0.01, pair.hr, voxel_size=41.0, names=["bv_tv"],
                       segmentation="partial-volume")  # fmt: skip
    assert rec["bv_tv · partial-volume"] == expected["bv_tv"]
