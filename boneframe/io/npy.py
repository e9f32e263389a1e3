"""NumPy ``.npy`` volumes, with geometry in a JSON sidecar ``<stem>.json``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.geometry import GEOMETRY_KEYS, geometry_from_json, geometry_to_json
from boneframe.io.sidecar import PROTOCOL_KEYS, read_sidecar
from boneframe.volume import Volume


class NpyFormat(VolumeFormat):
    """NumPy .npy array; voxel size and origin in the <stem>.json sidecar"""

    name: ClassVar[str] = "npy"
    extensions: ClassVar[tuple[str, ...]] = (".npy",)
    reads_sidecar: ClassVar[bool] = True

    def read(self, path: Path) -> Volume:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise VolumeIOError("not a NumPy .npy file (bad magic number)")
        data = np.load(path, mmap_mode="r", allow_pickle=False)
        meta = read_sidecar(path) or {}
        geometry = geometry_from_json(meta)
        extra = {k: v for k, v in meta.items() if k not in GEOMETRY_KEYS + PROTOCOL_KEYS}
        return Volume(np.asarray(data), metadata=extra, **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, volume.numpy(), allow_pickle=False)

    def sidecar(self, volume: Volume) -> dict | None:
        return geometry_to_json(volume)
