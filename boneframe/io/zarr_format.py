"""Zarr v3 volumes with OME-Zarr (0.5) multiscales metadata; read lazily as dask arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from boneframe.interfaces import VolumeFormat
from boneframe.io.geometry import geometry_from_json, geometry_to_json
from boneframe.volume import DEFAULT_DIRECTION, Volume

_UNIT_TO_UM = {"micrometer": 1.0, "millimeter": 1000.0, "nanometer": 1e-3, "meter": 1e6}
DEFAULT_CHUNK = 64


def default_chunks(shape: tuple[int, ...], chunk: int = DEFAULT_CHUNK) -> tuple[int, ...]:
    """Chunk shape: ``chunk`` per axis (even, so chunks align with p = 2), capped by the shape."""
    return tuple(min(int(n), chunk) for n in shape)


def _ome_metadata(volume: Volume) -> dict[str, Any]:
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in ("z", "y", "x")]
    transforms: list[dict[str, Any]] = []
    if volume.voxel_size is not None:
        transforms.append({"type": "scale", "scale": list(volume.voxel_size)})
        if np.allclose(volume.direction, DEFAULT_DIRECTION):
            transforms.append({"type": "translation", "translation": list(volume.origin)})
    else:
        transforms.append({"type": "scale", "scale": [1.0, 1.0, 1.0]})
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": "image",
                "axes": axes,
                "datasets": [{"path": "0", "coordinateTransformations": transforms}],
            }
        ],
    }


def _geometry_from_ome(multiscales: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    ms = multiscales[0]
    ds = ms["datasets"][0]
    units = [_UNIT_TO_UM.get(str(a.get("unit", "micrometer")), 1.0) for a in ms.get("axes", [])][
        -3:
    ]
    units = units or [1.0, 1.0, 1.0]
    out: dict[str, Any] = {}
    for t in ds.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            out["voxel_size"] = tuple(
                float(s) * u for s, u in zip(t["scale"][-3:], units, strict=True)
            )
        elif t.get("type") == "translation":
            out["origin"] = tuple(
                float(s) * u for s, u in zip(t["translation"][-3:], units, strict=True)
            )
    return str(ds["path"]), out


class ZarrFormat(VolumeFormat):
    """Zarr v3 (OME-Zarr multiscales carry the voxel size); read lazily"""

    name: ClassVar[str] = "zarr"
    extensions: ClassVar[tuple[str, ...]] = (".zarr",)
    is_directory: ClassVar[bool] = True

    def read(self, path: Path) -> Volume:
        import dask.array as da
        import zarr

        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Array):
            return Volume(da.from_zarr(node))
        attrs: dict[str, Any] = dict(node.attrs)
        ome = attrs.get("ome", attrs)
        geometry: dict[str, Any] = {}
        component = "0"
        if "multiscales" in ome:
            component, geometry = _geometry_from_ome(ome["multiscales"])
        if "boneframe" in attrs:  # exact geometry (direction included) when we wrote it
            geometry = geometry_from_json(attrs["boneframe"])
        metadata = dict(attrs.get("boneframe", {}).get("metadata", {}))
        return Volume(da.from_zarr(node[component]), metadata=metadata, **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        import dask.array as da
        import zarr

        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        data = volume.data
        # dask types chunk sizes as possibly NaN (unknown): zarr refuses those anyway
        chunks = (
            cast(tuple[int, ...], data.chunksize)
            if isinstance(data, da.Array)
            else default_chunks(data.shape)
        )
        arr = group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=chunks)
        if isinstance(data, da.Array):
            _store_by_slabs(data, arr)
        else:
            arr[...] = np.asarray(data)
        group.attrs["ome"] = _ome_metadata(volume)
        group.attrs["boneframe"] = {
            **geometry_to_json(volume),
            "metadata": _jsonable(volume.metadata),
        }


def _store_by_slabs(data: Any, target: Any) -> None:
    """Compute and store a dask array one row of chunks (along axis 0) at a time.

    Storing the whole graph at once lets dask's scheduler run ahead and hold
    far more than a few chunks when blocks need their neighbours (halos of
    ``map_overlap``); slab by slab, memory stays bounded by a row of chunks and
    its halo whatever the volume's size (halo chunks are computed again for the
    next slab, cheap when they are read from disk).
    """
    import dask.array as da

    start = 0
    for size in data.chunks[0]:
        region = (slice(start, start + size),) + (slice(None),) * (data.ndim - 1)
        da.store(data[region], target, regions=region, lock=False)
        start += size


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in meta.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str | int | float | bool | list | dict) or v is None:
            out[str(k)] = v
    return out
