"""TV super-resolution: the upsampling baseline, the ADMM problem with its exact
Fourier f-step, the solve, and block-wise solves of large volumes.

Reading order: :mod:`~boneframe.superres.upsample`,
:mod:`~boneframe.superres.problem`, :mod:`~boneframe.superres.solve`
(:func:`super_resolve`), :mod:`~boneframe.superres.blockwise`,
:mod:`~boneframe.superres.iteration_metrics`.
"""

from boneframe.superres.problem import GREY_RANGE, PAD_MARGIN, SuperResolutionProblem, padding_width
from boneframe.superres.solve import SuperResolution, as_kernel, super_resolve
from boneframe.superres.upsample import upsample_spline

__all__ = [
    "GREY_RANGE",
    "PAD_MARGIN",
    "SuperResolution",
    "SuperResolutionProblem",
    "as_kernel",
    "padding_width",
    "super_resolve",
    "upsample_spline",
]
