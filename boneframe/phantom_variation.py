r"""A phantom blur that widens across the field of view, and its true regional kernels.

A scanner's blur widens away from its rotation centre. :class:`KernelVariation`
models it along one array axis: the kernel at position ``x`` (µm from the first
high-resolution voxel of the phantom) is the base kernel widened by

.. math:: s(x) = 1 + (S - 1)\, x / X,

``S`` the variation factor and ``X`` the extent of the phantom along the axis, so
that the blur is the base kernel on one side and ``S`` times wider on the other.
It is simulated by a bank of kernels widened by ``s`` at evenly spaced
centres, blended between them by the partition of unity
(:class:`~boneframe.operators.variant.VariantBlur`); the true kernel of a region
is the blended bank kernel at the region's centre
(:meth:`KernelVariation.regional`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.kernel.regional import RegionalKernel, axis_positions
from boneframe.kernel.result import Kernel
from boneframe.operators import check_kernel
from boneframe.operators.partition import hat_weights
from boneframe.operators.variant import VariantBlur
from boneframe.volume import as_triple

__all__ = ["BANK_SPACING", "KernelVariation", "widen_kernel"]

#: Largest spacing (high-resolution voxels) of the simulation's kernel bank.
BANK_SPACING = 8


def widen_kernel(kernel: np.ndarray, factor: float, support: Sequence[int]) -> np.ndarray:
    """``kernel`` stretched by ``factor`` about its centre on a (larger) odd ``support``.

    ``h_s(x) = h(x / s)`` by cubic-spline interpolation, scaled to the original
    gain: a Gaussian of standard deviation σ becomes one of about ``s σ``.
    """
    h = check_kernel(kernel)
    if not factor >= 1.0:
        raise InputError(f"a kernel is widened by a factor >= 1, got {factor}")
    grids = np.meshgrid(
        *[(np.arange(n) - n // 2) / factor + k // 2 for n, k in zip(support, h.shape, strict=True)],
        indexing="ij",
    )
    out = ndimage.map_coordinates(h, grids, order=3, mode="constant", cval=0.0, prefilter=True)
    out = np.clip(out, 0.0, None) if np.all(h >= 0) else out
    return out * (h.sum() / out.sum())


@dataclass
class KernelVariation:
    """A blur widening by ``factor`` along ``axis`` over ``extent_um``.

    Attributes
    ----------
    kernel : ndarray
        The base kernel (at position 0).
    factor : float
        ``S >= 1``: the kernel at the far side is ``S`` times wider.
    extent_um : float
        ``X``: from the first to the last high-resolution voxel, µm.
    axis : int
        The array axis along which the blur widens (default the last).
    """

    kernel: np.ndarray
    factor: float
    extent_um: float
    axis: int = 2

    def __post_init__(self) -> None:
        self.kernel = check_kernel(self.kernel)
        if not (math.isfinite(self.factor) and self.factor >= 1.0):
            raise InputError(f"kernel variation must be a number >= 1, got {self.factor}")
        if not self.extent_um > 0:
            raise InputError(f"the phantom's extent must be positive, got {self.extent_um}")
        if self.axis not in (0, 1, 2):
            raise InputError(f"the variation axis must be 0, 1 or 2, got {self.axis}")

    @property
    def support(self) -> tuple[int, int, int]:
        """Support of the bank's kernels: the base one's widened by ``S``."""
        z, y, x = (2 * math.ceil(k // 2 * self.factor) + 1 for k in self.kernel.shape)
        return z, y, x

    def bank(self, voxel_um: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """Centres (µm) and kernels of the simulation's bank along ``axis``."""
        n = max(2, math.ceil(self.extent_um / (BANK_SPACING * voxel_um)) + 1)
        centres = np.linspace(0.0, self.extent_um, n)
        scales = 1.0 + (self.factor - 1.0) * centres / self.extent_um
        return centres, [widen_kernel(self.kernel, float(s), self.support) for s in scales]

    def blur(
        self, shape: Sequence[int], voxel_size: Sequence[float], start: Sequence[int]
    ) -> VariantBlur:
        """The variant blur of a high-resolution volume whose voxel 0 has index
        ``start`` in the phantom (zero boundary)."""
        centres, kernels = self.bank(voxel_size[self.axis])
        pos = axis_positions(shape, voxel_size, start=start)
        weights = [np.ones((1, n)) for n in shape]
        weights[self.axis] = hat_weights(centres, pos[self.axis])
        return VariantBlur(kernels, weights, shape, boundary="zero", dtype=np.float64)

    def kernel_at(self, position_um: float, voxel_um: float) -> np.ndarray:
        """The true kernel at a position along ``axis`` (µm from the first voxel)."""
        return self._blend(self.bank(voxel_um), position_um)

    @staticmethod
    def _blend(bank: tuple[np.ndarray, list[np.ndarray]], position_um: float) -> np.ndarray:
        centres, kernels = bank
        w = hat_weights(centres, [position_um])[:, 0]
        return np.asarray(sum(float(wi) * k for wi, k in zip(w, kernels, strict=True)))

    def regional(
        self,
        lr_shape: Sequence[int],
        regions: Sequence[int] | RegionalKernel,
        voxel_size: Sequence[float],
        p: Sequence[int],
        offset: float = 0.0,
    ) -> RegionalKernel:
        """The true kernels of a grid of regions over the low-resolution volume: the
        blur at each region's centre (voxel size: high resolution). ``regions`` is a
        grid (centres: the boxes' centres) or an estimate, whose boxes and centres
        are taken."""
        from boneframe.kernel.regional_estimate import region_boxes

        if isinstance(regions, RegionalKernel):
            grid, boxes, centres_um = regions.grid, regions.lr_boxes, regions.centres_um
        else:
            grid, boxes = region_boxes(lr_shape, regions)
            vs_lr = [v * q for v, q in zip(voxel_size, p, strict=True)]
            centres_um = []
            for box in boxes:
                (a0, b0), (a1, b1), (a2, b2) = box
                centres_um.append(
                    (0.5 * (a0 + b0 - 1) * vs_lr[0], 0.5 * (a1 + b1 - 1) * vs_lr[1],
                     0.5 * (a2 + b2 - 1) * vs_lr[2])
                )  # fmt: skip
        bank = self.bank(voxel_size[self.axis])  # widened once for every region
        kernels = [
            Kernel(
                self._blend(bank, c[self.axis]),
                offset=offset,
                voxel_size=as_triple(voxel_size, "voxel size"),
                p=tuple(p),  # type: ignore[arg-type]
            )  # fmt: skip
            for c in centres_um
        ]
        return RegionalKernel(kernels, grid, list(boxes), list(centres_um), tuple(lr_shape))  # type: ignore[arg-type]
