r"""Large synthetic phantoms written to zarr chunk by chunk.

:func:`boneframe.phantom.trabecular_occupancy` draws its structure from global
FFT random fields, which cannot be built chunk by chunk. They are periodic over
their shape, though (the band-pass filter acts on the discrete spectrum and the
gradients wrap around), so one cubic *tile* of ``tile³`` voxels joins seamlessly
with copies of itself. :func:`write_large_phantom` builds one such tile and
assembles a volume of any size by tiling it: **the structure repeats with period
``tile`` voxels along every axis** (BV/TV, thickness and connectivity per tile
are those of the tile; the number of distinct trabeculae does not grow with the
size). The micro-CT noise is drawn per chunk from a seed derived from ``seed``
and the chunk's index, so it does not repeat, and the same arguments give the
same bytes.

Only the tile (``tile³`` float32, e.g. 64 MiB for 256³) and a few chunks are in
memory at a time; the zarr writer streams the chunks with ``dask.array.store``.
:func:`write_large_acquisition` simulates the HR-pQCT scan of such a volume,
``g = U(h * (f + c)) + n``, with :class:`boneframe.operators.ForwardModel`, the
operator of the in-memory phantom run chunk by chunk (zeros outside the volume,
the ``"same"`` convention: unlike
:func:`boneframe.phantom.simulate_pair`, which simulates a larger domain and
crops it, the low-resolution voxels within the kernel radius of the border see
zeros beyond it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.operators.geometry import per_axis
from boneframe.volume import Volume, as_triple

#: Offsets mixed into the noise seeds, so the HR and LR noise are independent.
_HR_STREAM = 0
_LR_STREAM = 1


def _shape3(size: int | Sequence[int], what: str) -> tuple[int, int, int]:
    shp = per_axis(size)
    if len(shp) != 3 or min(shp) < 1:
        raise InputError(f"{what} must be one or three positive sizes, got {size!r}")
    return shp


def periodic_tile(
    tile: int = 256,
    seed: int = 0,
    *,
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    plate_fraction: float = 0.5,
    bone: float = 1.0,
    marrow: float = 0.15,
) -> np.ndarray:
    """A noise-free micro-CT tile that is periodic over its shape.

    Parameters
    ----------
    tile : int
        Edge of the cubic tile in voxels (at least 8).
    seed : int
        Seed of the structure (:func:`boneframe.phantom.trabecular_occupancy`).
    bv_tv, thickness, plate_fraction : float
        Structure parameters (see :func:`~boneframe.phantom.trabecular_occupancy`).
    bone, marrow : float
        Grey levels of bone and marrow (see :func:`boneframe.phantom.micro_ct`).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(tile, tile, tile)``; ``np.tile`` of it has no seams.
    """
    from boneframe.phantom import micro_ct, trabecular_occupancy

    occ = trabecular_occupancy(
        int(tile), seed, bv_tv=bv_tv, thickness=thickness, plate_fraction=plate_fraction
    )
    return micro_ct(occ, bone=bone, marrow=marrow)


def _noise(shape: tuple[int, ...], sigma: float, seed: int, stream: int, index: Any) -> np.ndarray:
    """Gaussian noise of one chunk, seeded by ``(seed, stream, *chunk index)``."""
    rng = np.random.default_rng([int(seed), stream, *(int(i) for i in index)])
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(sigma)
    return noise


def _tiled_chunk(
    tile: np.ndarray,
    start: tuple[int, ...],
    shape: tuple[int, ...],
    index: tuple[int, ...],
    noise: float,
    seed: int,
) -> np.ndarray:
    """One chunk of the tiled volume: the tile's voxels, wrapped, plus its noise."""
    idx = [np.arange(s, s + n) % t for s, n, t in zip(start, shape, tile.shape, strict=True)]
    chunk = tile[np.ix_(*idx)]
    if noise > 0:
        chunk += _noise(chunk.shape, noise, seed, _HR_STREAM, index)
    return chunk


def tiled_phantom(
    size: int | Sequence[int],
    seed: int = 0,
    *,
    chunk: int | Sequence[int] = 128,
    tile: int = 256,
    noise: float = 0.01,
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    plate_fraction: float = 0.5,
    bone: float = 1.0,
    marrow: float = 0.15,
) -> Any:
    """A lazy dask array of the tiled micro-CT phantom (see the module's notes).

    Parameters
    ----------
    size : int or 3 ints
        Shape of the volume.
    seed : int
        Seed of the tile's structure and of the per-chunk noise.
    chunk : int or 3 ints
        Chunk shape (the noise of a chunk depends on its index, so on the chunking).
    tile : int
        Period of the structure in voxels.
    noise : float
        Standard deviation of the micro-CT noise (grey units; 0 for none).
    bv_tv, thickness, plate_fraction, bone, marrow : float
        As for :func:`periodic_tile`.

    Returns
    -------
    dask.array.Array
        float32 of shape ``size`` and chunks ``chunk``; the tile is computed once,
        in the graph, when the array is.
    """
    import dask
    import dask.array as da

    shape = _shape3(size, "phantom size")
    chunks = _shape3(chunk, "chunk shape")
    if int(tile) < 8:
        raise InputError(f"the tile must be at least 8 voxels, got {tile}")
    if noise < 0:
        raise InputError(f"noise must be non-negative, got {noise}")
    tile_d = dask.delayed(periodic_tile, pure=True)(
        int(tile),
        seed,
        bv_tv=bv_tv,
        thickness=thickness,
        plate_fraction=plate_fraction,
        bone=bone,
        marrow=marrow,
    )
    normalized = da.core.normalize_chunks(
        tuple(min(c, n) for c, n in zip(chunks, shape, strict=True)), shape
    )
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in normalized]
    grid = tuple(len(c) for c in normalized)

    def build(index: tuple[int, ...]) -> Any:
        start = tuple(int(starts[a][i]) for a, i in enumerate(index))
        cshape = tuple(int(normalized[a][i]) for a, i in enumerate(index))
        block = dask.delayed(_tiled_chunk, pure=True)(
            tile_d, start, cshape, index, float(noise), int(seed)
        )
        return da.from_delayed(block, cshape, dtype=np.float32)

    def nest(prefix: tuple[int, ...]) -> Any:
        if len(prefix) == 3:
            return build(prefix)
        return [nest((*prefix, i)) for i in range(grid[len(prefix)])]

    return da.block(nest(()))


def write_large_phantom(
    path: str | os.PathLike[str],
    size: int | Sequence[int],
    seed: int = 0,
    *,
    chunk: int | Sequence[int] = 128,
    tile: int = 256,
    voxel_size: float | Sequence[float] = 41.0,
    noise: float = 0.01,
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    plate_fraction: float = 0.5,
    bone: float = 1.0,
    marrow: float = 0.15,
    overwrite: bool = False,
) -> Volume:
    """Write a large micro-CT phantom to zarr chunk by chunk; return it, read lazily.

    The structure is a periodic tile repeated with period ``tile`` voxels
    (see the module's notes); noise is drawn per chunk, reproducibly.

    Parameters
    ----------
    path : path-like
        Target ``.zarr`` directory (written atomically, as every boneframe output).
    size : int or 3 ints
        Shape of the volume (e.g. 1024 for 1024³).
    seed : int
        Seed of the structure and the noise: the same arguments give the same bytes.
    chunk : int or 3 ints
        Chunk shape of the zarr array (even sizes keep chunks aligned with ``p = 2``).
    tile : int
        Period of the structure in voxels (the tile takes ``4 tile³`` bytes).
    voxel_size : float or 3 floats
        Voxel size in µm (default 41, the paper's micro-CT spacing).
    noise : float
        Standard deviation of the micro-CT noise (0 for none).
    bv_tv, thickness, plate_fraction, bone, marrow : float
        Structure and grey levels (see :func:`boneframe.phantom.simulate_pair`).
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Volume
        The written volume, read back lazily (dask over the zarr chunks).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     v = write_large_phantom(pathlib.Path(d) / "f.zarr", 40, chunk=16, tile=20)
    ...     v.shape, v.data.chunksize, v.voxel_size
    ((40, 40, 40), (16, 16, 16), (41.0, 41.0, 41.0))
    """
    from boneframe.io import read_volume, write_volume

    vs = as_triple(voxel_size, "voxel size")
    data = tiled_phantom(
        size,
        seed,
        chunk=chunk,
        tile=tile,
        noise=noise,
        bv_tv=bv_tv,
        thickness=thickness,
        plate_fraction=plate_fraction,
        bone=bone,
        marrow=marrow,
    )
    params = {
        "phantom": "tiled",
        "size": list(data.shape),
        "seed": int(seed),
        "tile": int(tile),
        "chunk": list(data.chunksize),
        "noise": float(noise),
        "bv_tv_target": float(bv_tv),
        "thickness": float(thickness),
        "plate_fraction": float(plate_fraction),
        "bone": float(bone),
        "marrow": float(marrow),
    }
    write_volume(Volume(data, voxel_size=vs, metadata=params), path, overwrite=overwrite)
    return read_volume(path)


def _lr_noise(
    block: np.ndarray, sigma: float, seed: int, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    out = np.asarray(block, dtype=np.float32).copy()
    if sigma > 0:
        index = block_info[0]["chunk-location"] if block_info else (0, 0, 0)
        out += _noise(out.shape, sigma, seed, _LR_STREAM, index)
    return out


def write_large_acquisition(
    hr: Volume | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    kernel: np.ndarray | None = None,
    offset: float = 0.0,
    noise: float = 0.0,
    p: int | Sequence[int] = 2,
    seed: int = 0,
    overwrite: bool = False,
) -> Volume:
    """Simulate the HR-pQCT scan ``g = U(h * (f + c)) + n`` of a large volume, to zarr.

    Parameters
    ----------
    hr : Volume or path-like
        The high-resolution volume ``f`` (e.g. from :func:`write_large_phantom`),
        or the zarr path to read it from; its chunks should be multiples of ``p``.
    path : path-like
        Target ``.zarr`` directory.
    kernel : numpy.ndarray, optional
        Blurring kernel ``h``; default the phantom's anisotropic, off-centre
        Gaussian (:data:`boneframe.phantom.DEFAULT_SIGMA`, support 9).
    offset : float
        Grey-level shift ``c``.
    noise : float
        Standard deviation of the additive noise ``n``, drawn per chunk from
        ``seed`` and the chunk's index.
    p : int or 3 ints
        Decimation factor.
    seed : int
        Seed of the noise.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Volume
        The low-resolution volume read back lazily, voxel size ``p`` times
        ``hr``'s, its voxel ``i`` on ``hr``'s voxel ``p*i`` (same origin).

    Notes
    -----
    Zeros are assumed outside ``f`` (``"same"`` convolution), so the voxels
    within the kernel radius of the border differ from a scan of a larger
    specimen.
    """
    import dask.array as da

    from boneframe.io import read_volume, write_volume
    from boneframe.operators import ForwardModel, is_dask
    from boneframe.phantom import DEFAULT_SHIFT, DEFAULT_SIGMA, gaussian_kernel

    if noise < 0:
        raise InputError(f"noise must be non-negative, got {noise}")
    f = hr if isinstance(hr, Volume) else read_volume(hr)
    h = gaussian_kernel(DEFAULT_SIGMA, 9, DEFAULT_SHIFT) if kernel is None else kernel
    model = ForwardModel(h, p, f.shape, rechunk=True)
    pp = model.p
    g = model.predict(f.data if is_dask(f.data) else da.asarray(f.data), float(offset))
    g = g.map_blocks(_lr_noise, float(noise), int(seed), dtype=np.float32)
    vs = None
    if f.voxel_size is not None:
        vs = as_triple([v * q for v, q in zip(f.voxel_size, pp, strict=True)], "voxel size")
    meta = {
        "simulated_from": dict(f.metadata),
        "offset": float(offset),
        "noise": float(noise),
        "p": list(pp),
        "seed": int(seed),
        "kernel_shape": list(np.shape(h)),
        "kernel_gain": float(np.sum(h)),
    }
    lr = Volume(g, voxel_size=vs, origin=f.origin, direction=f.direction, metadata=meta)
    write_volume(lr, path, overwrite=overwrite)
    return read_volume(path)
