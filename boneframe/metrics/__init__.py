"""Metric strategies."""

BUILTIN_METRICS: list[type] = []
