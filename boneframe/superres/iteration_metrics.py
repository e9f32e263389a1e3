"""The bone metrics recorded at every super-resolution iteration (the paper's Figs. 2–5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ITERATION_METRICS",
    "STRUCTURE_EVERY",
    "STRUCTURE_ITERATION_METRICS",
    "iteration_metrics",
]

#: The metrics recorded at every iteration.
ITERATION_METRICS = ("psnr", "dice", "bv_tv", "conn_d")
#: Structure metrics recorded every :data:`STRUCTURE_EVERY`-th iteration.
STRUCTURE_ITERATION_METRICS = ("tb_th", "tb_sp")
STRUCTURE_EVERY = 10
#: The metrics recorded for every further segmentation.
SEGMENTED_METRICS = ("dice", "bv_tv", "conn_d")


def iteration_metrics(
    reference: np.ndarray,
    voxel_size: float | Sequence[float] | None,
    threshold: float | None = None,
    structure_every: int = STRUCTURE_EVERY,
    segmentations: Sequence[Any] = (),
) -> Callable[[np.ndarray], dict[str, float]]:
    """``f(x) -> {name: value}`` for a solver's per-iteration history.

    Every call gives :data:`ITERATION_METRICS` against ``reference`` (``conn_d``
    only with a voxel size), through :func:`boneframe.metrics.measure`; every
    ``structure_every``-th call, starting with the first, also Tb.Th and Tb.Sp
    (local thickness costs about as much as several ADMM iterations, so not every
    time; 0 never; only for isotropic voxels). The other calls leave them out, so
    the history has gaps there. Each of ``segmentations`` (registered names or
    :class:`~boneframe.interfaces.Segmentation` instances) adds DICE, BV/TV and
    Conn.D of its bone, under ``"<metric> · <segmentation>"``.
    """
    from boneframe.metrics import measure

    names = [n for n in ITERATION_METRICS if voxel_size is not None or n != "conn_d"]
    structure = (
        structure_every > 0
        and voxel_size is not None
        and len(set(np.atleast_1d(np.asarray(voxel_size, dtype=float)).tolist())) == 1
    )
    calls = 0

    def metric_fn(x: np.ndarray) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        wanted = list(names)
        if structure and (calls - 1) % structure_every == 0:
            wanted += list(STRUCTURE_ITERATION_METRICS)
        m = measure(x, reference, voxel_size=voxel_size, threshold=threshold, names=wanted)
        out = {k: m[k] for k in wanted if k in m}
        for seg in segmentations:
            also = [n for n in SEGMENTED_METRICS if n in names]
            s = measure(x, reference, voxel_size=voxel_size, segmentation=seg, names=also)
            out.update({f"{k} · {s['segmentation']['name']}": s[k] for k in also})
        return out

    return metric_fn
