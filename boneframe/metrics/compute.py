"""All the bone metrics of a volume (and its reference) in one call."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from boneframe.errors import InputError
from boneframe.interfaces import Metric, MetricInput
from boneframe.metrics.morphometry import cavities_of, components_of, euler_counts_of
from boneframe.metrics.psnr import psnr_of
from boneframe.metrics.segmentation import bone_of, threshold_of
from boneframe.volume import as_triple

#: Built-in metrics in report order; ``otsu`` is reported as ``threshold``.
DEFAULT_METRICS: tuple[str, ...] = (
    "psnr",
    "dice",
    "otsu",
    "bv_tv",
    "euler",
    "betti0",
    "betti1",
    "betti2",
    "conn_d",
    "conn_d_bonej",
)

_NEEDS_VOXEL_SIZE = frozenset({"conn_d", "conn_d_bonej", "tb_th", "tb_sp", "tb_n"})

#: The shared intermediates each built-in metric reads, beyond the bone masks.
_SHARED: dict[str, tuple[Callable[[MetricInput], Any], ...]] = {
    "euler": (euler_counts_of,),
    "betti0": (components_of,),
    "betti1": (euler_counts_of, components_of, cavities_of),
    "betti2": (cavities_of,),
    "conn_d": (euler_counts_of, components_of, cavities_of),
    "conn_d_bonej": (euler_counts_of,),
}


def default_metric_names(has_reference: bool, has_voxel_size: bool) -> list[str]:
    """The :data:`DEFAULT_METRICS` that apply: comparisons need a reference, the
    per-mm³ metrics a voxel size."""
    return [
        n
        for n in DEFAULT_METRICS
        if (has_reference or n not in ("psnr", "dice"))
        and (has_voxel_size or n not in _NEEDS_VOXEL_SIZE)
    ]


def _fill_cache(data: MetricInput, names: Sequence[str]) -> None:
    """Compute the intermediates the metrics share, side by side in threads.

    numpy's and scipy's loops release the GIL: binarising the volume and the
    reference and the PSNR run at once, then χ and the two labellings (β0, β2).
    """
    first: list[Callable[[MetricInput], Any]] = [lambda d: bone_of(d, "volume")]
    if "dice" in names:
        first.append(lambda d: bone_of(d, "reference"))
    if "psnr" in names:
        first.append(psnr_of)
    then = list(dict.fromkeys(fn for name in names for fn in _SHARED.get(name, ())))
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        for stage in (first, then):
            for future in [pool.submit(fn, data) for fn in stage]:
                future.result()


def compute_metrics(
    volume: Any,
    reference: Any = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    threshold: float | None = None,
    reference_threshold: float | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Bone metrics of ``volume`` (against ``reference`` when given), by name.

    Each volume is binarised once (``> threshold``, Otsu's unless given) and the
    binary volume, Euler counts and Betti numbers are shared between metrics
    (computed side by side in threads).

    Parameters
    ----------
    volume : array or Volume
        The volume measured (e.g. a super-resolved estimate).
    reference : array or Volume, optional
        Ground truth of the same shape, for ``psnr`` and ``dice``.
    voxel_size : float or three floats, optional
        Voxel size in µm (default: ``volume.voxel_size`` for a
        :class:`~boneframe.volume.Volume`); needed by ``conn_d`` and ``conn_d_bonej``.
    threshold, reference_threshold : float, optional
        Binarisation thresholds; default Otsu's threshold of each volume.
    names : sequence of str, optional
        Registered metric names (plugins' included). Default: every built-in
        metric that applies: ``psnr`` and ``dice`` only with a reference,
        ``conn_d`` and ``conn_d_bonej`` only with a voxel size.

    Returns
    -------
    dict
        ``threshold`` (the volume's binarisation threshold), then
        ``reference_threshold`` when a reference is given, ``voxel_size_um``
        (three floats, or None), then each metric's value (float) under its
        name, in the order asked; ``otsu`` is not repeated as it is the threshold
        unless ``threshold`` was given.

    Raises
    ------
    InputError
        If a metric needs a reference or a voxel size that is not given.
    PluginError
        If a name is not a registered metric.

    Examples
    --------
    >>> import numpy as np
    >>> bone = np.zeros((8, 8, 8)); bone[2:6, 2:6, 2:6] = 1.0
    >>> m = compute_metrics(bone, voxel_size=50)
    >>> m["bv_tv"], m["euler"], m["betti1"]
    (0.125, 1.0, 0.0)
    """
    from boneframe.registry import get_registry

    if voxel_size is None:
        voxel_size = getattr(volume, "voxel_size", None)
    vs = None if voxel_size is None else as_triple(voxel_size, "voxel size")
    if names is None:
        names = default_metric_names(reference is not None, vs is not None)
    registry = get_registry()
    metrics: list[Metric] = []
    for name in names:
        metric = cast(Metric, registry.create("metric", name))
        if metric.needs_reference and reference is None:
            raise InputError(f"metric {name!r} compares against a reference: give one")
        if name in _NEEDS_VOXEL_SIZE and vs is None:
            raise InputError(f"metric {name!r} is per mm³ and needs the voxel size (µm)")
        metrics.append(metric)

    data = MetricInput(
        volume=volume,
        reference=reference,
        voxel_size=vs,
        threshold=threshold,
        reference_threshold=reference_threshold,
    )
    _fill_cache(data, names)
    out: dict[str, Any] = {"threshold": threshold_of(data, "volume")}
    if reference is not None:
        out["reference_threshold"] = threshold_of(data, "reference")
    out["voxel_size_um"] = vs
    for metric in metrics:
        if metric.name == "otsu" and threshold is None:
            continue
        out[metric.name] = float(metric(data))
    return out


def all_metrics(
    volume: Any,
    reference: Any = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    threshold: float | None = None,
    structure: bool = True,
) -> dict[str, Any]:
    """:func:`compute_metrics` plus the trabecular structure metrics.

    The structure metrics (``tb_th``, ``tb_th_sd``, ``tb_th_max``, ``tb_sp``,
    ``tb_sp_sd``, ``tb_sp_max``, ``tb_n``, ``da``, ``mil_ratio``; see
    :func:`boneframe.metrics.thickness.structure_metrics`) are measured on the
    same binary volume when ``structure`` is true and the voxel size is known
    and isotropic; otherwise they are left out and ``structure_skipped`` says why.
    """
    import numpy as np

    from boneframe.metrics.thickness import structure_metrics

    out = compute_metrics(volume, reference, voxel_size=voxel_size, threshold=threshold)
    if not structure:
        return out
    vs = out.get("voxel_size_um")
    if vs is None:
        out["structure_skipped"] = "voxel size unknown"
    elif max(vs) - min(vs) > 1e-3 * max(vs):
        out["structure_skipped"] = f"anisotropic voxel size {tuple(vs)} µm"
    else:
        data = volume.numpy() if hasattr(volume, "require_voxel_size") else volume
        out.update(structure_metrics(np.asarray(data) > out["threshold"], vs))
    return out
