r"""The operator protocol: shaped arrays in and out, the adjoint beside the forward map.

An operator maps arrays of ``shape_in`` to arrays of ``shape_out`` (3D volumes,
a gradient field ``(3, *shape)``; never flattened vectors), numpy or dask alike:
a dask array in gives a lazy dask array out. ``A @ B`` composes, ``A @ x``
applies, ``A.T`` is the adjoint, ``A + B`` and ``s * A`` combine, so the normal
operator of the super-resolution f-step reads as its formula::

    mu * (H.T @ U.T @ U @ H) + beta * (D.T @ D)

Results are in ``numpy.result_type(x.dtype, A.dtype)`` for floating ``x``: an
operator never lowers the input's precision and raises it only to its own
coefficients' (a float32 kernel keeps float32 volumes float32).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from numbers import Number
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj

from boneframe.errors import InputError
from boneframe.operators.geometry import is_dask

__all__ = ["Adjoint", "Composition", "LinearOperator", "Scaled", "Sum"]


class LinearOperator(ABC):
    r"""A linear map between arrays of fixed shapes, with its adjoint.

    Subclasses call ``super().__init__(shape_in, shape_out, dtype)`` and
    implement ``_matvec`` and ``_rmatvec`` on arrays already checked for shape.

    Attributes
    ----------
    shape_in, shape_out : tuple of int
        Shapes of the input and output arrays.
    dtype : numpy.dtype
        The operator's coefficients: results are in
        ``numpy.result_type(x.dtype, dtype)`` for floating input ``x``.

    Notes
    -----
    The adjoint :math:`A^\top` is defined by
    :math:`\langle A x, y\rangle = \langle x, A^\top y\rangle` for all ``x``, ``y``
    (the sum of the element-wise products); :func:`~boneframe.operators.dottest`
    checks it on random arrays.
    """

    #: ``ndarray @ A`` and ``numpy scalar * A`` defer to the operator
    __array_ufunc__ = None

    def __init__(self, shape_in: Sequence[int], shape_out: Sequence[int], dtype: Any):
        self.shape_in = tuple(int(s) for s in shape_in)
        self.shape_out = tuple(int(s) for s in shape_out)
        self.dtype = np.dtype(dtype)

    @abstractmethod
    def _matvec(self, x: Any) -> Any:
        """``A x`` for ``x`` of ``shape_in`` (numpy or dask)."""

    @abstractmethod
    def _rmatvec(self, y: Any) -> Any:
        """``A^T y`` for ``y`` of ``shape_out`` (numpy or dask)."""

    def matvec(self, x: Any) -> Any:
        """Forward: ``A x`` (an array of ``shape_in`` to one of ``shape_out``)."""
        return self._matvec(self._check(x, self.shape_in, "input"))

    def rmatvec(self, y: Any) -> Any:
        """Adjoint: ``A^T y`` (an array of ``shape_out`` to one of ``shape_in``)."""
        return self._rmatvec(self._check(y, self.shape_out, "adjoint's input"))

    @property
    def T(self) -> LinearOperator:  # noqa: N802 - the conventional name
        """The adjoint as an operator (``A.T.T is A``)."""
        return Adjoint(self)

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return Composition(self, other)
        return self.matvec(other)

    def __add__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Sum(self, other)

    def __sub__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Sum(self, Scaled(other, -1.0))

    def __mul__(self, scalar: Any) -> LinearOperator:
        if not isinstance(scalar, Number):
            return NotImplemented
        return Scaled(self, scalar)

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return Scaled(self, -1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape_in} -> {self.shape_out}, {self.dtype})"

    def _check(self, x: Any, shape: tuple[int, ...], what: str) -> Any:
        if not is_dask(x) and not is_array_api_obj(x):
            x = np.asarray(x)  # lists, scalars; numpy, CuPy, ... arrays are kept
        elif any(np.isnan(s) for s in x.shape):
            raise InputError(
                f"{self!r}: the {what} has unknown chunk sizes; call compute_chunk_sizes() first"
            )
        if tuple(x.shape) != shape:
            raise InputError(f"{self!r}: the {what} should have shape {shape}, got {x.shape}")
        return x


class Adjoint(LinearOperator):
    """``A^T`` of an operator ``A``: its matvec is ``A.rmatvec`` and back."""

    def __init__(self, op: LinearOperator):
        super().__init__(op.shape_out, op.shape_in, op.dtype)
        self.op = op

    def _matvec(self, x: Any) -> Any:
        return self.op._rmatvec(x)

    def _rmatvec(self, y: Any) -> Any:
        return self.op._matvec(y)

    @property
    def T(self) -> LinearOperator:  # noqa: N802
        return self.op

    def __repr__(self) -> str:
        return f"{self.op!r}.T"


class Composition(LinearOperator):
    r"""``A_1 A_2 ... A_m``: applies ``A_m`` first; the adjoint applies the adjoints
    in the reverse order.

    Notes
    -----
    .. math:: (A_1 \cdots A_m)^\top = A_m^\top \cdots A_1^\top
    """

    def __init__(self, *ops: LinearOperator):
        flat: list[LinearOperator] = []
        for op in ops:
            flat.extend(op.ops if type(op) is Composition else [op])
        if not flat:
            raise InputError("a composition needs at least one operator")
        for left, right in zip(flat[:-1], flat[1:], strict=True):
            if left.shape_in != right.shape_out:
                raise InputError(
                    f"cannot compose {left!r} @ {right!r}: {right.shape_out} "
                    f"does not match {left.shape_in}"
                )
        super().__init__(
            flat[-1].shape_in, flat[0].shape_out, np.result_type(*(op.dtype for op in flat))
        )
        self.ops: tuple[LinearOperator, ...] = tuple(flat)

    def _matvec(self, x: Any) -> Any:
        for op in reversed(self.ops):
            x = op.matvec(x)
        return x

    def _rmatvec(self, y: Any) -> Any:
        for op in self.ops:
            y = op.rmatvec(y)
        return y

    def __repr__(self) -> str:
        return " @ ".join(repr(op) for op in self.ops)


class Sum(LinearOperator):
    """``A + B`` for operators of the same shapes."""

    def __init__(self, a: LinearOperator, b: LinearOperator):
        if (a.shape_in, a.shape_out) != (b.shape_in, b.shape_out):
            raise InputError(f"cannot add {a!r} and {b!r}: the shapes differ")
        super().__init__(a.shape_in, a.shape_out, np.result_type(a.dtype, b.dtype))
        self.a, self.b = a, b

    def _matvec(self, x: Any) -> Any:
        return self.a.matvec(x) + self.b.matvec(x)

    def _rmatvec(self, y: Any) -> Any:
        return self.a.rmatvec(y) + self.b.rmatvec(y)

    def __repr__(self) -> str:
        return f"({self.a!r} + {self.b!r})"


class Scaled(LinearOperator):
    """``s A`` for a real scalar ``s``."""

    def __init__(self, op: LinearOperator, scalar: Any):
        if isinstance(scalar, complex) or not np.isfinite(scalar):
            raise InputError(f"an operator can be scaled by a finite real number, got {scalar!r}")
        super().__init__(op.shape_in, op.shape_out, op.dtype)
        self.op, self.scalar = op, float(scalar)

    def _matvec(self, x: Any) -> Any:
        return self._scale(self.op.matvec(x))

    def _rmatvec(self, y: Any) -> Any:
        return self._scale(self.op.rmatvec(y))

    def _scale(self, out: Any) -> Any:
        # a Python float keeps float32 results float32
        return out * self.scalar

    def __repr__(self) -> str:
        return f"{self.scalar:g} * {self.op!r}"
