"""Similarity (data-term) strategies."""

BUILTIN_SIMILARITIES: list[type] = []
