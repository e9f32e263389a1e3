"""What :func:`~boneframe.metrics.measure.measure` makes of its inputs before measuring.

The mask on the volume's grid (by geometry when both are Volumes), the
segmentation strategy asked for, and the metrics asked for (by name or as
instances, a calibrated volume's ``bmd`` with its calibration), each with why
it cannot be computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from boneframe.calibration import is_calibrated
from boneframe.errors import InputError
from boneframe.interfaces import Metric, Segmentation
from boneframe.metrics.density import NOT_CALIBRATED, BoneMineralDensity
from boneframe.volume import Volume

#: Why a metric without a mask-aware definition is reported None under a mask.
NO_MASK = "is not defined inside a mask yet"
#: Why a metric without a block form is not measured on a dask volume by default.
WHOLE_VOLUME = "has no chunk-by-chunk form: name it to measure it on the volume loaded into memory"


def mask_on_volume(volume: Any, mask: Any) -> Any:
    """The mask's array on the volume's voxels.

    Two Volumes: by geometry (:func:`boneframe.masks.mask_on_grid`; a mask on the
    HR-pQCT grid applies to a super-resolved volume). Otherwise the array as it
    is, which must then have the volume's shape.
    """
    if mask is None:
        return None
    if isinstance(mask, Volume) and isinstance(volume, Volume):
        from boneframe.masks import mask_on_grid

        return mask_on_grid(mask, volume)
    return mask


def segmentation_of(
    segmentation: str | Segmentation | None, params: Mapping[str, Any] | None = None
) -> Segmentation | None:
    """The segmentation strategy: an instance, or a registered name with ``params``.

    Raises
    ------
    InputError
        If parameters are given with an instance.
    PluginError
        If the name is not a registered segmentation.
    """
    if segmentation is None:
        if params:
            raise InputError("segmentation parameters are given without a segmentation")
        return None
    if isinstance(segmentation, Segmentation):
        if params:
            raise InputError("give a segmentation's parameters to its instance, not beside it")
        return segmentation
    from boneframe.registry import get_registry

    seg = get_registry().create("segmentation", str(segmentation), dict(params or {}))
    assert isinstance(seg, Segmentation)
    return seg


def default_names(
    volume: Any, defaults: Sequence[str], structure_names: Sequence[str]
) -> list[str]:
    """The default metrics: ``defaults``, ``bmd`` for a calibrated volume, the structure's."""
    calibrated = hasattr(volume, "metadata") and is_calibrated(volume)
    return [*defaults, *(("bmd",) if calibrated else ()), *structure_names]


def missing(metric: Metric, has_reference: bool, has_voxel_size: bool, masked: bool) -> str:
    """Why ``metric`` cannot run on these inputs ("" when it can)."""
    if metric.needs_reference and not has_reference:
        return "compares against a reference volume, and none is given"
    if metric.needs_voxel_size and not has_voxel_size:
        return "needs the voxel size (µm), and it is unknown"
    if isinstance(metric, BoneMineralDensity) and not metric.calibrated:
        return NOT_CALIBRATED
    if masked and not metric.uses_mask:
        return NO_MASK
    return ""


def metric_of(asked: str | Metric, volume: Any) -> Metric:
    """The metric asked for: an instance as given, a registered name created with its
    defaults (``bmd`` with the volume's calibration)."""
    if isinstance(asked, Metric):
        return asked
    from boneframe.registry import get_registry

    metric = get_registry().create("metric", asked)
    if isinstance(metric, BoneMineralDensity) and not metric.calibrated:
        metric = BoneMineralDensity.of(volume)
    assert isinstance(metric, Metric)
    return metric
