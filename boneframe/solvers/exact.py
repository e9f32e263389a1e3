"""Exact minimisation of a quadratic objective through its normal equations.

Problem protocol
----------------
The solver accepts any object ``problem`` that provides

``problem.normal_equations() -> (A, b)``
    A symmetric positive (semi-)definite ``(n, n)`` matrix and a vector of
    length ``n`` such that the objective is ``x^T A x / 2 - b^T x + const``,
    whose minimisers solve ``A x = b``; ``x`` is ``x0`` flattened.

and optionally ``problem.value(x) -> float`` (the objective, recorded in the
history). A problem with a ``project`` method (constraints) is refused: the
normal equations cannot honour them; use ``gradient-descent``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.linalg

from boneframe.errors import InputError
from boneframe.interfaces import Callback, Solver, SolverResult


@runtime_checkable
class QuadraticProblem(Protocol):
    """The problem shape :class:`Exact` accepts (see the module's protocol):
    ``normal_equations()``, optionally ``value(x)``, and no ``project``."""

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)``: the minimisers solve ``A x = b``."""
        ...


class Exact(Solver):
    r"""Direct solve of the normal equations of a quadratic problem.

    Notes
    -----
    For :math:`J(x) = \tfrac12 x^\top A x - b^\top x + \mathrm{const}` with
    :math:`A \succeq 0`, the minimiser solves :math:`A x = b`. The solver uses a
    Cholesky factorisation (:math:`n^3/3` flops: 0.1 s for the
    :math:`13^3 = 2197` unknowns of a kernel), and the minimum-norm least-squares
    solution when :math:`A` is singular.

    References
    ----------
    .. [1] G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., §4.2
       (Cholesky) and §5.5 (rank-deficient least squares), 2013.
    """

    name: ClassVar[str] = "exact"
    description: ClassVar[str] = "direct solve of the normal equations (quadratic problems)"
    accepts: ClassVar[type] = QuadraticProblem

    def solve(self, problem: Any, x0: Any, callback: Callback | None = None) -> SolverResult:
        """Solve ``A x = b`` from ``problem.normal_equations()``; ``x0`` gives the shape."""
        self.check_problem(problem)
        if getattr(problem, "project", None) is not None:
            raise InputError("solver 'exact' cannot honour constraints; use 'gradient-descent'")
        shape = np.shape(x0)
        a, b = problem.normal_equations()
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64).ravel()
        if a.shape != (b.size, b.size) or b.size != int(np.prod(shape)):
            raise InputError(
                f"normal equations of shape {a.shape}, {b.shape} do not fit x0 {shape}"
            )
        try:
            x = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), b)
            message = "solved by Cholesky factorisation"
        except np.linalg.LinAlgError:
            x = scipy.linalg.lstsq(a, b, check_finite=False)[0]
            message = "singular system: minimum-norm least-squares solution"
        x = x.reshape(shape)
        record: dict[str, float] = {"iteration": 1.0}
        if callable(getattr(problem, "value", None)):
            record["objective"] = float(problem.value(x))
        if callback is not None:
            callback(1, x, record)
        return SolverResult(x, 1, True, message, [record])
