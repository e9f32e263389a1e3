"""NumPy ``.npy`` volumes, with geometry in a JSON sidecar ``<stem>.json``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.geometry import geometry_from_json, geometry_to_json
from boneframe.io.sidecar import read_json, sidecar_path
from boneframe.volume import Volume


class NpyFormat(VolumeFormat):
    """NumPy .npy array; voxel size and origin in the <stem>.json sidecar"""

    name: ClassVar[str] = "npy"
    extensions: ClassVar[tuple[str, ...]] = (".npy",)

    def read(self, path: Path) -> Volume:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise VolumeIOError("not a NumPy .npy file (bad magic number)")
        data = np.load(path, mmap_mode="r", allow_pickle=False)
        meta: dict = {}
        side = sidecar_path(path)
        if side.is_file():
            meta = read_json(side)
        return Volume(np.asarray(data), **geometry_from_json(meta))

    def write(self, volume: Volume, path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, volume.numpy(), allow_pickle=False)

    def sidecar(self, volume: Volume) -> dict | None:
        return geometry_to_json(volume)
