"""Zarr v3 volumes with OME-Zarr (0.5) multiscales metadata; read lazily as dask arrays.

Chunks written by boneframe carry checksums, verified on read (see
:mod:`boneframe.io.zarr_integrity`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from boneframe.interfaces import VolumeFormat
from boneframe.io.geometry import geometry_from_json, geometry_to_json
from boneframe.io.zarr_integrity import (
    ABSENT_KEYS,
    chunk_record,
    report_absent_chunks,
    store_dask,
    store_numpy,
    verified_array,
)
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
    holds_metadata: ClassVar[bool] = True

    def read(self, path: Path) -> Volume:
        """Open lazily; chunks that boneframe wrote are verified as they are loaded.

        A zarr written by boneframe (checksums in ``attrs["boneframe"]["chunks"]``)
        refuses a missing, undecodable or altered chunk when it is computed
        (:class:`~boneframe.errors.VolumeIOError` naming the chunk). Any other zarr
        reads absent chunks as its fill value, as the zarr spec says; they are
        counted now (``metadata["absent_chunks"]``, ``metadata["chunks_total"]``)
        and reported with a :class:`~boneframe.io.zarr_integrity.DataWarning`.
        """
        import dask.array as da
        import zarr

        # absolute: the graph's tasks may run where the working directory differs
        node = zarr.open(str(Path(path).absolute()), mode="r")
        if isinstance(node, zarr.Array):
            metadata: dict[str, Any] = {}
            report_absent_chunks(node, str(path), metadata)
            return Volume(da.from_zarr(node), metadata=metadata)
        attrs: dict[str, Any] = dict(node.attrs)
        ome = attrs.get("ome", attrs)
        geometry: dict[str, Any] = {}
        component = "0"
        if "multiscales" in ome:
            component, geometry = _geometry_from_ome(ome["multiscales"])
        ours = attrs.get("boneframe", {})
        if ours:  # exact geometry (direction included) when we wrote it
            geometry = geometry_from_json(ours)
        metadata = dict(ours.get("metadata", {}))
        record = ours.get("chunks")
        if isinstance(record, dict) and record.get("array", component) == component:
            data = verified_array(node[component], str(path), record)
        else:
            array = node[component]
            report_absent_chunks(array, str(path), metadata)
            data = da.from_zarr(array)
        return Volume(data, metadata=metadata, **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        """Write every chunk (fill-valued ones too) and record their checksums.

        A dask array is computed one row of chunks at a time, each task writing
        one chunk and returning its CRC32 (memory bounded by a row of chunks).
        The attributes are written last; the caller renames the directory into
        place atomically.
        """
        import dask.array as da
        import zarr

        group = zarr.open_group(str(Path(path).absolute()), mode="w", zarr_format=3)
        data = volume.data
        # dask types chunk sizes as possibly NaN (unknown): zarr refuses those anyway
        chunks = (
            cast(tuple[int, ...], data.chunksize)
            if isinstance(data, da.Array)
            else default_chunks(data.shape)
        )
        arr = group.create_array(
            "0",
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            config={"write_empty_chunks": True},  # an absent chunk is then always a loss
        )
        if isinstance(data, da.Array):
            crcs = store_dask(data, arr)
        else:
            crcs = store_numpy(np.asarray(data), arr)
        metadata = {k: v for k, v in volume.metadata.items() if k not in ABSENT_KEYS}
        group.attrs.update(
            {
                "ome": _ome_metadata(volume),
                "boneframe": {
                    **geometry_to_json(volume),
                    "metadata": _jsonable(metadata),
                    "chunks": chunk_record("0", arr.shape, tuple(arr.chunks), crcs),
                },
            }
        )


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
