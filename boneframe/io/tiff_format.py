"""Multi-page TIFF stacks (tifffile); the voxel size travels in the metadata.

boneframe writes tifffile's JSON "shaped" description (any dtype, exact voxel
size and origin) plus resolution tags; ImageJ/Fiji stacks (``spacing`` and
resolution in µm or mm) are read too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.geometry import geometry_from_json, geometry_to_json
from boneframe.volume import Volume

_UNIT_TO_UM = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "mm": 1000.0, "nm": 1e-3}


def _imagej_voxel_size(tif: Any) -> tuple[float, float, float] | None:
    ij = tif.imagej_metadata or {}
    unit = _UNIT_TO_UM.get(str(ij.get("unit", "")).strip().lower())
    if unit is None or "spacing" not in ij:
        return None
    page = tif.pages[0]
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return None
    dx = xres[1] / xres[0]
    dy = yres[1] / yres[0]
    return (float(ij["spacing"]) * unit, dy * unit, dx * unit)


class TiffFormat(VolumeFormat):
    """TIFF stack (tifffile); voxel size in the description or ImageJ tags"""

    name: ClassVar[str] = "tiff"
    extensions: ClassVar[tuple[str, ...]] = (".tif", ".tiff")

    def read(self, path: Path) -> Volume:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            if data.ndim != 3:
                raise VolumeIOError(f"{path} holds a {data.ndim}D image, not a 3D stack")
            geometry: dict[str, Any] = {}
            for meta in tif.shaped_metadata or ():
                if isinstance(meta, dict) and "boneframe" in meta:
                    geometry = geometry_from_json(meta["boneframe"])
            if not geometry and tif.is_imagej:
                vs = _imagej_voxel_size(tif)
                geometry = {} if vs is None else {"voxel_size": vs}
        return Volume(data, **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        import tifffile

        data = volume.numpy()
        kwargs: dict[str, Any] = {}
        if volume.voxel_size is not None:
            _, dy, dx = volume.voxel_size
            kwargs = {"resolution": (1.0 / dx, 1.0 / dy), "resolutionunit": "MICROMETER"}
        tifffile.imwrite(
            path,
            np.ascontiguousarray(data),
            metadata={"axes": "ZYX", "boneframe": geometry_to_json(volume)},
            photometric="minisblack",  # a last axis of 3 or 4 voxels is not RGB(A)
            **kwargs,
        )
