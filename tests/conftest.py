"""Shared fixtures: the optional real-data folder and small helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRABECULAR = SHARED / "data" / "trabecular"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def real_mask() -> np.ndarray:
    """A real micro-CT trabecular mask (P7, BV/TV 0.25); skips when absent."""
    path = TRABECULAR / "P7_mask.nii.gz"
    if not path.is_file():
        pytest.skip("shared trabecular data not available")
    import nibabel

    return np.asarray(nibabel.load(str(path)).dataobj) > 0.5


def dot_test(forward, adjoint, x: np.ndarray, y: np.ndarray, rtol: float = 1e-6) -> None:
    """Check ``<A x, y> == <x, A^T y>`` to ``rtol`` (relative to the magnitudes)."""
    ax = forward(x)
    aty = adjoint(y)
    assert ax.shape == y.shape, (ax.shape, y.shape)
    assert aty.shape == x.shape, (aty.shape, x.shape)
    lhs = float(np.vdot(ax, y))
    rhs = float(np.vdot(x, aty))
    scale = np.linalg.norm(ax) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(aty)
    assert abs(lhs - rhs) <= rtol * scale, (lhs, rhs)


def lab_plugin_registry(monkeypatch: pytest.MonkeyPatch, module: str) -> Any:
    """The installed plugins plus ``module`` (a test module with hooks) as the
    plugin ``lab``, made the registry every lookup uses for the test."""
    import importlib.metadata as md

    import boneframe.registry

    group = boneframe.registry.ENTRY_POINT_GROUP
    lab = md.EntryPoint(name="lab", value=module, group=group)
    registry = boneframe.registry.Registry([*md.entry_points(group=group), lab])
    assert not registry.failures, registry.failures
    monkeypatch.setattr(boneframe.registry, "get_registry", lambda: registry)
    return registry
