"""A blurring kernel with everything that must travel with it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.operators import as_factor, check_kernel
from boneframe.volume import Triple, as_triple

__all__ = ["UNCERTAINTY_KEYS", "Kernel"]

#: Sidecar keys of a kernel's bootstrap (see :mod:`boneframe.kernel.bootstrap`).
UNCERTAINTY_KEYS = (
    "fwhm_um_ci",
    "mtf50_lpmm_ci",
    "mtf10_lpmm_ci",
    "alpha_sensitivity",
    "bootstrap",
)


@dataclass
class Kernel:
    """An estimated (or given) blurring kernel ``h`` and offset ``c`` of ``g = U(h * (f + c))``.

    Attributes
    ----------
    array : ndarray
        The kernel on the high-resolution grid (odd support, centre at ``K // 2``);
        its sum is the gain.
    offset : float
        Grey-level offset ``c``, in the grey scale of ``f``.
    voxel_size : tuple of 3 floats or None
        High-resolution voxel size in µm (the grid of ``array``).
    p : tuple of 3 ints
        Resolution factor between the high- and low-resolution grids.
    alpha : float or None
        Regularisation weight used by the estimate.
    iterations : int
        Solver iterations.
    history : list of dict
        One record per iteration (``objective``, ``offset``, ...).
    similarity, solver : str or None
        Names of the strategies that estimated it.
    converged : bool
        The solver met its stopping criterion.
    message : str
        The solver's last word.
    uncertainty : dict
        Bootstrap intervals and α sensitivity
        (:meth:`boneframe.kernel.bootstrap.KernelUncertainty.sidecar`), when estimated.
    """

    array: np.ndarray
    offset: float = 0.0
    voxel_size: Triple | None = None
    p: tuple[int, int, int] = (2, 2, 2)
    alpha: float | None = None
    iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    similarity: str | None = None
    solver: str | None = None
    converged: bool = True
    message: str = ""
    uncertainty: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = check_kernel(np.asarray(self.array, dtype=np.float64))
        if not np.isfinite(self.offset):
            raise InputError(f"the kernel's offset must be finite, got {self.offset}")
        self.offset = float(self.offset)
        self.p = as_factor(self.p)
        if self.voxel_size is not None:
            vs = as_triple(self.voxel_size, "voxel size")
            if min(vs) <= 0:
                raise InputError(f"voxel size must be positive, got {vs}")
            self.voxel_size = vs

    @property
    def gain(self) -> float:
        """``sum(h)``."""
        return float(np.sum(self.array))

    @property
    def support(self) -> tuple[int, int, int]:
        """Kernel support per axis."""
        return tuple(int(k) for k in self.array.shape)  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        """Gain, centroid, FWHM (µm) and MTF 50 %/10 % (lp/mm) per axis
        (:func:`boneframe.kernel.summary.summarize_kernel`) and the offset.

        Raises
        ------
        InputError
            The voxel size is unknown (no physical resolution without it).
        """
        from boneframe.kernel.summary import summarize_kernel

        if self.voxel_size is None:
            raise InputError(
                "the kernel's voxel size is unknown: FWHM and MTF need it (give voxel_size)"
            )
        return {**summarize_kernel(self.array, self.voxel_size), "offset": self.offset}

    def sidecar(self) -> dict[str, Any]:
        """Everything but the array, JSON-ready: the :meth:`summary` (when the voxel
        size is known), ``p``, how it was estimated and its history."""
        out: dict[str, Any] = self.summary() if self.voxel_size is not None else {}
        out.update(
            gain=self.gain,
            offset=self.offset,
            voxel_size_um=None if self.voxel_size is None else list(self.voxel_size),
            p=list(self.p),
            similarity=self.similarity,
            solver=self.solver,
            alpha=self.alpha,
            iterations=self.iterations,
            converged=self.converged,
            message=self.message,
            history=self.history,
        )
        out.update(self.uncertainty)
        return out

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the kernel (``.npy`` or ``.zarr``) with its sidecar ``<stem>.json``.

        Returns
        -------
        pathlib.Path
            The kernel file written.
        """
        from boneframe.io import write_volume
        from boneframe.volume import Volume

        vol = Volume(self.array, voxel_size=self.voxel_size)
        return write_volume(vol, path, overwrite=overwrite, sidecar=self.sidecar())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        offset: float | None = None,
        voxel_size: float | Sequence[float] | None = None,
    ) -> Kernel:
        """Read a kernel file and its sidecar.

        Parameters
        ----------
        path : path-like
            Kernel volume (``.npy``, ``.zarr``, any readable format).
        offset : float, optional
            The offset ``c``, overriding the sidecar's. A kernel file without a
            sidecar that records its offset is refused unless it is given: a
            silent 0 would shift every grey value of a super-resolution.
        voxel_size : float or 3 floats, optional
            High-resolution voxel size in µm, overriding the file's.

        Raises
        ------
        InputError
            No offset recorded and none given; a kernel that is not 3D with odd
            support or holds NaN.
        """
        from boneframe.io import read_volume, sidecar_path

        vol = read_volume(path, voxel_size)
        side = vol.metadata  # the verified sidecar's, or the zarr's own attributes
        if side.get("kind") == "regional":
            raise InputError(
                f"{path} holds one kernel per region of a {side.get('grid')} grid: read it "
                "with boneframe.kernel.load_kernel (super-resolve accepts it as it is)"
            )
        if offset is None:
            if side.get("offset") is None:
                raise InputError(
                    f"{path}: no metadata records the kernel's offset (its sidecar "
                    f"{sidecar_path(path).name} is missing or belongs to another file); "
                    "give the offset explicitly (--offset, or offset=)"
                )
            offset = float(side["offset"])
        p = side.get("p", (2, 2, 2))
        return cls(
            array=np.asarray(vol.numpy(), dtype=np.float64),
            offset=offset,
            voxel_size=vol.voxel_size,
            p=tuple(p),
            alpha=side.get("alpha"),
            iterations=int(side.get("iterations", 0) or 0),
            history=list(side.get("history", []) or []),
            similarity=side.get("similarity"),
            solver=side.get("solver"),
            converged=bool(side.get("converged", True)),
            message=str(side.get("message", "") or ""),
            uncertainty={k: side[k] for k in UNCERTAINTY_KEYS if side.get(k) is not None},
        )
