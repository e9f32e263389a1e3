"""Volume ↔ SimpleITK image and rigid transform ↔ ITK transform (and its ``.tfm``
file): the one place where array order (z, y, x) becomes ITK's index order
(x, y, z) and µm become mm.

A numpy array ``a[i0, i1, i2]`` given to ``sitk.GetImageFromArray`` has ITK index
``(i2, i1, i0)``. ITK axis ``k`` is therefore boneframe's array axis ``2 - k``: its
spacing is ``voxel_size[2 - k]`` and its direction column is ``direction[:, 2 - k]``.
The origin is a world point (LPS in both) and is only converted to mm.

SimpleITK is imported inside the functions: it is heavy (≈ 120 MiB resident).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import InputError, VolumeIOError
from boneframe.volume import Triple, Volume, as_triple

UM_PER_MM = 1000.0


def import_sitk() -> Any:
    """Import SimpleITK, or say how to install it."""
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            "registration needs SimpleITK: pip install 'boneframe[register]' "
            "(or pip install SimpleITK)"
        ) from exc
    return sitk


def itk_geometry(
    volume: Volume, start: Sequence[int] = (0, 0, 0)
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """ITK spacing (mm), origin (mm) and row-major direction of a volume.

    Parameters
    ----------
    volume : Volume
        Its voxel size must be known.
    start : 3 ints
        Array index of the sub-block whose geometry is wanted (its voxel
        ``start`` becomes ITK index ``(0, 0, 0)``).
    """
    vs = np.asarray(volume.require_voxel_size())
    origin = np.asarray(volume.origin) + volume.direction @ (np.asarray(start, float) * vs)
    spacing = tuple(float(v) / UM_PER_MM for v in vs[::-1])
    direction = tuple(float(v) for v in volume.direction[:, ::-1].ravel())
    return spacing, tuple(float(v) / UM_PER_MM for v in origin), direction


def to_sitk(
    volume: Volume, array: np.ndarray | None = None, start: Sequence[int] = (0, 0, 0)
) -> Any:
    """A SimpleITK image of ``volume`` (or of ``array``, a sub-block of it at ``start``).

    The pixel type follows the array's dtype (no copy of the values beyond the
    one SimpleITK makes).
    """
    sitk = import_sitk()
    arr = volume.numpy() if array is None else array
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
    spacing, origin, direction = itk_geometry(volume, start)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def from_sitk(image: Any) -> Volume:
    """A :class:`Volume` (µm) from a 3D SimpleITK image (mm)."""
    sitk = import_sitk()
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, got {image.GetDimension()}D")
    data = sitk.GetArrayFromImage(image)
    spacing = np.asarray(image.GetSpacing())[::-1] * UM_PER_MM
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)[:, ::-1]
    origin = np.asarray(image.GetOrigin()) * UM_PER_MM
    return Volume(data, voxel_size=tuple(spacing), origin=tuple(origin), direction=direction)


@dataclass(frozen=True)
class RigidTransform:
    """A rotation about a centre followed by a translation, in world µm.

    Maps a point of the fixed (HR-pQCT) scan to the moving (micro-CT) scan:

    .. math:: x_m = R (x_f - c) + c + t

    as ITK's ``Euler3DTransform`` does (ITK's registration transform maps fixed
    to moving points).

    Parameters
    ----------
    matrix : numpy.ndarray
        3×3 rotation ``R`` (orthonormal, determinant +1).
    center_um : 3 floats
        Centre of rotation ``c`` (µm, world frame).
    translation_um : 3 floats
        Translation ``t`` (µm).
    """

    matrix: np.ndarray
    center_um: Triple = (0.0, 0.0, 0.0)
    translation_um: Triple = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        r = np.asarray(self.matrix, dtype=float)
        if r.shape != (3, 3):
            raise InputError(f"a rotation matrix is 3x3, got shape {r.shape}")
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise InputError(
                "the transform is not a rotation (non-orthonormal matrix or a reflection): "
                "a rigid registration can use only rotations and translations"
            )
        object.__setattr__(self, "matrix", r)
        object.__setattr__(self, "center_um", as_triple(self.center_um, "centre"))
        object.__setattr__(self, "translation_um", as_triple(self.translation_um, "translation"))

    @classmethod
    def from_rotation(
        cls,
        axis: Sequence[float],
        angle_deg: float,
        translation_um: Sequence[float] = (0.0, 0.0, 0.0),
        center_um: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> RigidTransform:
        """Rotation by ``angle_deg`` about ``axis`` (Rodrigues), then translation."""
        a = np.asarray(axis, dtype=float)
        if a.shape != (3,) or np.linalg.norm(a) == 0:
            raise InputError(f"the rotation axis must be a non-zero 3-vector, got {axis!r}")
        a = a / np.linalg.norm(a)
        k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        th = np.deg2rad(angle_deg)
        r = np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * (k @ k)
        return cls(r, as_triple(center_um), as_triple(translation_um))

    @property
    def offset_um(self) -> np.ndarray:
        """``o`` in ``x_m = R x_f + o``."""
        c = np.asarray(self.center_um)
        return c + np.asarray(self.translation_um) - self.matrix @ c

    def apply(self, points_um: np.ndarray) -> np.ndarray:
        """Map fixed points (µm, shape ``(..., 3)``) to moving points."""
        pts = np.asarray(points_um, dtype=float)
        return pts @ self.matrix.T + self.offset_um

    def inverse(self) -> RigidTransform:
        """The transform from moving to fixed points (same centre, mapped)."""
        rt = self.matrix.T
        c_new = self.apply(np.asarray(self.center_um))
        # x_f = R^T (x_m - o) with o = offset; write it about centre c_new
        t_new = -rt @ self.offset_um + rt @ c_new - c_new
        return RigidTransform(rt, tuple(c_new), tuple(t_new))

    @property
    def rotation_angle_deg(self) -> float:
        """Angle of the rotation (degrees, about its own axis)."""
        cos = (np.trace(self.matrix) - 1.0) / 2.0
        return float(np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0))))

    def euler_angles_deg(self) -> Triple:
        """ITK ``Euler3DTransform`` angles (X, Y, Z; rotation ``Rz Rx Ry``), degrees."""
        tx = self.to_sitk()
        return tuple(float(np.rad2deg(v)) for v in tx.GetParameters()[:3])  # type: ignore[return-value]

    def to_sitk(self) -> Any:
        """The same map as a SimpleITK ``Euler3DTransform`` (mm)."""
        sitk = import_sitk()
        tx = sitk.Euler3DTransform()
        tx.SetCenter(tuple(float(v) / UM_PER_MM for v in self.center_um))
        tx.SetMatrix(tuple(float(v) for v in self.matrix.ravel()), 1e-6)
        tx.SetTranslation(tuple(float(v) / UM_PER_MM for v in self.translation_um))
        return tx

    @classmethod
    def from_sitk(cls, transform: Any) -> RigidTransform:
        """From any SimpleITK transform that is rigid (Euler, versor, affine, composite).

        Raises
        ------
        InputError
            When the transform is not linear, or its matrix is not a rotation.
        """
        sitk = import_sitk()
        tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
        if isinstance(tx, sitk.Euler3DTransform | sitk.VersorRigid3DTransform):
            r = np.asarray(tx.GetMatrix(), float).reshape(3, 3)
            c = np.asarray(tx.GetCenter()) * UM_PER_MM
            t = np.asarray(tx.GetTranslation()) * UM_PER_MM
            return cls(r, tuple(c), tuple(t))
        if tx.GetDimension() != 3:
            raise InputError(f"expected a 3D transform, got {tx.GetDimension()}D")
        # any other map: read the affine part off a few points, then check it is affine
        probe = np.vstack([np.zeros(3), np.eye(3)])
        mapped = np.array([tx.TransformPoint(tuple(map(float, p))) for p in probe])
        r = (mapped[1:] - mapped[0]).T
        rng = np.random.default_rng(0)
        test = rng.uniform(-50.0, 50.0, (8, 3))
        got = np.array([tx.TransformPoint(tuple(map(float, p))) for p in test])
        if not np.allclose(got, test @ r.T + mapped[0], atol=1e-9):
            raise InputError(f"{tx.GetName()} is not an affine transform; a rigid one is needed")
        return cls(r, (0.0, 0.0, 0.0), tuple(mapped[0] * UM_PER_MM))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON fields (µm, degrees)."""
        return {
            "kind": "Euler3DTransform (fixed -> moving points)",
            "matrix": self.matrix.tolist(),
            "center_um": list(self.center_um),
            "translation_um": list(self.translation_um),
            "offset_um": self.offset_um.tolist(),
            "rotation_angle_deg": self.rotation_angle_deg,
            "euler_angles_deg": list(self.euler_angles_deg()),
        }


def transform_difference(
    a: RigidTransform, b: RigidTransform, fixed: Volume
) -> tuple[float, float]:
    """How far apart two transforms are on the fixed scan's field of view.

    Returns
    -------
    (angle_deg, max_distance_um) : tuple of float
        The angle of ``R_a R_bᵀ`` and the largest distance between the images of
        one point under ``a`` and ``b`` over the fixed volume's box (voxel edges
        included). The distance is convex in the point, so its maximum over the
        box is at a corner.
    """
    d = RigidTransform(a.matrix @ b.matrix.T).rotation_angle_deg
    corners = field_of_view_corners(fixed)
    return d, float(np.max(np.linalg.norm(a.apply(corners) - b.apply(corners), axis=1)))


def field_of_view_corners(volume: Volume) -> np.ndarray:
    """World positions (µm) of the 8 outer corners of a volume's voxels, ``(8, 3)``."""
    n = np.asarray(volume.shape, float)
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    idx = idx * n - 0.5
    vs = np.asarray(volume.require_voxel_size())
    return np.asarray(volume.origin) + (idx * vs) @ volume.direction.T


def world_to_index(volume: Volume, points_um: np.ndarray) -> np.ndarray:
    """Continuous array indices of world points (µm), shape ``(..., 3)``."""
    vs = np.asarray(volume.require_voxel_size())
    inv = np.linalg.inv(volume.direction)
    return ((np.asarray(points_um) - np.asarray(volume.origin)) @ inv.T) / vs


def index_grid_points(volume: Volume, index: np.ndarray) -> np.ndarray:
    """World positions (µm) of array indices ``(..., 3)`` of a volume."""
    vs = np.asarray(volume.require_voxel_size())
    return np.asarray(volume.origin) + (np.asarray(index, float) * vs) @ volume.direction.T


def innermost_transform(tx: Any) -> Any:
    """The Euler transform inside the composite ``Execute`` returns."""
    sitk = import_sitk()
    tx = tx.Downcast() if hasattr(tx, "Downcast") else tx
    if isinstance(tx, sitk.CompositeTransform):
        if tx.GetNumberOfTransforms() != 1:
            return tx  # from_sitk reads any affine map off points
        return tx.GetNthTransform(0).Downcast()
    return tx


def write_transform(
    transform: RigidTransform, path: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write a transform as an ITK ``.tfm`` file (mm; fixed → moving points), atomically."""
    from boneframe.io import atomic_path

    sitk = import_sitk()
    p = Path(path)
    if p.suffix.lower() not in (".tfm", ".txt"):
        raise InputError(f"{p}: an ITK transform file ends in .tfm")
    with atomic_path(p, overwrite=overwrite) as tmp:
        sitk.WriteTransform(transform.to_sitk(), str(tmp))
    return p


def read_transform(path: str | os.PathLike[str]) -> RigidTransform:
    """Read a rigid transform from an ITK transform file (``.tfm``, ``.txt``, ``.h5``).

    Raises
    ------
    VolumeIOError
        When the file is missing or unreadable.
    InputError
        When it holds a transform that is not rigid.
    """
    sitk = import_sitk()
    p = Path(path)
    if not p.is_file():
        raise VolumeIOError(f"{p}: no such transform file")
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise VolumeIOError(f"cannot read {p} as an ITK transform: {first}") from exc
    try:
        return RigidTransform.from_sitk(innermost_transform(tx))
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from exc
