"""A lab's plugin metrics run on a zarr volume, chunk by chunk, and equal their in-memory values.

The plugin is this module: two Metric classes and the ``boneframe_metrics``
hook, loaded through a fake entry point into a Registry like any third-party
package.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import dask.array as da
import numpy as np
import pytest
from conftest import lab_plugin_registry

from boneframe.errors import InputError
from boneframe.hookspecs import hookimpl
from boneframe.interfaces import Metric, MetricBlock, MetricContext, MetricInput
from boneframe.io import read_volume, write_volume
from boneframe.metrics import BONE_COMPONENTS, measure
from boneframe.registry import Registry
from boneframe.volume import Volume

_lock = threading.Lock()
BLOCK_CALLS: list[tuple[int, ...]] = []


class MeanBoneGrey(Metric):
    """Mean grey value of the bone voxels: a block form (sums that add up over blocks)."""

    name: ClassVar[str] = "mean_bone_grey"
    description: ClassVar[str] = "mean grey value of the bone"

    def block(self, b: MetricBlock) -> tuple[float, int]:
        with _lock:
            BLOCK_CALLS.append(b.index)
        return float(b.volume[b.bone].sum(dtype=np.float64)), int(np.count_nonzero(b.bone))

    def finish(self, total: tuple[float, int], context: MetricContext) -> float:
        return total[0] / total[1]


class MedianGrey(Metric):
    """Median grey value: no block form (a median does not add up), computed in memory."""

    name: ClassVar[str] = "median_grey"
    description: ClassVar[str] = "median grey value of the volume"

    def __call__(self, data: MetricInput) -> float:
        return float(np.median(data.volume))


class ComponentsPerBoneVoxel(Metric):
    """β0 per bone voxel: a plugin reading a built-in shared quantity and its own sums."""

    name: ClassVar[str] = "components_per_bone_voxel"
    description: ClassVar[str] = "bone components per bone voxel"
    requires: ClassVar[tuple] = (BONE_COMPONENTS,)

    def block(self, b: MetricBlock) -> int:
        return int(np.count_nonzero(b.bone))

    def finish(self, total: int, context: MetricContext) -> float:
        if total == 0:
            raise InputError("there is no bone to count components per voxel of")
        return context[BONE_COMPONENTS].count / total


@hookimpl
def boneframe_metrics() -> list[type]:
    return [MeanBoneGrey, MedianGrey, ComponentsPerBoneVoxel]


NAMES = ["bv_tv", "euler", "mean_bone_grey", "median_grey", "components_per_bone_voxel"]


@pytest.fixture
def lab_registry(monkeypatch) -> Registry:
    """The installed entry points plus this module as the plugin ``lab``."""
    return lab_plugin_registry(monkeypatch, __name__)


@pytest.fixture
def grey() -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(7)
    return (1000 * ndimage.gaussian_filter(rng.standard_normal((30, 28, 26)), 2)).astype(np.float32)


def test_plugin_metrics_are_registered(lab_registry):
    assert lab_registry.entry("metric", "mean_bone_grey").plugin == "lab"
    assert {"median_grey", "components_per_bone_voxel", "bv_tv"} <= set(
        lab_registry.names("metric")
    )


def test_plugin_metrics_on_zarr_equal_in_memory(lab_registry, grey, tmp_path):
    path = write_volume(Volume(da.from_array(grey, chunks=(10, 14, 13)), voxel_size=41.0),
                        tmp_path / "grey.zarr")  # fmt: skip
    lazy = read_volume(path)
    assert lazy.is_lazy and lazy.data.numblocks == (3, 2, 2)

    BLOCK_CALLS.clear()
    chunked = measure(lazy, names=NAMES)
    assert sorted(BLOCK_CALLS) == sorted(np.ndindex(3, 2, 2))  # the chunked path ran, once a chunk

    BLOCK_CALLS.clear()
    memory = measure(grey, voxel_size=41.0, names=NAMES)
    assert BLOCK_CALLS == [(0, 0, 0)]  # in memory: the whole volume is one block

    assert chunked["skipped"] == memory["skipped"] == {}
    for name in NAMES:
        assert chunked[name] == pytest.approx(memory[name], rel=1e-12), name
    bone = grey > memory["threshold"]
    assert memory["mean_bone_grey"] == pytest.approx(grey[bone].mean(dtype=np.float64), rel=1e-12)
    assert memory["median_grey"] == float(np.median(grey))
    assert memory["units"]["mean_bone_grey"] == ""


def test_a_plugin_metric_that_cannot_be_computed_is_isolated(lab_registry, grey):
    # no bone above the threshold: an InputError is that metric's None and reason, the
    # others are computed; any other exception is a bug in the plugin and propagates
    names = ["bv_tv", "components_per_bone_voxel", "median_grey"]
    m = measure(da.from_array(grey, chunks=10), threshold=1e9, names=names)
    assert m["components_per_bone_voxel"] is None
    assert m["skipped"] == {
        "components_per_bone_voxel": "there is no bone to count components per voxel of"
    }
    assert m["bv_tv"] == 0.0 and m["median_grey"] == float(np.median(grey))
    with pytest.raises(ZeroDivisionError):
        measure(grey, threshold=1e9, names=["mean_bone_grey"])
