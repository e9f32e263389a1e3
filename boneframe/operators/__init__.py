r"""One family of linear operators for the forward model ``g = U(h * (f + c))``.

=====================  ==================================================  ==========
operator               forward / adjoint                                   module
=====================  ==================================================  ==========
:class:`Blur`          ``h * x`` / correlation; zero or periodic boundary  ``blur``
:class:`Decimate`      keep ``0, p, 2p, ...`` / zero-fill                  ``decimation``
:class:`Gradient`      forward differences ``D`` / ``D^T``                 ``differences``
:class:`Crop`          keep a box / put it back in zeros                   ``crop``
:class:`ForwardModel`  ``U H`` (``Decimate @ Blur``), ``predict(f, c)``    ``forward``
=====================  ==================================================  ==========

Every operator is a :class:`LinearOperator` (``base``): ``matvec`` and
``rmatvec`` on shaped numpy or dask arrays, ``A @ B`` composition, ``A.T``,
``A + B``, ``s * A``; :func:`dottest` checks each adjoint. A dask volume runs
through the in-memory function chunk by chunk (a halo of the kernel radius for
the blur, chunks that are multiples of ``p`` for the decimation), lazily.

The functions :func:`convolve`, :func:`convolve_adjoint`, :func:`decimate`,
:func:`decimate_adjoint`, :func:`forward_model`, :func:`gradient`,
:func:`gradient_adjoint` and :func:`laplacian` apply one operator once.

Examples
--------
>>> import numpy as np
>>> from boneframe.operators import ForwardModel, dottest
>>> A = ForwardModel(np.ones((3, 3, 3)) / 27, 2, (8, 8, 8))
>>> A.shape_in, A.shape_out
((8, 8, 8), (4, 4, 4))
>>> dottest(A, rng=0) < 1e-11
True
"""

from boneframe.operators.base import Adjoint, Composition, LinearOperator, Scaled, Sum
from boneframe.operators.blur import Blur, Boundary, blur_block, convolve, convolve_adjoint
from boneframe.operators.crop import Crop
from boneframe.operators.decimation import Decimate, check_chunks, decimate, decimate_adjoint
from boneframe.operators.differences import Gradient, gradient, gradient_adjoint, laplacian
from boneframe.operators.dottest import AdjointMismatch, dottest
from boneframe.operators.forward import ForwardModel, forward_model
from boneframe.operators.geometry import (
    Factor,
    Mode,
    as_factor,
    check_kernel,
    decimated_shape,
    is_dask,
    valid_lr_slices,
)

__all__ = [
    "Adjoint",
    "AdjointMismatch",
    "Blur",
    "Boundary",
    "Composition",
    "Crop",
    "Decimate",
    "Factor",
    "ForwardModel",
    "Gradient",
    "LinearOperator",
    "Mode",
    "Scaled",
    "Sum",
    "as_factor",
    "blur_block",
    "check_chunks",
    "check_kernel",
    "convolve",
    "convolve_adjoint",
    "decimate",
    "decimate_adjoint",
    "decimated_shape",
    "dottest",
    "forward_model",
    "gradient",
    "gradient_adjoint",
    "is_dask",
    "laplacian",
    "valid_lr_slices",
]
