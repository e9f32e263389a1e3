"""Solver strategies."""

BUILTIN_SOLVERS: list[type] = []
