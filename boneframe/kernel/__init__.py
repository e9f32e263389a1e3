"""Blurring-kernel estimation: the valid-region design, its boxes, the problem,
the estimate and the kernel's resolution figures.

Reading order: :mod:`~boneframe.kernel.pair` (what a pair must be),
:mod:`~boneframe.kernel.design` (the design matrix of one box),
:mod:`~boneframe.kernel.boxes` (the valid region as boxes whose sums add up),
:mod:`~boneframe.kernel.problem` (the objective with the offset profiled out),
:mod:`~boneframe.kernel.quadratic` (normal equations, GCV),
:mod:`~boneframe.kernel.estimate` (:func:`estimate_kernel`),
:mod:`~boneframe.kernel.result` (:class:`Kernel`),
:mod:`~boneframe.kernel.summary` (FWHM, MTF),
:mod:`~boneframe.kernel.bootstrap` (:func:`bootstrap_kernel`: their intervals) and,
for a blur that varies across the field of view, :mod:`~boneframe.kernel.regional`
(:class:`RegionalKernel`) and :mod:`~boneframe.kernel.regional_estimate`
(:func:`estimate_regional_kernels`).
"""

from boneframe.kernel.bootstrap import KernelUncertainty, bootstrap_kernel
from boneframe.kernel.boxes import KernelBoxes, lr_boxes
from boneframe.kernel.design import ValidDesign
from boneframe.kernel.estimate import (
    DEFAULT_INIT_SIGMA,
    default_alpha,
    default_solver,
    estimate_kernel,
    gaussian_start,
    pair_voxel_size,
    unit_alpha,
)
from boneframe.kernel.pair import as_support, check_pair
from boneframe.kernel.problem import KernelProblem, project_simplex
from boneframe.kernel.quadratic import QuadraticStatistics, regularizer_hessian
from boneframe.kernel.regional import RegionalKernel, load_kernel
from boneframe.kernel.regional_estimate import estimate_regional_kernels
from boneframe.kernel.result import Kernel
from boneframe.kernel.summary import summarize_kernel

__all__ = [
    "DEFAULT_INIT_SIGMA",
    "Kernel",
    "KernelBoxes",
    "KernelProblem",
    "KernelUncertainty",
    "QuadraticStatistics",
    "RegionalKernel",
    "ValidDesign",
    "as_support",
    "bootstrap_kernel",
    "check_pair",
    "default_alpha",
    "default_solver",
    "estimate_kernel",
    "estimate_regional_kernels",
    "gaussian_start",
    "load_kernel",
    "lr_boxes",
    "pair_voxel_size",
    "project_simplex",
    "regularizer_hessian",
    "summarize_kernel",
    "unit_alpha",
]
