"""Zarr integrity (issue 20): boneframe's zarr volumes record chunk checksums and
refuse a missing, undecodable or altered chunk, naming it; a foreign zarr's absent
chunks read as the fill value and are counted and reported."""

from __future__ import annotations

import json
import pickle
import shutil
import zlib
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from boneframe.cli import main
from boneframe.errors import VolumeIOError
from boneframe.io import read_volume, write_volume
from boneframe.io.zarr_integrity import DataWarning
from boneframe.phantom import simulate_pair
from boneframe.volume import Volume

ROT = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """A 48³ / 24³ phantom pair as zarr, 27 chunks each (16³ and 8³)."""
    out = tmp_path_factory.mktemp("pair")
    hr, lr = simulate_pair(48, 0, noise=0.01).volumes()
    write_volume(hr.with_data(da.from_array(hr.data, chunks=16)), out / "hr.zarr")
    write_volume(lr.with_data(da.from_array(lr.data, chunks=8)), out / "lr.zarr")
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _chunk_file(path: Path, index: tuple[int, ...]) -> Path:
    return path.joinpath("0", "c", *(str(i) for i in index))


def _record(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]["boneframe"]["chunks"]


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("lazy", [True, False])
def test_round_trip_records_every_chunk_and_its_crc32(tmp_path, rng, lazy):
    data = rng.random((20, 16, 12)).astype("f4")
    data[:8] = 0.0  # chunks equal to the fill value are written too
    vol = Volume(
        da.from_array(data, chunks=8) if lazy else data,
        voxel_size=(41.0, 41.5, 82.0),
        origin=(1.0, -2.0, 3.5),
        direction=ROT,
        metadata={"scanner": "xct", "calibration": [1.5, 2.0]},
    )
    path = write_volume(vol, tmp_path / "v.zarr")
    back = read_volume(path)
    assert back.is_lazy and back.dtype == data.dtype
    np.testing.assert_array_equal(back.numpy(), data)
    assert back.voxel_size == vol.voxel_size and back.origin == vol.origin
    np.testing.assert_array_equal(back.direction, ROT)
    assert back.metadata == vol.metadata
    chunk = (8, 8, 8) if lazy else (20, 16, 12)
    assert back.data.chunksize == chunk
    record = _record(path)
    grid = [-(-n // c) for n, c in zip(data.shape, chunk, strict=True)]
    assert record["chunk_shape"] == list(chunk) and record["grid"] == grid
    assert record["count"] == int(np.prod(grid)) == len(record["crc32"])
    for index in np.ndindex(*grid):
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunk, strict=True))
        expected = zlib.crc32(np.ascontiguousarray(data[region]))
        assert record["crc32"][".".join(map(str, index))] == expected
        assert _chunk_file(path, index).is_file()


def test_misaligned_dask_chunks_are_written_as_whole_zarr_chunks(tmp_path, rng):
    data = rng.random((20, 18, 10)).astype("f4")
    lazy = da.from_array(data, chunks=((6, 8, 6), (9, 9), (10,)))
    path = write_volume(Volume(lazy, voxel_size=1), tmp_path / "m.zarr")
    back = read_volume(path)
    assert back.data.chunks == ((8, 8, 4), (9, 9), (10,))
    np.testing.assert_array_equal(back.numpy(), data)
    assert _record(path)["count"] == 6


# --------------------------------------------------------------------------- damaged chunks
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_missing_chunk_is_refused_when_computed(pair, tmp_path, scheduler):
    path = _copy(pair / "hr.zarr", tmp_path / "hr.zarr")
    _chunk_file(path, (1, 0, 2)).unlink()
    vol = read_volume(path)  # lazy: opening reads no chunk
    assert vol.shape == (48, 48, 48)
    np.testing.assert_array_equal(vol.data[:16].compute(), read_volume(pair / "hr.zarr").data[:16])
    with pytest.raises(VolumeIOError) as err, dask.config.set(scheduler=scheduler):
        dask.compute(vol.data.sum())
    assert type(err.value) is VolumeIOError
    assert str(err.value) == (
        f"{path}: chunk (1, 0, 2) is missing (the volume was written with 27 chunks)"
    )
    # the graph ships to distributed workers pickled: the verification travels with it
    shipped = pickle.loads(pickle.dumps(vol.data))
    with pytest.raises(VolumeIOError, match=r"chunk \(1, 0, 2\) is missing"):
        shipped[16:32].compute(scheduler=scheduler)


def test_missing_chunk_of_fill_values_is_refused(tmp_path):
    """A checksum alone would pass a lost chunk that held only the fill value."""
    data = np.zeros((16, 16, 16), "f4")
    data[8:] = 1.0
    path = write_volume(Volume(da.from_array(data, chunks=8)), tmp_path / "z.zarr")
    _chunk_file(path, (0, 1, 1)).unlink()
    with pytest.raises(VolumeIOError, match=r"chunk \(0, 1, 1\) is missing"):
        read_volume(path).numpy()


def test_garbage_chunk_is_refused(pair, tmp_path):
    path = _copy(pair / "hr.zarr", tmp_path / "hr.zarr")
    _chunk_file(path, (2, 1, 0)).write_bytes(b"not a zstd frame" * 64)
    with pytest.raises(VolumeIOError) as err:
        read_volume(path).numpy()
    message = str(err.value)
    assert message.startswith(f"{path}: chunk (2, 1, 0) is corrupt: it cannot be decoded")
    assert "\n" not in message


def test_chunk_of_other_values_is_refused(pair, tmp_path):
    """Valid compressed bytes of another chunk: decodes, but not what was written."""
    path = _copy(pair / "hr.zarr", tmp_path / "hr.zarr")
    shutil.copyfile(_chunk_file(path, (0, 0, 0)), _chunk_file(path, (1, 1, 1)))
    with pytest.raises(VolumeIOError, match=r"hr\.zarr: chunk \(1, 1, 1\) is corrupt: its CRC32"):
        read_volume(path).data.mean().compute()


def test_damaged_record_is_refused_on_open(pair, tmp_path):
    path = _copy(pair / "hr.zarr", tmp_path / "hr.zarr")
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["boneframe"]["chunks"]["chunk_shape"] = [8, 8, 8]
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(VolumeIOError, match="recorded chunks .* do not match"):
        read_volume(path)


# --------------------------------------------------------------------------- command line
def _one_error_line(capsys, argv: list[str], chunk: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert f"chunk {chunk}" in lines[0]
    return captured.out


def test_metrics_on_a_broken_zarr_exits_2(pair, tmp_path, capsys):
    path = _copy(pair / "hr.zarr", tmp_path / "broken.zarr")
    _chunk_file(path, (1, 0, 2)).unlink()
    out = _one_error_line(capsys, ["metrics", str(path), "--json"], "(1, 0, 2)")
    assert out == ""


def test_estimate_kernel_on_a_broken_zarr_exits_2_and_writes_nothing(pair, tmp_path, capsys):
    lr = _copy(pair / "lr.zarr", tmp_path / "lr_broken.zarr")
    _chunk_file(lr, (1, 2, 0)).write_bytes(b"\x28\xb5\x2f\xfd garbage")
    argv = ["estimate-kernel", str(pair / "hr.zarr"), str(lr), "--out", str(tmp_path / "k.npy")]
    _one_error_line(capsys, [*argv, "--quiet"], "(1, 2, 0)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr_broken.zarr"]


# --------------------------------------------------------------------------- foreign zarr
def test_foreign_zarr_reads_absent_chunks_as_fill_value_and_counts_them(tmp_path, rng):
    import zarr

    data = rng.random((16, 16, 8)).astype("f4")
    group = zarr.open_group(str(tmp_path / "f.zarr"), mode="w", zarr_format=3)
    arr = group.create_array("0", shape=data.shape, dtype="f4", chunks=(8, 8, 8), fill_value=-1)
    arr[...] = data
    _chunk_file(tmp_path / "f.zarr", (1, 0, 0)).unlink()
    with pytest.warns(DataWarning) as record:
        vol = read_volume(tmp_path / "f.zarr")
    assert [str(w.message) for w in record] == [
        f"{tmp_path / 'f.zarr'}: 1 of 4 chunks are absent and read as the fill value -1.0"
    ]
    assert vol.metadata["absent_chunks"] == 1 and vol.metadata["chunks_total"] == 4
    expected = data.copy()
    expected[8:, :8] = -1.0
    np.testing.assert_array_equal(vol.numpy(), expected)
    # written again by boneframe: every chunk stored, the count not carried over
    copy = write_volume(vol, tmp_path / "copy.zarr")
    back = read_volume(copy)
    assert "absent_chunks" not in back.metadata
    np.testing.assert_array_equal(back.numpy(), expected)


def test_foreign_plain_array_warns_only_when_chunks_are_absent(tmp_path, rng, recwarn):
    import zarr

    data = rng.random((8, 8, 8))
    arr = zarr.create_array(str(tmp_path / "p.zarr"), shape=data.shape, dtype="f8", chunks=(4,) * 3)
    arr[...] = data
    vol = read_volume(tmp_path / "p.zarr")
    assert vol.metadata == {"absent_chunks": 0, "chunks_total": 8}
    plain_chunk = tmp_path / "p.zarr" / "c" / "0" / "0" / "1"
    plain_chunk.unlink()
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]
    with pytest.warns(DataWarning, match="1 of 8 chunks are absent .* fill value 0.0"):
        vol = read_volume(tmp_path / "p.zarr")
    assert vol.numpy()[:4, :4, 4:].sum() == 0
