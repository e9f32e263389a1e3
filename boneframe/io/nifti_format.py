"""NIfTI-1 volumes (nibabel); geometry from the header affine (RAS mm -> LPS µm)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, cast

import numpy as np

from boneframe.interfaces import VolumeFormat
from boneframe.volume import Volume

# NIfTI world coordinates are RAS; boneframe (like ITK) uses LPS
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_UNIT_TO_UM = {"meter": 1e6, "mm": 1000.0, "micron": 1.0}


class NiftiFormat(VolumeFormat):
    """NIfTI-1 (.nii, .nii.gz) via nibabel; voxel size from the header"""

    name: ClassVar[str] = "nifti"
    extensions: ClassVar[tuple[str, ...]] = (".nii", ".nii.gz")

    def read(self, path: Path) -> Volume:
        import nibabel

        # .nii and .nii.gz load as Nifti1Image (Nifti2Image is a subclass)
        img = cast(nibabel.Nifti1Image, nibabel.load(str(path)))
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        space_unit = img.header.get_xyzt_units()[0]
        scale = _UNIT_TO_UM.get(space_unit, 1000.0)  # "unknown" means mm by convention
        affine = np.asarray(img.affine, dtype=float)
        lin = _RAS_TO_LPS @ affine[:3, :3] * scale
        spacing = np.linalg.norm(lin, axis=0)
        direction = lin / np.where(spacing > 0, spacing, 1.0)
        origin = _RAS_TO_LPS @ affine[:3, 3] * scale
        # the header stores float32 mm: round off the float32 noise (0.1 nm)
        spacing, origin = np.round(spacing, 4), np.round(origin, 4)
        return Volume(data, voxel_size=tuple(spacing), origin=tuple(origin), direction=direction)

    def write(self, volume: Volume, path: Path) -> None:
        import nibabel

        data = volume.numpy()
        if data.dtype == bool:
            data = data.astype(np.uint8)
        vs = np.asarray(volume.voxel_size or (1000.0, 1000.0, 1000.0)) / 1000.0
        affine = np.eye(4)
        affine[:3, :3] = _RAS_TO_LPS @ volume.direction * vs
        affine[:3, 3] = _RAS_TO_LPS @ np.asarray(volume.origin) / 1000.0
        img = nibabel.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm")
        nibabel.save(img, str(path))
