"""Chunked local thickness: the in-memory map, chunk for chunk, with a halo found from the data."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.metrics import measure
from boneframe.metrics.measure import STRUCTURE_METRICS
from boneframe.metrics.thickness import local_thickness
from boneframe.metrics.thickness_blocks import (
    local_thickness_map,
    required_halo,
    thickness_statistics,
)
from boneframe.phantom import trabecular_occupancy


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    """96³ simulated trabecular bone (BV/TV 0.25), cut by the volume's border everywhere."""
    return trabecular_occupancy(96, 3) > 0.5


@pytest.mark.parametrize("phase", ["bone", "marrow"])
def test_map_equals_the_in_memory_map(mask, phase):
    chunked = da.from_array(mask, chunks=32)
    lt = local_thickness_map(chunked, 10.0, phase)
    assert isinstance(lt, da.Array) and lt.chunks == chunked.chunks and lt.dtype == np.float32
    got = lt.compute()
    ref = local_thickness(mask, 10.0, phase=phase)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.map))
    finite = np.isfinite(ref.map)
    np.testing.assert_allclose(got[finite], ref.map[finite], rtol=0, atol=1e-6)
    stats = thickness_statistics(lt)
    assert stats.count == ref.count
    assert stats.mean == pytest.approx(ref.mean, rel=1e-9)
    assert stats.sd == pytest.approx(ref.sd, rel=1e-6)
    assert stats.max == ref.max


def test_irregular_chunks_and_structures_cut_by_the_border():
    # plates 6 voxels thick across the whole volume, cut by its border on four faces,
    # a chunk boundary through the middle of a plate and of a marrow gap
    vol = np.zeros((40, 24, 30), dtype=bool)
    vol[3:9] = vol[21:27] = True
    vol[10:20, 5:12, 9:20] = True  # a brick bridging the gap
    chunked = da.from_array(vol, chunks=((7, 17, 16), (10, 14), (30,)))
    for phase in ("bone", "marrow"):
        got = local_thickness_map(chunked, 1.0, phase).compute()
        ref = local_thickness(vol, 1.0, phase=phase).map
        np.testing.assert_array_equal(got, ref)  # NaN positions and values


def test_required_halo_is_twice_the_reach_plus_two():
    vol = np.zeros((30, 16, 16), dtype=bool)
    vol[5:15] = True  # a 10-voxel slab: deepest voxels at distance 5
    info = required_halo(da.from_array(vol, chunks=8), "bone", trial=1)  # doubled from 1
    assert (info.reach, info.halo, info.max_distance2) == (5, 12, 25.0)
    assert info.count == 10 * 16 * 16 and not info.degenerate


def test_too_small_a_halo_is_refused(mask):
    chunked = da.from_array(mask[:48, :48, :48], chunks=24)
    needed = required_halo(chunked, "marrow").halo
    with pytest.raises(InputError, match=f"at least .* = {needed} voxels"):
        local_thickness_map(chunked, 10.0, "marrow", halo=needed - 1)
    with pytest.raises(InputError, match="non-negative integer"):
        local_thickness_map(chunked, 10.0, "marrow", halo=-3)
    # a larger halo than needed changes nothing
    a = local_thickness_map(chunked, 10.0, "marrow", halo=needed + 5).compute()
    np.testing.assert_array_equal(a, local_thickness(mask[:48, :48, :48], 10.0, phase="marrow").map)


def test_empty_or_full_phase_gives_nan():
    full = da.ones((16, 16, 16), dtype=bool, chunks=8)
    assert np.isnan(local_thickness_map(full, 1.0, "bone").compute()).all()
    assert np.isnan(local_thickness_map(full, 1.0, "marrow").compute()).all()
    stats = thickness_statistics(local_thickness_map(full, 1.0, "marrow"))
    assert stats.count == 0 and np.isnan(stats.mean)


def test_bad_inputs():
    vol = da.zeros((8, 8, 8), dtype=bool, chunks=4)
    with pytest.raises(InputError, match="isotropic"):
        local_thickness_map(vol, (1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="phase"):
        local_thickness_map(vol, 1.0, "cortex")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="3D"):
        local_thickness_map(da.zeros((8, 8), chunks=4), 1.0)


def test_structure_metrics_chunked_equal_in_memory(mask):
    # the Tb.* metrics read the same maps' statistics, merged over the chunks
    small = mask[:48, :48, :48]
    names = [n for n in STRUCTURE_METRICS if n not in ("da", "mil_ratio")]
    got = measure(da.from_array(small, chunks=(24, 16, 48)), voxel_size=41.0, names=names)
    ref = measure(small, voxel_size=41.0, names=names)
    for key in names:
        assert got[key] == pytest.approx(ref[key], rel=1e-12), key
    bone = local_thickness(small, 41.0)
    assert ref["tb_th"] == pytest.approx(bone.mean, rel=1e-12)
    assert (ref["tb_th_sd"], ref["tb_th_max"]) == pytest.approx((bone.sd, bone.max), rel=1e-12)


def test_small_chunks_are_merged_for_the_halo():
    # chunks of 4 voxels, halo 2R + 2 = 12 for these 10-voxel plates: the map's
    # blocks are merged for the pass, the map comes back in the input's chunks
    vol = np.zeros((40, 12, 12), dtype=bool)
    vol[5:15] = vol[25:35] = True
    chunked = da.from_array(vol, chunks=4)
    got = local_thickness_map(chunked, 1.0, "bone")
    assert got.chunks == chunked.chunks
    np.testing.assert_array_equal(got.compute(), local_thickness(vol, 1.0).map)


def test_runs_under_a_distributed_client(mask):
    distributed = pytest.importorskip("distributed")
    small = mask[:32, :32, :32]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2):
        got = local_thickness_map(da.from_array(small, chunks=16), 1.0, "bone").compute()
    np.testing.assert_array_equal(got, local_thickness(small, 1.0).map)


# -- each block's own halo (the metrics' chunked thickness) -------------------------------
def _block_maps(b, phase, first):
    from dataclasses import replace

    from boneframe.metrics.thickness_window import block_thickness

    return [(b.start, block_thickness(replace(b, halo=first), phase, 1.0))]


@pytest.mark.parametrize("seed", range(3))
def test_each_block_finds_its_exact_halo(seed):
    # random structures, chunks and halos: a block's map is the in-memory map's voxels,
    # or the halo it needs is more than it holds
    from scipy import ndimage

    from boneframe.interfaces import MetricContext
    from boneframe.metrics.blocks import VolumeBlocks
    from boneframe.metrics.thickness import thickness_map

    rng = np.random.default_rng(seed)
    for _ in range(4):
        shape = tuple(int(s) for s in rng.integers(10, 32, 3))
        smooth = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(0.8, 3.5))
        vol = smooth > rng.uniform(-0.4, 0.4)
        chunks = tuple(int(c) for c in rng.integers(4, 16, 3))
        held = int(rng.integers(1, 12))
        first = int(rng.integers(1, held + 1))
        blocks = VolumeBlocks.of(da.from_array(vol, chunks=chunks))
        blocks = blocks.binarised(MetricContext(shape=blocks.shape, threshold=0.5))
        for phase in ("bone", "marrow"):
            want = thickness_map(vol, 1.0, phase=phase)
            for start, (got, need) in blocks.map_reduce(_block_maps, phase, first, halo=held):
                if got is None:
                    assert need > held
                    continue
                box = tuple(slice(s, s + n) for s, n in zip(start, got.shape, strict=True))
                np.testing.assert_array_equal(got, want[box])  # NaN positions and values
