"""Chunked bone metrics equal the in-memory ones, whatever the chunking."""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np
import pytest

from boneframe.chunked.labels import (
    components_delayed,
    count_cavities_chunked,
    count_components_chunked,
    neighbour_offsets,
)
from boneframe.chunked.metrics import compute_metrics_chunked
from boneframe.errors import InputError
from boneframe.metrics import compute_metrics
from boneframe.metrics.morphometry import count_cavities, count_components
from boneframe.phantom import micro_ct, trabecular_occupancy
from boneframe.volume import Volume

INTEGERS = ("euler", "betti0", "betti1", "betti2")


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A 128³ phantom: a noisy reference and a noisier estimate."""
    occ = trabecular_occupancy(128, 3)
    reference = micro_ct(occ, noise=0.02, seed=1)
    estimate = micro_ct(occ, noise=0.1, seed=2)
    return estimate, reference


def assert_same(chunked: dict, memory: dict) -> None:
    assert list(chunked) == list(memory)
    for key, want in memory.items():
        got = chunked[key]
        if key in INTEGERS:
            assert got == want, (key, got, want)
        elif isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12), (key, got, want)
        else:
            assert got == want, (key, got, want)


def test_phantom_with_reference_chunks_not_dividing_the_shape(pair):
    estimate, reference = pair
    memory = compute_metrics(estimate, reference, voxel_size=41)
    chunked = compute_metrics_chunked(
        da.from_array(estimate, chunks=48),
        da.from_array(reference, chunks=(40, 50, 60)),  # rechunked to the volume's
        voxel_size=41,
    )
    assert_same(chunked, memory)
    assert memory["betti0"] > 1 and memory["betti2"] > 0  # the Betti numbers are exercised


def test_given_thresholds_names_and_volume_input(pair):
    estimate, reference = pair
    names = ["otsu", "bv_tv", "conn_d_bonej", "betti2", "dice"]
    kwargs = {"threshold": 0.6, "reference_threshold": 0.55, "names": names}
    memory = compute_metrics(Volume(estimate, voxel_size=(41, 41, 50)), reference, **kwargs)
    volume = Volume(da.from_array(estimate, chunks=(48, 40, 56)), voxel_size=(41, 41, 50))
    chunked = compute_metrics_chunked(volume, reference, **kwargs)
    assert_same(chunked, memory)
    assert "otsu" in chunked and chunked["threshold"] == 0.6


def test_real_mask(real_mask):
    memory = compute_metrics(real_mask, voxel_size=41)
    chunked = compute_metrics_chunked(da.from_array(real_mask, chunks=48), voxel_size=41)
    assert_same(chunked, memory)


def test_numpy_and_bool_input():
    bone = np.zeros((8, 8, 8), bool)
    bone[2:6, 2:6, 2:6] = True
    bone[4, 4, 4] = False
    memory = compute_metrics(bone, voxel_size=50)
    assert_same(compute_metrics_chunked(bone, voxel_size=50), memory)
    assert memory["betti2"] == 1.0


def _counts(mask: np.ndarray, chunks) -> tuple[int, int, int]:
    """β0 (26-connected), 6-connected components and β2 of ``mask``, chunked."""
    d = da.from_array(mask, chunks=chunks)
    if mask.size < 1000:  # the public helpers, once
        return (
            count_components_chunked(d, 26),
            count_components_chunked(d, 6),
            count_cavities_chunked(d),
        )
    bone, marrow6 = components_delayed(d, 26), components_delayed(d, 6)
    cavities = components_delayed(d, 6, invert=True)
    (b0, _), (m6, _), (m, touching) = dask.compute(bone, marrow6, cavities)
    return b0, m6, m - touching


def _reference_counts(mask: np.ndarray) -> tuple[int, int, int]:
    import cc3d

    six = cc3d.connected_components(mask, connectivity=6, return_N=True)[1]
    return count_components(mask), int(six), count_cavities(mask)


@pytest.mark.parametrize(
    "voxels",
    [
        [(3, 3, 3), (4, 4, 4)],  # across a chunk corner only
        [(3, 3, 3), (4, 2, 4)],  # corner, other diagonal
        [(3, 3, 5), (4, 4, 6)],  # across a chunk edge, shifted along it
        [(3, 5, 3), (4, 5, 4)],  # across an edge (axes 0 and 2)
        [(3, 1, 2), (4, 2, 1)],  # across a face, diagonally
        [(3, 4, 4), (4, 4, 4)],  # across a face, face to face
    ],
)
def test_diagonal_contacts_across_chunks(voxels):
    mask = np.zeros((8, 8, 8), bool)
    for v in voxels:
        mask[v] = True
    got = _counts(mask, 4)
    assert got == _reference_counts(mask)
    assert got[0] == 1


def test_one_voxel_thick_chunks():
    mask = np.random.default_rng(5).random((9, 7, 10)) < 0.5
    assert _counts(mask, (3, 1, 5)) == _reference_counts(mask)


def test_neighbour_offsets():
    assert len(neighbour_offsets(26)) == 13 and len(neighbour_offsets(6)) == 3


def test_cavity_spanning_chunks():
    mask = np.ones((20, 20, 20), bool)
    mask[3:15, 4:17, 3:18] = False  # one cavity over 8+ chunks of 6
    mask[8, 8, 0:2] = False  # a marrow channel from the border, not into the cavity
    got = _counts(mask, 6)
    assert got == _reference_counts(mask) and got[2] == 1
    mask[8, 8, 0:3] = False  # now it opens the cavity: no cavity left
    got = _counts(mask, 6)
    assert got == _reference_counts(mask) and got[2] == 0


def test_spiral_through_many_chunks():
    n = 36
    mask = np.zeros((n, n, n), bool)
    t = np.linspace(0, 6 * np.pi, 4000)
    z = np.round(2 + (n - 5) * t / t[-1]).astype(int)
    y = np.round(n / 2 + 14 * np.cos(t)).astype(int)
    x = np.round(n / 2 + 14 * np.sin(t)).astype(int)
    mask[z, y, x] = True  # one 26-connected curve through many 5³ chunks
    got = _counts(mask, 7)
    assert got == _reference_counts(mask) and got[0] == 1


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_random_chunks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(6, 25, 3))
    mask = rng.random(shape) < rng.uniform(0.1, 0.8)
    chunks = tuple(int(c) for c in rng.integers(3, 10, 3))
    assert _counts(mask, chunks) == _reference_counts(mask)


def test_unchunked_metrics_refused_in_one_message(pair):
    with pytest.raises(InputError, match="'tb_th', 'da'"):
        compute_metrics_chunked(pair[0], names=["bv_tv", "tb_th", "da"], voxel_size=41)


def test_missing_reference_or_voxel_size(pair):
    with pytest.raises(InputError, match="reference"):
        compute_metrics_chunked(pair[0], names=["psnr"])
    with pytest.raises(InputError, match="voxel size"):
        compute_metrics_chunked(pair[0], names=["conn_d"])
    with pytest.raises(InputError, match="NaN"):
        compute_metrics_chunked(np.full((4, 4, 4), np.nan))


def test_runs_under_a_distributed_client(pair):
    distributed = pytest.importorskip("distributed")
    estimate, reference = pair
    small_e, small_r = estimate[:64, :64, :64], reference[:64, :64, :64]
    memory = compute_metrics(small_e, small_r, voxel_size=41)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2):
        chunked = compute_metrics_chunked(
            da.from_array(small_e, chunks=24), da.from_array(small_r, chunks=24), voxel_size=41
        )
    assert_same(chunked, memory)
