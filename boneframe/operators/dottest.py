r"""The dot test: does an operator's ``rmatvec`` compute the adjoint of its ``matvec``?"""

from __future__ import annotations

from typing import Any

import numpy as np

from boneframe.operators.base import LinearOperator
from boneframe.operators.geometry import is_dask

#: Default tolerance of :func:`dottest` per precision of the test arrays.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}


class AdjointMismatch(AssertionError):
    """``<A x, y> != <x, A^T y>``: the adjoint of an operator is wrong."""


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _chunked(a: np.ndarray, chunks: Any) -> Any:
    import dask.array as da

    if not isinstance(chunks, int):  # leading axes of a field, e.g. (3, *shape): whole
        chunks = (-1,) * (a.ndim - len(chunks)) + tuple(chunks)
    return da.from_array(a, chunks=chunks)


def _evaluate(out: Any, lazy: bool, op: LinearOperator, what: str) -> np.ndarray:
    if lazy != is_dask(out):
        kind = "a dask array" if lazy else "an in-memory array"
        raise AdjointMismatch(f"{op!r}: {what} of {kind} gave {type(out).__name__}")
    return np.asarray(out.compute() if lazy else out)


def dottest(
    op: LinearOperator,
    x: Any = None,
    y: Any = None,
    *,
    rng: np.random.Generator | int | None = None,
    dtype: Any = np.float64,
    chunks: Any = None,
    rtol: float | None = None,
) -> float:
    r"""Check that ``op.rmatvec`` is the adjoint of ``op.matvec``.

    Parameters
    ----------
    op : LinearOperator
        The operator under test.
    x, y : array, optional
        Input of ``matvec`` (shape ``op.shape_in``) and of ``rmatvec`` (shape
        ``op.shape_out``), numpy or dask; default: standard normal draws.
    rng : numpy.random.Generator or int, optional
        Source (or seed) of the random ``x`` and ``y``.
    dtype : numpy dtype
        Precision of the random ``x`` and ``y`` (float32 or float64).
    chunks : int or tuple, optional
        Make the random ``x`` and ``y`` dask arrays with these chunks (the
        leading axes of a ``y`` with more dimensions than ``x`` stay whole).
    rtol : float, optional
        Tolerance on the relative mismatch; default 1e-5 when the arithmetic is
        float32 (``x``, ``y`` and ``op.dtype`` all float32), 1e-11 otherwise.

    Returns
    -------
    float
        The relative mismatch (see Notes).

    Raises
    ------
    AdjointMismatch
        (an :class:`AssertionError`) naming the operator, when the mismatch
        exceeds ``rtol``, when a result has the wrong shape, a lower precision
        than ``numpy.result_type(input, op.dtype)``, or when a dask input gave an
        in-memory result (or the reverse).

    Notes
    -----
    .. math::
        \frac{|\langle A x, y\rangle - \langle x, A^\top y\rangle|}
             {\|A x\|\,\|y\| + \|x\|\,\|A^\top y\|} \le \mathrm{rtol}

    with the inner products accumulated in float64.

    Examples
    --------
    >>> from boneframe.operators import Decimate
    >>> dottest(Decimate((5, 4, 3), 2), rng=0) < 1e-12
    True
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    dt = np.dtype(dtype)
    if x is None:
        x = _draw(gen, op.shape_in, dt)
        x = x if chunks is None else _chunked(x, chunks)
    if y is None:
        y = _draw(gen, op.shape_out, dt)
        y = y if chunks is None else _chunked(y, chunks)
    ax = _evaluate(op.matvec(x), is_dask(x), op, "matvec")
    aty = _evaluate(op.rmatvec(y), is_dask(y), op, "rmatvec")
    for name, out, arg, shape in (
        ("matvec", ax, x, op.shape_out),
        ("rmatvec", aty, y, op.shape_in),
    ):
        if out.shape != shape:
            raise AdjointMismatch(f"{op!r}: {name} gave shape {out.shape}, expected {shape}")
        want = np.result_type(arg.dtype, op.dtype)
        if np.issubdtype(arg.dtype, np.floating) and out.dtype != want:
            raise AdjointMismatch(f"{op!r}: {name} of {arg.dtype} gave {out.dtype}, not {want}")
    xv, yv = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    axv, atyv = ax.astype(np.float64), aty.astype(np.float64)
    lhs, rhs = float(np.vdot(axv, yv)), float(np.vdot(xv, atyv))
    scale = np.linalg.norm(axv) * np.linalg.norm(yv) + np.linalg.norm(xv) * np.linalg.norm(atyv)
    mismatch = abs(lhs - rhs) / scale if scale > 0 else 0.0
    precision = np.result_type(x.dtype, y.dtype, op.dtype)
    tol = RTOL.get(precision, RTOL[np.dtype(np.float64)]) if rtol is None else rtol
    if not mismatch <= tol:
        raise AdjointMismatch(
            f"{op!r} fails the dot test: <A x, y> = {lhs:.17g}, <x, A^T y> = {rhs:.17g}, "
            f"relative mismatch {mismatch:.3g} > {tol:.1g}"
        )
    return float(mismatch)
