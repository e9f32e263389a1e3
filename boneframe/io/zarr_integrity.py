"""Chunk checksums of the zarr volumes boneframe writes: recorded on write, verified on read.

A zarr store that lost a chunk file reads it, by the zarr spec, as the fill
value: a truncated copy or a half-synced folder would then give wrong numbers
without a word. So boneframe records in the group's attributes
(``attrs["boneframe"]["chunks"]``) what it wrote::

    {"array": "0", "shape": [...], "chunk_shape": [...], "grid": [...],
     "count": 27, "checksum": "crc32",
     "crc32": {"0.0.0": 2765313717, "0.0.1": ..., ...}}

``crc32`` holds, per chunk index ``"i.j.k"``, ``zlib.crc32`` of the chunk's
values in C order, little-endian (the part of an edge chunk inside the array),
computed in the task that writes the chunk. On read, each chunk of the lazy
dask array is loaded by :func:`_read_chunk`, which refuses a chunk whose key is
absent from the store, one that cannot be decoded and one whose checksum
differs, naming the volume and the chunk (:class:`~boneframe.errors.VolumeIOError`,
a user error). Every chunk is written, fill-valued ones included
(``write_empty_chunks``), so an absent key is always a loss.

A zarr written by another tool (no checksums) keeps the zarr semantics: absent
chunks read as the fill value; they are counted when the volume is opened
(one listing of the store) and reported (:func:`report_absent_chunks`).
"""

from __future__ import annotations

import uuid
import warnings
import zlib
from typing import Any

import numpy as np

from boneframe.errors import DataWarning, VolumeIOError

#: The checksum recorded per chunk.
CHECKSUM = "crc32"

#: Metadata keys set on a volume read from a zarr without checksums.
ABSENT_KEYS = ("absent_chunks", "chunks_total")


def chunk_name(index: tuple[int, ...]) -> str:
    """The key of a chunk index in the recorded checksums: ``(1, 0, 2)`` -> ``"1.0.2"``."""
    return ".".join(str(int(i)) for i in index)


def _little_endian(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def chunk_crc(block: np.ndarray) -> int:
    """CRC32 of a chunk's values in C order, little-endian (one pass, no copy when
    the block is already contiguous little-endian)."""
    values = np.ascontiguousarray(block, dtype=_little_endian(block.dtype))
    return zlib.crc32(values.data) & 0xFFFFFFFF


def _grid(shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-(-int(n) // int(c)) for n, c in zip(shape, chunk_shape, strict=True))


def chunk_record(
    component: str, shape: tuple[int, ...], chunk_shape: tuple[int, ...], crcs: dict[str, int]
) -> dict[str, Any]:
    """The ``attrs["boneframe"]["chunks"]`` entry for an array written with these checksums."""
    grid = _grid(shape, chunk_shape)
    return {
        "array": component,
        "shape": [int(n) for n in shape],
        "chunk_shape": [int(c) for c in chunk_shape],
        "grid": list(grid),
        "count": int(np.prod(grid)),
        "checksum": CHECKSUM,
        CHECKSUM: {k: int(crcs[k]) for k in sorted(crcs, key=_index_of)},
    }


def _index_of(name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in name.split("."))


# --------------------------------------------------------------------------- write
def store_numpy(data: np.ndarray, target: Any) -> dict[str, int]:
    """Write an in-memory array to ``target`` one row of chunks (along axis 0) at a
    time; return the checksum of every chunk, computed from the values written."""
    chunk_shape = tuple(int(c) for c in target.chunks)
    grid = _grid(data.shape, chunk_shape)
    crcs: dict[str, int] = {}
    for row in range(grid[0]):
        start = row * chunk_shape[0]
        rows = slice(start, min(start + chunk_shape[0], data.shape[0]))
        slab = np.asarray(data[rows], dtype=_little_endian(target.dtype))
        target[rows] = slab
        for rest in np.ndindex(*grid[1:]):
            region = tuple(
                slice(i * c, (i + 1) * c) for i, c in zip(rest, chunk_shape[1:], strict=True)
            )
            crcs[chunk_name((row, *rest))] = chunk_crc(slab[(slice(None), *region)])
    return crcs


def _store_block(
    block: np.ndarray,
    target: Any = None,
    row_start: int = 0,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Write one chunk to ``target`` and return its checksum as a ``(1, ..., 1)`` array."""
    if block_info is None:  # never called on meta (map_blocks gets meta=)
        raise RuntimeError("_store_block needs block_info")
    bounds = block_info[0]["array-location"]
    values = np.ascontiguousarray(block, dtype=_little_endian(target.dtype))
    region = (slice(row_start + bounds[0][0], row_start + bounds[0][1]),) + tuple(
        slice(lo, hi) for lo, hi in bounds[1:]
    )
    target[region] = values
    out = np.empty((1,) * block.ndim, dtype=np.uint32)
    out.flat[0] = chunk_crc(values)
    return out


def store_dask(data: Any, target: Any) -> dict[str, int]:
    """Compute and store a dask array one row of chunks (along axis 0) at a time;
    return the checksum of every chunk, computed in the task that writes it.

    Storing the whole graph at once lets dask's scheduler run ahead and hold
    far more than a few chunks when blocks need their neighbours (halos of
    ``map_overlap``); slab by slab, memory stays bounded by a row of chunks and
    its halo whatever the volume's size (halo chunks are computed again for the
    next slab, cheap when they are read from disk). Dask chunks that do not
    match the zarr chunks are rechunked to them first, so that each task writes
    (and checksums) whole zarr chunks and no two tasks write the same one.
    """
    import dask
    import dask.array as da
    from dask.array.core import normalize_chunks

    chunk_shape = tuple(int(c) for c in target.chunks)
    regular = normalize_chunks(chunk_shape, data.shape)
    if tuple(data.chunks) != tuple(regular):
        data = data.rechunk(regular)
    crcs: dict[str, int] = {}
    start = 0
    for row, size in enumerate(data.chunks[0]):
        slab = data[(slice(start, start + size),) + (slice(None),) * (data.ndim - 1)]
        sums = da.map_blocks(
            _store_block,
            slab,
            target=target,
            row_start=start,
            chunks=tuple((1,) * len(c) for c in slab.chunks),
            dtype=np.uint32,
            meta=np.empty((0,) * data.ndim, dtype=np.uint32),
            name=f"zarr-store-{uuid.uuid4().hex}",
        )
        (values,) = dask.compute(sums)
        for rest in np.ndindex(*values.shape[1:]):
            crcs[chunk_name((row, *rest))] = int(values[(0, *rest)])
        start += size
    return crcs


# --------------------------------------------------------------------------- read
class VerifiedChunks:
    """What :func:`dask.array.from_array` slices: a zarr array, its path and the
    recorded checksums; each slice is one whole chunk, loaded by :func:`_read_chunk`."""

    def __init__(self, array: Any, path: str, record: dict[str, Any]) -> None:
        self.array = array
        self.path = path
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunk_shape = tuple(int(c) for c in array.chunks)
        self.count = int(record["count"])
        self.crcs: dict[str, int] = {str(k): int(v) for k, v in record[CHECKSUM].items()}

    def exists(self, index: tuple[int, ...]) -> bool:
        """True when the chunk's key is in the store (a stat for a local store)."""
        from zarr.core.sync import sync
        from zarr.storage import LocalStore

        key = self.array.metadata.encode_chunk_key(index)
        prefix = self.array.path
        full = f"{prefix}/{key}" if prefix else key
        store = self.array.store_path.store
        if isinstance(store, LocalStore):
            return (store.root / full).is_file()
        return bool(sync(store.exists(full)))


def _read_chunk(source: VerifiedChunks, region: tuple[slice, ...]) -> np.ndarray:
    """Load one chunk and verify it: present, decodable, same checksum as written.

    Raises
    ------
    VolumeIOError
        Naming the volume and the chunk index.
    """
    index = tuple(int(s.start or 0) // c for s, c in zip(region, source.chunk_shape, strict=True))
    where = f"{source.path}: chunk {index}"
    name = chunk_name(index)
    if name not in source.crcs:
        raise VolumeIOError(f"{where} has no recorded checksum (the attributes are damaged)")
    if not source.exists(index):
        raise VolumeIOError(
            f"{where} is missing (the volume was written with {source.count} chunks)"
        )
    try:
        values = np.asarray(source.array[region])
    except MemoryError:
        raise
    except Exception as exc:  # codecs raise anything on garbage bytes
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VolumeIOError(f"{where} is corrupt: it cannot be decoded ({msg})") from exc
    crc = chunk_crc(values)
    if crc != source.crcs[name]:
        raise VolumeIOError(
            f"{where} is corrupt: its CRC32 is {crc:08x}, {source.crcs[name]:08x} when written"
        )
    return values


def check_record(array: Any, record: dict[str, Any]) -> None:
    """Refuse attributes that do not describe ``array`` (a damaged or foreign record)."""
    chunk_shape = [int(c) for c in array.chunks]
    shape = [int(n) for n in array.shape]
    if (
        record.get("checksum") != CHECKSUM
        or [int(c) for c in record.get("chunk_shape", [])] != chunk_shape
        or [int(n) for n in record.get("shape", [])] != shape
        or int(record.get("count", -1)) != int(np.prod(_grid(tuple(shape), tuple(chunk_shape))))
        or not isinstance(record.get(CHECKSUM), dict)
    ):
        # read_volume names the path: "cannot read PATH: ..."
        raise VolumeIOError(
            "the recorded chunks (attrs boneframe.chunks) do not match array "
            f"{record.get('array', '?')!r} of shape {tuple(shape)}, chunks {tuple(chunk_shape)}"
        )


def verified_array(array: Any, path: str, record: dict[str, Any]) -> Any:
    """A dask array over ``array``'s chunks whose loader verifies each chunk."""
    import dask.array as da
    from dask.base import tokenize

    check_record(array, record)
    source = VerifiedChunks(array, path, record)
    token = tokenize(path, record.get("array"), source.shape, source.chunk_shape, source.crcs)
    return da.from_array(
        source,
        chunks=source.chunk_shape,
        name=f"zarr-verified-{token}",
        getitem=_read_chunk,
        meta=np.empty((0,) * source.ndim, dtype=source.dtype),
        asarray=False,
        lock=False,
        inline_array=False,
    )


# --------------------------------------------------------------------------- foreign
def count_absent_chunks(array: Any) -> tuple[int, int]:
    """``(absent, total)`` chunks of a zarr array, from one listing of its store keys.

    With sharding, the chunks of absent shards are counted; chunks absent inside
    a stored shard are not.
    """
    from zarr.core.sync import sync

    shape = tuple(int(n) for n in array.shape)
    chunk_shape = tuple(int(c) for c in array.chunks)
    shards = getattr(array, "shards", None)
    unit = tuple(int(s) for s in shards) if shards else chunk_shape
    prefix = f"{array.path}/" if array.path else ""
    store = array.store_path.store

    async def listing() -> set[str]:
        return {key[len(prefix) :] async for key in store.list_prefix(prefix)}

    stored = sync(listing())
    absent = 0
    for index in np.ndindex(*_grid(shape, unit)):
        if array.metadata.encode_chunk_key(index) not in stored:
            extent = [min(u, n - i * u) for i, u, n in zip(index, unit, shape, strict=True)]
            absent += int(np.prod(_grid(tuple(extent), chunk_shape)))
    return absent, int(np.prod(_grid(shape, chunk_shape)))


def report_absent_chunks(array: Any, path: str, metadata: dict[str, Any]) -> None:
    """Count the absent chunks of a zarr without checksums: set ``metadata``'s
    ``absent_chunks`` and ``chunks_total``; warn (:class:`DataWarning`) when some are."""
    absent, total = count_absent_chunks(array)
    metadata["absent_chunks"] = absent
    metadata["chunks_total"] = total
    if absent:
        fill = array.fill_value
        fill = fill.item() if isinstance(fill, np.generic) else fill
        warnings.warn(
            f"{path}: {absent} of {total} chunks are absent and read as the fill value {fill}",
            category=DataWarning,
            stacklevel=3,
        )
