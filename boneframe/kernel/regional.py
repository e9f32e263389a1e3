r"""A spatially variant kernel: one :class:`~boneframe.kernel.result.Kernel` per region.

The blur of a CT scanner widens away from the rotation centre; a single kernel
for the whole field of view is an average. A :class:`RegionalKernel` holds one
kernel (with its gain and offset) per region of an ``NZ x NY x NX`` grid over the
low-resolution field of view, the region's box of low-resolution voxels and its
centre in µm, and optionally each kernel's bootstrap intervals. Between region
centres the kernels are blended by the partition of unity of
:mod:`boneframe.operators.partition` (:meth:`RegionalKernel.axis_weights`):
the model of :func:`boneframe.superres.super_resolve` with such a kernel is

.. math::
    g = U\Big(\sum_r w_r \odot \big(h_r * f\big)\Big) + \sum_r w_r\,\gamma_r c_r,

with :math:`\gamma_r = \sum h_r` and :math:`c_r` region ``r``'s gain and offset.

**Positions** are µm along the array axes of the low-resolution volume's own
frame: ``u_a = d_a · origin + i_a Δ_a`` for voxel index ``i`` (``d_a`` the world
direction of axis ``a``, ``Δ_a`` the voxel size), so a block of a scan and the
whole scan agree, and a volume without geometry counts from its voxel 0.

**Files**: the kernels stacked along axis 0 in region order (C order over the
grid; shape ``(R * Kz, Ky, Kx)``), as any kernel volume (``.npy``, ``.zarr``),
with a sidecar whose ``kind`` is ``"regional"`` and whose ``regions`` list gives
each region's ``index``, ``lr_box``, ``centre_um``, ``fwhm_um`` (per array axis),
``mtf50_lpmm``, ``mtf10_lpmm``, ``gain``, ``offset`` and, when estimated, the
``*_ci`` intervals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.kernel.result import UNCERTAINTY_KEYS, Kernel
from boneframe.operators.partition import hat_weights, region_weight
from boneframe.volume import Triple

__all__ = ["REGIONAL_KIND", "RegionalKernel", "axis_positions", "load_kernel"]

#: The sidecar's ``kind`` of a regional kernel file.
REGIONAL_KIND = "regional"


def axis_positions(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Any = None,
    start: Sequence[int] = (0, 0, 0),
) -> list[np.ndarray]:
    """µm positions along each array axis of voxels ``start + arange(shape)``.

    Parameters
    ----------
    shape : 3 ints
        How many voxels per axis.
    voxel_size : 3 floats
        µm per voxel per axis.
    origin, direction
        The volume's (see :class:`~boneframe.volume.Volume`); default origin 0,
        the default direction.
    start : 3 ints
        Index of the first voxel (negative for padding before the volume).

    Returns
    -------
    list of 3 arrays
    """
    from boneframe.volume import DEFAULT_DIRECTION

    d = DEFAULT_DIRECTION if direction is None else np.asarray(direction, dtype=float)
    o = np.asarray(origin, dtype=float)
    return [
        float(d[:, a] @ o) + (np.arange(n) + s) * float(v)
        for a, (n, v, s) in enumerate(zip(shape, voxel_size, start, strict=True))
    ]


@dataclass
class RegionalKernel:
    """One kernel per region of a grid over the low-resolution field of view.

    Attributes
    ----------
    kernels : list of Kernel
        One per region, C order over ``grid``; one support, ``p`` and voxel size.
    grid : tuple of 3 ints
        Regions per axis.
    lr_boxes : list of 3 (start, stop) pairs
        Each region's low-resolution voxels (without the estimate's margin).
    centres_um : list of 3 floats
        Each region's centre, µm along the array axes (see module notes).
    lr_shape : tuple of 3 ints
        Shape of the low-resolution volume the grid was laid on.
    intervals : list of dict
        Per region, the bootstrap's sidecar (``fwhm_um_ci`` ...) or empty.
    """

    kernels: list[Kernel]
    grid: tuple[int, int, int]
    lr_boxes: list[tuple[tuple[int, int], ...]]
    centres_um: list[Triple]
    lr_shape: tuple[int, int, int]
    intervals: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.grid = tuple(int(n) for n in self.grid)  # type: ignore[assignment]
        n = int(np.prod(self.grid))
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise InputError(f"a region grid is three positive integers, got {self.grid}")
        if not (len(self.kernels) == len(self.lr_boxes) == len(self.centres_um) == n):
            raise InputError(
                f"a {self.grid} grid needs {n} kernels, boxes and centres, got "
                f"{len(self.kernels)}, {len(self.lr_boxes)}, {len(self.centres_um)}"
            )
        first = self.kernels[0]
        for k in self.kernels[1:]:
            if k.support != first.support or k.p != first.p or k.voxel_size != first.voxel_size:
                raise InputError("regional kernels must share support, p and voxel size")
        self.centres_um = [tuple(float(v) for v in c) for c in self.centres_um]  # type: ignore[misc]
        for axis in range(3):
            self.axis_centres(axis)  # strictly increasing along every axis
        if not self.intervals:
            self.intervals = [{} for _ in self.kernels]

    # -- what every kernel shares -----------------------------------------------
    @property
    def p(self) -> tuple[int, int, int]:
        """Resolution factor."""
        return self.kernels[0].p

    @property
    def voxel_size(self) -> Triple | None:
        """High-resolution voxel size (µm) of the kernels."""
        return self.kernels[0].voxel_size

    @property
    def support(self) -> tuple[int, int, int]:
        """Kernel support per axis."""
        return self.kernels[0].support

    @property
    def arrays(self) -> np.ndarray:
        """All kernels, shape ``(R, Kz, Ky, Kx)``."""
        return np.stack([k.array for k in self.kernels])

    @property
    def gains(self) -> np.ndarray:
        """``sum(h_r)`` per region."""
        return np.array([k.gain for k in self.kernels])

    @property
    def offsets(self) -> np.ndarray:
        """``c_r`` per region."""
        return np.array([k.offset for k in self.kernels])

    def axis_centres(self, axis: int) -> np.ndarray:
        """The region centres along one axis (µm), one per grid index."""
        step = [0, 0, 0]
        out = []
        for i in range(self.grid[axis]):
            step[axis] = i
            out.append(self.centres_um[int(np.ravel_multi_index(step, self.grid))][axis])
        c = np.asarray(out)
        if np.any(np.diff(c) <= 0):
            raise InputError(f"region centres along axis {axis} are not increasing: {c}")
        return c

    def mean_kernel(self) -> Kernel:
        """The regions' mean kernel and offset (one stationary kernel standing for all)."""
        first = self.kernels[0]
        return Kernel(
            self.arrays.mean(axis=0), offset=float(np.mean(self.offsets)),
            voxel_size=first.voxel_size, p=first.p, similarity=first.similarity,
            solver=first.solver,
        )  # fmt: skip

    def relative_to(self, start_um: Sequence[float]) -> RegionalKernel:
        """The same kernels with every centre moved by ``-start_um``: for a block of a
        volume whose first voxel lies at ``start_um``, addressed from 0."""
        centres = [
            tuple(c - s for c, s in zip(centre, start_um, strict=True))
            for centre in self.centres_um
        ]
        return replace(self, centres_um=centres)  # type: ignore[arg-type]

    def with_offset(self, offset: float) -> RegionalKernel:
        """Every region's offset set to ``offset``."""
        return replace(self, kernels=[replace(k, offset=float(offset)) for k in self.kernels])

    # -- blending ------------------------------------------------------------------
    def axis_weights(self, positions: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The partition of unity per axis at ``positions`` (µm, 3 arrays), each
        ``(grid[a], len(positions[a]))`` (:func:`~boneframe.operators.partition.hat_weights`)."""
        return [hat_weights(self.axis_centres(a), positions[a]) for a in range(3)]

    def blend(self, positions: Sequence[np.ndarray], values: Sequence[float]) -> np.ndarray:
        """``sum_r w_r * values[r]`` on the grid of ``positions`` (3D array)."""
        ws = self.axis_weights(positions)
        out = np.zeros(tuple(len(x) for x in positions))
        for v, index in zip(values, np.ndindex(*self.grid), strict=True):
            out += float(v) * region_weight(ws, index)
        return out

    def kernel_at(self, position_um: Sequence[float]) -> np.ndarray:
        """The blended kernel at one position (µm along the array axes)."""
        ws = self.axis_weights([np.array([float(x)]) for x in position_um])
        return sum(  # type: ignore[return-value]
            float(region_weight(ws, index)[0, 0, 0]) * k.array
            for k, index in zip(self.kernels, np.ndindex(*self.grid), strict=True)
        )

    # -- summaries and files ---------------------------------------------------------
    def region_summaries(self) -> list[dict[str, Any]]:
        """Per region: index, box, centre and the kernel's FWHM/MTF, gain, offset,
        intervals (needs the voxel size)."""
        rows = []
        for k, box, centre, index, extra in zip(
            self.kernels, self.lr_boxes, self.centres_um, np.ndindex(*self.grid),
            self.intervals, strict=True,
        ):  # fmt: skip
            s = k.summary()
            rows.append(
                {
                    "index": [int(i) for i in index],
                    "lr_box": [[int(a), int(b)] for a, b in box],
                    "centre_um": list(centre),
                    "fwhm_um": s["fwhm_um"],
                    "mtf50_lpmm": s["mtf50_lpmm"],
                    "mtf10_lpmm": s["mtf10_lpmm"],
                    "centroid_um": s["centroid"]["um"],
                    "gain": k.gain,
                    "offset": k.offset,
                    "alpha": k.alpha,
                    "iterations": k.iterations,
                    "converged": k.converged,
                    **extra,
                }
            )
        return rows

    def sidecar(self) -> dict[str, Any]:
        """JSON-ready: the grid, shared facts and :meth:`region_summaries`."""
        first = self.kernels[0]
        return {
            "kind": REGIONAL_KIND,
            "grid": list(self.grid),
            "lr_shape": list(self.lr_shape),
            "support": list(self.support),
            "voxel_size_um": None if self.voxel_size is None else list(self.voxel_size),
            "p": list(self.p),
            "similarity": first.similarity,
            "solver": first.solver,
            "regions": self.region_summaries(),
            "offset": float(np.mean(self.offsets)),
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the stacked kernels (``.npy`` or ``.zarr``) with the sidecar ``<stem>.json``."""
        from boneframe.io import write_volume
        from boneframe.volume import Volume

        stacked = np.concatenate([k.array for k in self.kernels], axis=0)
        vol = Volume(stacked, voxel_size=self.voxel_size)
        return write_volume(vol, path, overwrite=overwrite, sidecar=self.sidecar())

    @classmethod
    def from_sidecar(
        cls, stacked: np.ndarray, side: dict[str, Any], voxel_size: Any
    ) -> RegionalKernel:
        """Rebuild from a stacked array and its sidecar (see :func:`load_kernel`)."""
        try:
            grid = tuple(int(n) for n in side["grid"])
            support = tuple(int(n) for n in side["support"])
            regions = list(side["regions"])
            p = tuple(side.get("p", (2, 2, 2)))
            lr_shape = tuple(int(n) for n in side["lr_shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"a regional kernel's sidecar lacks {exc}") from None
        n = int(np.prod(grid))
        if stacked.shape != (n * support[0], *support[1:]) or len(regions) != n:
            raise InputError(
                f"a {grid} regional kernel of support {support} should be stacked as "
                f"{(n * support[0], *support[1:])} with {n} regions, got {stacked.shape} "
                f"and {len(regions)}"
            )
        kernels, boxes, centres, intervals = [], [], [], []
        for r, reg in enumerate(regions):
            kernels.append(
                Kernel(
                    array=stacked[r * support[0] : (r + 1) * support[0]],
                    offset=float(reg["offset"]),
                    voxel_size=voxel_size,
                    p=p,
                    alpha=reg.get("alpha"),
                    iterations=int(reg.get("iterations", 0) or 0),
                    similarity=side.get("similarity"),
                    solver=side.get("solver"),
                    converged=bool(reg.get("converged", True)),
                )
            )
            boxes.append(tuple((int(a), int(b)) for a, b in reg["lr_box"]))
            centres.append(tuple(float(c) for c in reg["centre_um"]))
            intervals.append({k: reg[k] for k in UNCERTAINTY_KEYS if reg.get(k) is not None})
        return cls(kernels, grid, boxes, centres, lr_shape, intervals)  # type: ignore[arg-type]


def load_kernel(
    path: str | os.PathLike[str],
    *,
    offset: float | None = None,
    voxel_size: float | Sequence[float] | None = None,
) -> Kernel | RegionalKernel:
    """Read a kernel file: a :class:`Kernel`, or a :class:`RegionalKernel` when its
    sidecar says ``kind: regional``.

    Parameters
    ----------
    path : path-like
        Kernel volume with its sidecar.
    offset : float, optional
        Overrides the (every region's) offset.
    voxel_size : float or 3 floats, optional
        High-resolution voxel size in µm, overriding the file's.
    """
    from boneframe.io import read_volume

    vol = read_volume(path, voxel_size)
    side = vol.metadata
    if side.get("kind") != REGIONAL_KIND:
        return Kernel.load(path, offset=offset, voxel_size=voxel_size)
    reg = RegionalKernel.from_sidecar(
        np.asarray(vol.numpy(), dtype=np.float64), side, vol.voxel_size
    )
    if offset is not None:
        for k in reg.kernels:
            k.offset = float(offset)
    return reg
