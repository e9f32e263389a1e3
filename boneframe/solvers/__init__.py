"""Solver strategies."""

from boneframe.solvers.admm import ADMM
from boneframe.solvers.exact import Exact
from boneframe.solvers.gradient_descent import GradientDescent

BUILTIN_SOLVERS: list[type] = [ADMM, Exact, GradientDescent]
