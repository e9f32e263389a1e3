"""A volume: a 3D array with the physical geometry that must travel with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from boneframe.errors import InputError

Triple = tuple[float, float, float]

#: Arrays are indexed (z, y, x), as tifffile, scanner formats and ITK's
#: ``GetArrayFromImage`` give them: array axis 0 runs along world z, axis 2 along x.
DEFAULT_DIRECTION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def as_triple(value: float | Sequence[float], what: str = "value") -> Triple:
    """Return ``value`` as a tuple of three floats (a scalar is repeated).

    Raises
    ------
    InputError
        If ``value`` has neither 1 nor 3 finite entries.
    """
    arr = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise InputError(f"{what} must be one or three finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Volume:
    """A 3D image (numpy or dask array) with its voxel size, origin and direction.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The voxel values, indexed ``data[i0, i1, i2]``.
    voxel_size : tuple of float or None
        Voxel spacing in micrometres along array axes 0, 1, 2; ``None`` when the
        file did not say (then anything that needs physical units refuses).
    origin : tuple of float
        Physical position (µm) of the *centre* of voxel ``(0, 0, 0)`` (ITK's
        convention), in the world frame.
    direction : numpy.ndarray
        3×3 matrix whose column ``j`` is the world direction of array axis ``j``,
        so that ``world = origin + direction @ (index * voxel_size)``. Default:
        :data:`DEFAULT_DIRECTION`, arrays indexed (z, y, x).
    metadata : dict
        Anything else a reader found (calibration, scanner log, ...).
    """

    data: Any
    voxel_size: Triple | None = None
    origin: Triple = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=DEFAULT_DIRECTION.copy)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if getattr(self.data, "ndim", None) != 3:
            shape = getattr(self.data, "shape", None)
            raise InputError(f"a volume must be a 3D array, got shape {shape}")
        if 0 in tuple(self.data.shape):
            raise InputError(f"the volume is empty (shape {tuple(self.data.shape)})")
        if self.voxel_size is not None:
            vs = as_triple(self.voxel_size, "voxel size")
            if min(vs) <= 0:
                raise InputError(f"voxel size must be positive, got {vs}")
            object.__setattr__(self, "voxel_size", vs)
        object.__setattr__(self, "origin", as_triple(self.origin, "origin"))
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3):
            raise InputError(f"direction must be a 3x3 matrix, got shape {direction.shape}")
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise InputError(
                "the direction matrix must be finite with independent columns (the world "
                f"directions of the three array axes), got {direction.tolist()}"
            )
        object.__setattr__(self, "direction", direction)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """Array dtype."""
        return np.dtype(self.data.dtype)

    @property
    def is_lazy(self) -> bool:
        """True when the data is a dask array (not yet in memory): one rule,
        :func:`boneframe.compute.is_lazy`."""
        from boneframe.compute import is_lazy

        return is_lazy(self.data)

    def require_voxel_size(self) -> Triple:
        """Return the voxel size, or raise a clear error when it is unknown."""
        if self.voxel_size is None:
            raise InputError(
                "the voxel size of this volume is unknown: give it with --voxel-size (µm)"
            )
        return self.voxel_size

    def with_data(self, data: Any, **changes: Any) -> Volume:
        """A copy with other data (and optionally other geometry fields)."""
        return replace(self, data=data, **changes)

    def numpy(self) -> np.ndarray:
        """The data as an in-memory numpy array (computes a dask array)."""
        return np.asarray(self.data)

    def index_to_world(self, index: Sequence[float]) -> np.ndarray:
        """Physical position (µm) of a (possibly fractional) voxel index."""
        vs = np.asarray(self.require_voxel_size())
        return np.asarray(self.origin) + self.direction @ (np.asarray(index, float) * vs)


def as_volume(x: Any, voxel_size: float | Sequence[float] | None = None) -> Volume:
    """Wrap an array as a :class:`Volume` (a volume is returned unchanged).

    ``voxel_size``, when given, overrides the volume's own.
    """
    if isinstance(x, Volume):
        return x if voxel_size is None else replace(x, voxel_size=as_triple(voxel_size))
    if not hasattr(x, "ndim"):
        x = np.asarray(x)
    return Volume(x, voxel_size=None if voxel_size is None else as_triple(voxel_size))
