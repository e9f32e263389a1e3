"""The tiled phantom written chunk by chunk to zarr, and its simulated scan."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from boneframe.chunked.phantom import (
    periodic_tile,
    tiled_phantom,
    write_large_acquisition,
    write_large_phantom,
)
from boneframe.errors import InputError


def _digest(path: Path) -> str:
    """Hash of every chunk file's bytes of the zarr array ``0`` under ``path``."""
    h = hashlib.sha256()
    for f in sorted((path / "0").rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a = write_large_phantom(tmp_path / "a.zarr", (40, 36, 30), seed=3, chunk=16, tile=20)
    b = write_large_phantom(tmp_path / "b.zarr", (40, 36, 30), seed=3, chunk=16, tile=20)
    c = write_large_phantom(tmp_path / "c.zarr", (40, 36, 30), seed=4, chunk=16, tile=20)
    assert _digest(tmp_path / "a.zarr") == _digest(tmp_path / "b.zarr")
    assert _digest(tmp_path / "a.zarr") != _digest(tmp_path / "c.zarr")
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_256_cube_chunk_64_equals_the_tile_without_noise(tmp_path):
    vol = write_large_phantom(tmp_path / "f.zarr", 256, seed=1, chunk=64, tile=96, noise=0.0)
    assert vol.is_lazy and vol.shape == (256, 256, 256)
    assert vol.data.chunksize == (64, 64, 64) and vol.voxel_size == (41.0, 41.0, 41.0)
    assert vol.metadata["tile"] == 96 and vol.dtype == np.float32
    import zarr

    assert zarr.open_group(str(tmp_path / "f.zarr"), mode="r")["0"].chunks == (64, 64, 64)
    tile = periodic_tile(96, seed=1)
    data = vol.numpy()
    assert np.array_equal(data, np.tile(tile, (3, 3, 3))[:256, :256, :256])
    # the noise of a chunk is its own: with noise, chunks that repeat the tile differ
    noisy = tiled_phantom(256, seed=1, chunk=64, tile=96, noise=0.01)[:96, :96, :96].compute()
    assert 0.005 < float(np.std(noisy - tile)) < 0.02


def test_tile_is_periodic():
    tile = periodic_tile(64, seed=0)
    assert tile.shape == (64, 64, 64) and tile.dtype == np.float32
    assert 0.15 < float(np.mean(tile > 0.575)) < 0.35  # the bone phase, BV/TV near 0.25
    for axis in range(3):  # no seam: across the wrap it varies as between neighbours
        others = tuple(a for a in range(3) if a != axis)
        step = np.mean(np.abs(tile - np.roll(tile, 1, axis)), axis=others)  # step[0]: the wrap
        assert step[1:].min() <= step[0] <= step[1:].max(), (axis, step[0])


def test_acquisition_equals_the_in_memory_forward_model(tmp_path):
    from boneframe.operators import forward_model
    from boneframe.phantom import gaussian_kernel

    hr = write_large_phantom(tmp_path / "f.zarr", 48, chunk=16, tile=24, noise=0.0)
    h = gaussian_kernel((1.2, 1.0, 0.9), 5)
    lr = write_large_acquisition(hr, tmp_path / "g.zarr", kernel=h, offset=0.05)
    assert lr.shape == (24, 24, 24) and lr.voxel_size == (82.0, 82.0, 82.0)
    want = forward_model(hr.numpy(), h, 0.05, 2)
    np.testing.assert_allclose(lr.numpy(), want, rtol=1e-5, atol=1e-6)
    noisy = write_large_acquisition(tmp_path / "f.zarr", tmp_path / "n.zarr", kernel=h, noise=0.01)
    again = write_large_acquisition(hr, tmp_path / "m.zarr", kernel=h, noise=0.01)
    assert np.array_equal(noisy.numpy(), again.numpy())
    assert 0.005 < float(np.std(noisy.numpy() - forward_model(hr.numpy(), h, 0.0, 2))) < 0.02


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="tile"):
        tiled_phantom(32, tile=4)
    with pytest.raises(InputError, match="noise"):
        tiled_phantom(32, noise=-1.0)
    with pytest.raises(InputError, match="size"):
        tiled_phantom((32, 32))
