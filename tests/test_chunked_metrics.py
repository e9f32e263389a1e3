"""Every metric of a dask volume, chunk by chunk, equals the in-memory one, whatever the chunks."""

from __future__ import annotations

import math
import sys
import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest

from boneframe.metrics import BUILTIN_METRICS, Components, measure
from boneframe.metrics.components import count_components_of, neighbour_offsets
from boneframe.metrics.morphometry import count_cavities, count_components
from boneframe.phantom import micro_ct, trabecular_occupancy
from boneframe.volume import Volume

ALL_NAMES = [cls.name for cls in BUILTIN_METRICS if cls.name != "bmd"]  # bmd: calibrated only
INTEGERS = ("euler", "betti0", "betti1", "betti2")


def phantom_pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n³ phantom (a crop of a 24³ one below that): a noisy reference, a noisier estimate."""
    occ = trabecular_occupancy(max(n, 24), 3)[:n, :n, :n]
    return micro_ct(occ, noise=0.1, seed=2), micro_ct(occ, noise=0.02, seed=1)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return phantom_pair(96)


def assert_same(chunked: dict, memory: dict) -> None:
    """Integers exactly, floats to 1e-12, the rest (units, reasons) equal; by default
    a dask volume is not loaded whole for the metrics without a block form (DA)."""
    assert list(chunked) == list(memory)
    whole = {n for n, why in chunked["skipped"].items() if "no chunk-by-chunk form" in why}
    assert whole <= {"da", "mil_ratio"}
    for key, want in memory.items():
        got = chunked[key]
        if key in whole:
            assert got is None
        elif key == "skipped":
            assert {k: v for k, v in got.items() if k not in whole} == want
        elif key in INTEGERS:
            assert got == want, (key, got, want)
        elif isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12), (key, got, want)
        else:
            assert got == want, (key, got, want)


@pytest.mark.parametrize(
    ("n", "chunks", "reference_chunks"),
    [
        (12, 3, 3),  # 64 blocks of 3 voxels
        (24, (5, 7, 12), (8, 8, 8)),  # uneven chunks; the reference rechunked to them
        (96, 48, (40, 50, 60)),
    ],
)
def test_every_builtin_metric(n, chunks, reference_chunks):
    estimate, reference = phantom_pair(n)
    memory = measure(estimate, reference, voxel_size=41, names=ALL_NAMES)
    chunked = measure(
        da.from_array(estimate, chunks=chunks),
        da.from_array(reference, chunks=reference_chunks),
        voxel_size=41,
        names=ALL_NAMES,
    )
    assert_same(chunked, memory)
    assert memory["skipped"] == {}  # every metric computed, none skipped
    if n == 96:  # the Betti numbers and both phases' thickness are exercised
        assert memory["betti0"] > 1 and memory["betti2"] > 0 and memory["tb_sp"] > 0


@pytest.mark.parametrize("masked", [False, True])
def test_thickness_on_blocks_with_halos(pair, monkeypatch, masked):
    # chunks as thin as a few halos are merged for the local thickness (a cost rule):
    # with that rule off, the structure metrics run on 8 blocks with their halos
    import boneframe.metrics.passes as passes

    monkeypatch.setattr(passes, "HALOS_PER_BLOCK", 1)
    estimate, reference = pair
    mask = np.zeros(estimate.shape, bool)
    mask[6:90, 4:93, 10:80] = True
    mask = mask if masked else None
    memory = measure(estimate, reference, mask, voxel_size=41)
    chunked = measure(
        da.from_array(estimate, chunks=48),
        da.from_array(reference, chunks=48),
        None if mask is None else da.from_array(mask, chunks=48),
        voxel_size=41,
    )
    assert_same(chunked, memory)
    assert memory["tb_sp"] > memory["tb_th"] > 0


def test_uneven_chunks_with_a_mask(pair):
    estimate, reference = pair
    mask = np.zeros(estimate.shape, bool)
    mask[10:80, 5:90, 20:70] = True
    memory = measure(estimate, reference, mask, voxel_size=41)
    chunked = measure(
        da.from_array(estimate, chunks=(40, 33, 96)),
        reference,
        da.from_array(mask, chunks=16),
        voxel_size=41,
    )
    assert_same(chunked, memory)
    assert memory["bv_tv"] is not None and memory["euler"] is not None  # χ inside the mask


def test_given_thresholds_names_and_volume_input(pair):
    estimate, reference = pair
    names = ["otsu", "bv_tv", "conn_d_bonej", "betti2", "dice"]
    kwargs = {"threshold": 0.6, "reference_threshold": 0.55, "names": names}
    memory = measure(Volume(estimate, voxel_size=(41, 41, 50)), reference, **kwargs)
    volume = Volume(da.from_array(estimate, chunks=(48, 40, 56)), voxel_size=(41, 41, 50))
    chunked = measure(volume, reference, **kwargs)
    assert_same(chunked, memory)
    assert "otsu" in chunked and chunked["threshold"] == 0.6


def test_real_mask(real_mask):
    memory = measure(real_mask, voxel_size=41, structure=False)
    chunked = measure(da.from_array(real_mask, chunks=48), voxel_size=41, structure=False)
    assert_same(chunked, memory)


def test_numpy_and_bool_input():
    bone = np.zeros((8, 8, 8), bool)
    bone[2:6, 2:6, 2:6] = True
    bone[4, 4, 4] = False
    memory = measure(bone, voxel_size=50)
    assert_same(measure(da.from_array(bone, chunks=4), voxel_size=50), memory)
    assert memory["betti2"] == 1.0 and memory["bv_tv"] == 63 / 512


def test_shared_quantities_run_once_per_block(pair, monkeypatch):
    # β0, β1, β2 and Conn.D read one labelling of each phase: one block call per chunk each
    calls: list[str] = []
    block = Components.block

    def counting(self, b):
        calls.append(self.phase)
        return block(self, b)

    monkeypatch.setattr(Components, "block", counting)
    chunked = da.from_array(pair[0][:48, :48, :48], chunks=24)  # 8 chunks
    measure(chunked, voxel_size=41, names=["betti0", "betti1", "betti2", "conn_d"])
    assert sorted(calls) == ["bone"] * 8 + ["marrow"] * 8


# -- the component merge across chunk faces, edges and corners ----------------------------
def _counts(mask: np.ndarray, chunks) -> tuple[int, int, int]:
    """β0 (26-connected), 6-connected components and β2 of ``mask``, chunked."""
    d = da.from_array(mask, chunks=chunks)
    six = count_components_of(d, 6).count
    return count_components(d), six, count_cavities(d)


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
    assert len(neighbour_offsets(26)) == 26 and len(neighbour_offsets(6)) == 6


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
    mask[z, y, x] = True  # one 26-connected curve through many 7³ chunks
    got = _counts(mask, 7)
    assert got == _reference_counts(mask) and got[0] == 1


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_random_chunks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(6, 25, 3))
    mask = rng.random(shape) < rng.uniform(0.1, 0.8)
    chunks = tuple(int(c) for c in rng.integers(3, 10, 3))
    assert _counts(mask, chunks) == _reference_counts(mask)


def test_runs_under_a_distributed_client(pair):
    distributed = pytest.importorskip("distributed")
    estimate, reference = (x[:32, :32, :32] for x in pair)
    memory = measure(estimate, reference, voxel_size=41, names=ALL_NAMES)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2):
        chunked = measure(
            da.from_array(estimate, chunks=16),
            da.from_array(reference, chunks=16),
            voxel_size=41,
            names=ALL_NAMES,
        )
    assert_same(chunked, memory)


def test_a_thin_stack_in_one_chunk_along_z_is_measured_as_in_memory(pair) -> None:
    # a few HR-pQCT slices in one chunk along z, several in-plane: the halo of an axis
    # that is one chunk is the border's zeros (padding), not a slice per block
    vol, _ = pair
    thin = vol[:6]
    memory = measure(thin, voxel_size=41.0, names=["tb_th", "tb_sp", "bv_tv", "euler"])
    lazy = da.from_array(thin, chunks=(6, 24, 24))
    chunked = measure(lazy, voxel_size=41.0, names=["tb_th", "tb_sp", "bv_tv", "euler"])
    for key in ("tb_th", "tb_sp", "bv_tv", "euler"):
        assert chunked[key] == pytest.approx(memory[key], rel=1e-12), key
    from boneframe.metrics.blocks import VolumeBlocks, _least_chunk

    assert _least_chunk(VolumeBlocks.of(lazy).chunks) == 24
    assert _least_chunk(((6,), (24,), (24,))) == math.inf


# -- one pass, each chunk read once --------------------------------------------------------
def _counted(x: np.ndarray, chunks, reads: Counter, name: str):
    """``x`` as a dask array whose chunks count how often they are loaded."""
    lock = threading.Lock()

    def load(block, block_info=None):
        with lock:
            reads[name, tuple(block_info[0]["chunk-location"])] += 1
        return block

    return da.from_array(x, chunks=chunks).map_blocks(load, dtype=x.dtype)


@pytest.mark.parametrize("keep", [True, False])
def test_each_chunk_is_read_once_per_pass(pair, monkeypatch, keep):
    if not keep:  # the module, not the function of the same name
        monkeypatch.setattr(sys.modules["boneframe.metrics.measure"], "KEEP_BYTES", 0)
    estimate, reference = (x[:48, :48, :48] for x in pair)
    mask = np.zeros(estimate.shape, bool)
    mask[4:44, 2:46, 6:40] = True
    names = [n for n in ALL_NAMES if n not in ("da", "mil_ratio")]  # they load the volume
    reads: Counter = Counter()
    chunked = measure(
        _counted(estimate, 24, reads, "volume"),
        _counted(reference, 24, reads, "reference"),
        _counted(mask, 24, reads, "mask"),
        voxel_size=41,
        names=names,
    )
    assert_same(chunked, measure(estimate, reference, mask, voxel_size=41, names=names))
    # kept: read once for every pass; else each pass reads each chunk once: the
    # thresholds' two (volume and reference), then one for every metric
    passes = {"volume": 3, "reference": 3, "mask": 1} if not keep else {}
    assert len(reads) == 3 * 8
    assert all(n == passes.get(name, 1) for (name, _), n in reads.items()), reads


@pytest.mark.parametrize("masked", [False, True])
def test_blocks_short_of_halo_run_again(pair, monkeypatch, masked):
    # a first halo of one voxel: every block's thickness asks for more, and only the
    # thickness runs again on those blocks, with the halo each asked for
    import boneframe.metrics.passes as passes
    import boneframe.metrics.trabecular as trabecular

    monkeypatch.setattr(trabecular, "FIRST_HALO", {"bone": 1, "marrow": 1})
    again: list[int] = []
    resume = passes._resume

    def counting(blocks, forms, totals):
        again.extend(
            len(form.unfinished(t))
            for (form, _), t in zip(forms, totals, strict=True)
            if hasattr(form, "unfinished")
        )
        return resume(blocks, forms, totals)

    monkeypatch.setattr(passes, "_resume", counting)
    estimate = pair[0][:48, :48, :48]
    mask = np.zeros(estimate.shape, bool)
    mask[3:45, 5:47, 1:40] = True
    mask = mask if masked else None
    names = ["tb_th", "tb_th_sd", "tb_th_max", "tb_sp", "tb_sp_sd", "tb_sp_max", "euler"]
    memory = measure(estimate, mask=mask, voxel_size=41, names=names)
    chunked = measure(
        da.from_array(estimate, chunks=12),
        mask=None if mask is None else da.from_array(mask, chunks=12),
        voxel_size=41,
        names=names,
    )
    assert_same(chunked, memory)
    assert sum(again) > 0
