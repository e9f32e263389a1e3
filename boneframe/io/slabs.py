"""Lazy volumes assembled from slabs of whole slices (raw scanner files, DICOM series).

Each slab is one dask task that opens the file(s) itself, so the task graph holds
only paths and offsets: it pickles small for a distributed scheduler and never
keeps a file handle or a memory map open between tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from boneframe.errors import VolumeIOError

#: Upper bounds of one slab: slices and bytes (a few slabs fit in memory at once).
MAX_SLAB_SLICES = 64
MAX_SLAB_BYTES = 64 * 2**20


def slab_length(slice_bytes: int, n_slices: int) -> int:
    """Slices per slab: even (so slabs align with the decimation p = 2) and bounded.

    Parameters
    ----------
    slice_bytes : int
        Bytes of one slice.
    n_slices : int
        Slices in the volume.
    """
    n = min(MAX_SLAB_SLICES, max(1, MAX_SLAB_BYTES // max(1, slice_bytes)))
    if n > 1:
        n -= n % 2
    return max(1, min(n, n_slices))


def _read_raw_slab(
    path: str,
    offset: int,
    shape: tuple[int, int, int],
    file_dtype: str,
    convert: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    count = int(np.prod(shape))
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = np.fromfile(fh, dtype=np.dtype(file_dtype), count=count)
    if raw.size != count:
        raise VolumeIOError(f"{path}: file ends inside the voxel data (truncated)")
    out = raw.reshape(shape)
    return convert(out) if convert is not None else out


def raw_volume(
    path: str | Path,
    offset: int,
    shape: Sequence[int],
    file_dtype: str | np.dtype,
    *,
    dtype: DTypeLike | None = None,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Any:
    """A dask array over raw voxels stored slice after slice (C order) in a file.

    Parameters
    ----------
    path : path-like
        The file.
    offset : int
        Byte offset of voxel ``(0, 0, 0)``.
    shape : 3 ints
        Array shape ``(slices, rows, columns)``; the last axis varies fastest on disk.
    file_dtype : dtype
        Type of the stored values, with its byte order (e.g. ``"<i2"``).
    dtype : dtype, optional
        Type after ``convert`` (defaults to ``file_dtype`` in native byte order).
    convert : callable, optional
        Applied to every slab read (e.g. a decoding of non-IEEE floats); must be
        a pure function of the values, picklable for distributed schedulers.

    Raises
    ------
    VolumeIOError
        When the file is shorter than ``offset`` plus the voxel data.
    """
    import dask.array as da
    from dask import delayed

    shape = tuple(int(s) for s in shape)
    file_dtype = np.dtype(file_dtype)
    out_dtype = np.dtype(dtype) if dtype is not None else file_dtype.newbyteorder("=")
    slice_bytes = shape[1] * shape[2] * file_dtype.itemsize
    need = offset + shape[0] * slice_bytes
    have = Path(path).stat().st_size
    if have < need:
        raise VolumeIOError(
            f"truncated: the header announces {shape[0] * slice_bytes} bytes of voxel data "
            f"from byte {offset}, the file has {have} bytes"
        )
    step = slab_length(slice_bytes, shape[0])
    read = delayed(_read_raw_slab, pure=True)
    slabs = []
    for z0 in range(0, shape[0], step):
        n = min(step, shape[0] - z0)
        task = read(
            str(path), offset + z0 * slice_bytes, (n, shape[1], shape[2]), file_dtype.str, convert
        )
        slabs.append(da.from_delayed(task, shape=(n, shape[1], shape[2]), dtype=out_dtype))
    return da.concatenate(slabs, axis=0)


def stacked_volume(
    groups: Sequence[Any],
    read_group: Callable[[Any], np.ndarray],
    slice_shape: tuple[int, int],
    counts: Sequence[int],
    dtype: str | np.dtype,
) -> Any:
    """A dask array whose slab ``k`` is ``read_group(groups[k])`` (``counts[k]`` slices).

    Used for one-file-per-slice formats: a group is the list of files of one slab.
    """
    import dask.array as da
    from dask import delayed

    read = delayed(read_group, pure=True)
    slabs = [
        da.from_delayed(read(g), shape=(int(n), *slice_shape), dtype=np.dtype(dtype))
        for g, n in zip(groups, counts, strict=True)
    ]
    return da.concatenate(slabs, axis=0)
