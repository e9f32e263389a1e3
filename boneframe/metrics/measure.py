"""All the bone metrics of a volume in one call, in memory or chunk by chunk: one engine.

:func:`measure` runs every :class:`~boneframe.interfaces.Metric` the same way
on a numpy array (the whole volume is one block) and on a dask array (every
chunk is a block, a dask task; a ``dask.distributed`` client, when one is
active, runs them), in passes that each read every chunk once:

1. the value ranges of the volume (and the reference), for Otsu's histograms;
2. the histograms over those ranges, summed over the blocks: Otsu's thresholds;
3. one pass computing the partial results of every block-form metric and
   every shared quantity they read (χ, the labellings behind the Betti
   numbers), reduced with each one's ``combine``; quantities whose halo
   depends on the data (local thickness) measure it first and run in a pass
   of their own;
4. ``finish`` of each metric; then the metrics without a block form (DA), on
   the volume in memory: a dask volume is loaded whole for them, which costs
   its size in memory (as float) plus a bone mask, so on a dask volume they are
   measured only when named (by default they are reported as None, with why).

With a mask the bone measured is ``bone & mask`` (the structure of the bone
inside the mask) and the marrow's thickness is that of ``mask & ~bone``; with a
segmentation strategy its bone replaces ``volume > threshold``
(:meth:`~boneframe.metrics.blocks.VolumeBlocks.bone`).

Integer counts are exact and the histogram rule is applied voxel by voxel, so
the thresholds, χ, the Betti numbers, BV/TV, DICE and Conn.D are identical in
memory and chunked; sums of floats (PSNR, Tb.Th) differ by rounding only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import (
    BlockForm,
    Metric,
    MetricBlock,
    MetricContext,
    MetricInput,
    Quantity,
    Segmentation,
)
from boneframe.metrics.blocks import VolumeBlocks
from boneframe.metrics.inputs import (
    NO_MASK,
    WHOLE_VOLUME,
    default_names,
    mask_on_volume,
    metric_of,
    missing,
    segmentation_of,
)
from boneframe.metrics.segmentation import Otsu
from boneframe.metrics.thresholds import thresholds
from boneframe.metrics.trabecular import PhaseThickness
from boneframe.volume import as_triple, as_volume

#: Built-in metrics measured by default, in report order; ``otsu`` is reported
#: as ``threshold`` unless a threshold is given.
DEFAULT_METRICS: tuple[str, ...] = (
    "psnr",
    "dice",
    "otsu",
    "bv_tv",
    "tv_mm3",
    "euler",
    "betti0",
    "betti1",
    "betti2",
    "conn_d",
    "conn_d_bonej",
)

#: The trabecular structure metrics, measured by default with ``structure=True``.
STRUCTURE_METRICS: tuple[str, ...] = (
    "tb_th",
    "tb_th_sd",
    "tb_th_max",
    "tb_sp",
    "tb_sp_sd",
    "tb_sp_max",
    "tb_n",
    "da",
    "mil_ratio",
)


@dataclass(frozen=True)
class _Failed:
    """A partial result or value that could not be computed, and why."""

    reason: str


def measure(
    volume: Any,
    reference: Any = None,
    mask: Any = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    threshold: float | None = None,
    reference_threshold: float | None = None,
    names: Sequence[str | Metric] | None = None,
    structure: bool = True,
    segmentation: str | Segmentation | None = None,
    segmentation_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bone metrics of ``volume`` (against ``reference``, inside ``mask``), by name.

    Parameters
    ----------
    volume : numpy array, dask array or Volume
        The volume measured (e.g. a super-resolved estimate). A dask array is
        measured chunk by chunk.
    reference : array or Volume, optional
        Ground truth of the same shape, for ``psnr`` and ``dice``.
    mask : array or Volume, optional
        Non-zero inside the region measured. A Volume mask of a Volume is put on
        its grid by geometry (:func:`boneframe.masks.mask_on_grid`: a mask on
        the HR-pQCT grid applies to a super-resolved volume); an array must have
        the volume's shape. The metrics with ``uses_mask`` measure inside it:
        BV/TV, TV, BMD, PSNR and DICE over its voxels; χ, the Betti numbers,
        Conn.D (per mask volume), Tb.Th, Tb.Sp, Tb.N and DA of the bone inside
        it (BoneJ's convention for a region: :mod:`boneframe.metrics.trabecular`).
        The others (BoneJ's edge-corrected Conn.D) are reported as None with a
        reason. Otsu's threshold is taken over the whole volume.
    voxel_size : float or three floats, optional
        Voxel size in µm (default: ``volume.voxel_size`` for a Volume).
    threshold, reference_threshold : float, optional
        Binarisation thresholds (bone is ``> threshold``); default Otsu's
        threshold of each volume (256 bins over its ``[min, max]``).
    names : sequence of str or Metric, optional
        Registered metric names (plugins' included), in the order reported, or
        metric instances with their parameters (e.g.
        ``TrabecularNumber(model="plate")``), reported under their name.
        Default: :data:`DEFAULT_METRICS`, ``bmd`` for a calibrated Volume, then
        :data:`STRUCTURE_METRICS` when ``structure``.
    structure : bool
        With the default names, also the trabecular structure metrics.
    segmentation : str or Segmentation, optional
        How the bone is told from the rest instead of ``volume > threshold``:
        a registered segmentation (``"otsu"``, ``"gauss-threshold"``, a
        plugin's) or an instance; then ``threshold`` is None in the result and
        ``segmentation`` says which (name and parameters). The reference is
        binarised as without one.
    segmentation_params : mapping, optional
        Parameters of a segmentation given by name.

    Returns
    -------
    dict
        ``threshold``, ``segmentation`` (with one), ``reference_threshold``
        (with a reference), ``voxel_size_um`` (three floats or None), then each
        metric's value (float, or None when it cannot be computed here) under
        its name (``otsu`` only when a threshold is given, as it is the
        threshold otherwise), ``units`` (``{name: unit}`` of every metric
        reported) and ``skipped`` (``{name: reason}`` of those reported as
        None; always present, empty when none is).

    Raises
    ------
    InputError
        If an array is not a 3-D real array or holds NaN or infinity (where a
        threshold is sought), the shapes (or, for Volumes, the geometries of
        the volume and the mask) do not match, both a threshold and a
        segmentation are given, or a metric asked for in ``names`` needs a
        reference, a voxel size or a calibration that is not given.
    PluginError
        If a name is not a registered metric or segmentation.

    Examples
    --------
    >>> import numpy as np
    >>> bone = np.zeros((8, 8, 8)); bone[2:6, 2:6, 2:6] = 1.0
    >>> m = measure(bone, voxel_size=50, names=["bv_tv", "euler", "betti1", "tv_mm3"])
    >>> m["bv_tv"], m["euler"], m["betti1"], m["units"]["tv_mm3"]
    (0.125, 1.0, 0.0, 'mm³')
    """
    if voxel_size is None:
        voxel_size = getattr(volume, "voxel_size", None)
    vs = None if voxel_size is None else as_triple(voxel_size, "voxel size")
    if vs is not None and min(vs) <= 0:
        raise InputError(f"voxel size must be positive, got {vs}")
    seg = segmentation_of(segmentation, segmentation_params)
    if seg is not None and threshold is not None:
        raise InputError("give a threshold or a segmentation, not both")
    mask = mask_on_volume(volume, mask)
    blocks = VolumeBlocks.of(volume, reference, mask)
    explicit = names is not None
    wanted = list(names) if names is not None else _default_names(volume, structure)
    metrics: dict[str, Metric] = {}
    skipped: dict[str, str] = {}
    for asked in wanted:
        metric = metric_of(asked, volume)
        name = metric.name
        if name in metrics:
            raise InputError(f"metric {name!r} is asked for twice")
        reason = missing(metric, reference is not None, vs is not None, mask is not None)
        if reason and explicit and reason != NO_MASK:
            raise InputError(f"metric {name!r} {reason}")
        if not reason and not explicit and blocks.lazy and not metric.has_block_form():
            reason = WHOLE_VOLUME
        metrics[name] = metric
        if reason:
            skipped[name] = reason

    otsu_asked = any(isinstance(m, Otsu) for n, m in metrics.items() if n not in skipped)
    context = thresholds(
        blocks,
        threshold,
        reference_threshold,
        need_otsu=(threshold is None and seg is None) or otsu_asked,
        need_reference=reference is not None and reference_threshold is None,
    )
    context = replace(context, voxel_size=vs, masked=mask is not None)
    blocks = blocks.binarised(context)
    if seg is not None:
        blocks = blocks.segmented_by(seg.segment(as_volume(volume, vs)))
    todo = {n: m for n, m in metrics.items() if n not in skipped}
    values = _evaluate(blocks, todo, context)

    out: dict[str, Any] = {"threshold": None if seg is not None else context.threshold}
    if seg is not None:
        out["segmentation"] = {"name": seg.name, **seg.params.model_dump()}
    if reference is not None:
        out["reference_threshold"] = context.reference_threshold
    out["voxel_size_um"] = vs
    units: dict[str, str] = {}
    for name, metric in metrics.items():
        if name == "otsu" and threshold is None and seg is None:
            continue  # it is the threshold
        value = values.get(name, _Failed(skipped.get(name, "not computed")))
        if isinstance(value, _Failed):
            skipped[name] = value.reason
            out[name] = None
        else:
            out[name] = float(value)
        units[name] = metric.unit
    out["units"] = units
    out["skipped"] = {n: skipped[n] for n in metrics if n in skipped and n in units}
    return out


def _default_names(volume: Any, structure: bool) -> list[str]:
    return default_names(volume, DEFAULT_METRICS, STRUCTURE_METRICS if structure else ())


# -- pass 3: the block forms -----------------------------------------------------------------
def _partials(
    b: MetricBlock, members: tuple[tuple[BlockForm, int], ...], threads: int = 1
) -> list[Any]:
    """The partial result of every member on one block (an InputError is kept as a reason)."""

    def one(member: tuple[BlockForm, int]) -> Any:
        form, halo = member
        try:
            return form.block(b.with_halo(halo))
        except InputError as exc:
            return _Failed(str(exc))

    if b.whole and threads > 1 and len(members) > 1:
        # in memory, numpy's, cc3d's and the compiled loops release the GIL
        with ThreadPoolExecutor(min(threads, len(members))) as pool:
            return list(pool.map(one, members))
    return [one(m) for m in members]


def _combine(members: tuple[tuple[BlockForm, int], ...], x: list[Any], y: list[Any]) -> list[Any]:
    out = []
    for (form, _), a, b in zip(members, x, y, strict=True):
        if isinstance(a, _Failed):
            out.append(a)
        elif isinstance(b, _Failed):
            out.append(b)
        else:
            out.append(form.combine(a, b))
    return out


def _evaluate(
    blocks: VolumeBlocks, metrics: dict[str, Metric], context: MetricContext
) -> dict[str, Any]:
    """Each metric's value (or :class:`_Failed`), every quantity computed once."""
    quantities = list(dict.fromkeys(q for m in metrics.values() for q in m.quantities()))
    blockwise = [q for q in quantities if q.has_block_form()]
    marrow = [q for q in blockwise if blocks.mask is not None and _marrow_thickness(q)]
    here = [q for q in blockwise if q not in marrow]
    totals, values = _run_blocks(blocks, metrics, here, context)
    for q in here:
        if q not in values:
            values[q] = _finish(q, totals[q], context)
    for q in marrow:  # inside a mask: the bone-phase thickness of the marrow in the mask
        assert isinstance(q, PhaseThickness)
        values[q] = _phase_in_mask(blocks, q, context)

    fallback = [m for m in metrics.values() if not m.has_block_form()]
    in_memory = [q for q in quantities if not q.has_block_form()]
    data = None
    if fallback or in_memory:
        data = _in_memory(
            blocks,
            context,
            reference=any(m.needs_reference for m in fallback),
            mask=any(m.uses_mask for m in fallback),
        )
        data.values.update({q: v for q, v in values.items() if not isinstance(v, _Failed)})
        for q in in_memory:
            values[q] = _call(q, data)
    ready = replace(context, values={q: v for q, v in values.items() if not isinstance(v, _Failed)})

    out: dict[str, Any] = {}
    for name, m in metrics.items():
        failed = [values[q] for q in m.quantities() if isinstance(values[q], _Failed)]
        if failed:
            out[name] = failed[0]
        elif m.has_block_form():
            out[name] = _finish(m, totals.get(name), ready)
        else:
            out[name] = _call(m, data)
    return out


def _marrow_thickness(q: Quantity) -> bool:
    return isinstance(q, PhaseThickness) and q.phase == "marrow"


def _phase_in_mask(blocks: VolumeBlocks, q: PhaseThickness, context: MetricContext) -> Any:
    """The marrow's thickness summary inside the mask: the bone-phase thickness of
    ``mask & ~bone`` (spheres that fit in the marrow and the mask)."""
    as_bone = replace(q, phase="bone")
    totals, failed = _run_blocks(blocks.marrow_in_mask(), {}, [as_bone], context)
    if as_bone in failed:
        return failed[as_bone]
    return _finish(as_bone, totals[as_bone], context)


def _run_blocks(
    blocks: VolumeBlocks,
    metrics: dict[str, Metric],
    quantities: list[Quantity],
    context: MetricContext,
) -> tuple[dict[Any, Any], dict[Quantity, Any]]:
    """The combined partials of the block-form quantities and metrics, in as few passes as
    their halos allow; and the quantities that failed before (their halo could not be found)."""
    members: list[tuple[Any, BlockForm, int]] = []  # (key, form, halo)
    failed: dict[Quantity, Any] = {}
    for q in quantities:
        try:
            halo = 0 if blocks.single else int(q.block_halo(blocks, context))
        except InputError as exc:
            failed[q] = _Failed(str(exc))
            continue
        members.append((q, q, halo))
    for name, m in metrics.items():
        if m.has_block_form() and m.has_own_block():
            members.append((name, m, 0 if blocks.single else int(m.halo)))
    totals: dict[Any, Any] = {}
    threads = max(1, min(4, os.cpu_count() or 1))
    for group in _passes(members, blocks.single):
        forms = tuple((form, halo) for _, form, halo in group)
        halo = max(h for _, h in forms)
        done = blocks.coarsened(halo).map_reduce(
            _partials, forms, threads, halo=halo, combine=functools.partial(_combine, forms)
        )
        totals.update(zip((key for key, _, _ in group), done, strict=True))
    return totals, failed


def _passes(members: list[tuple[Any, BlockForm, int]], single: bool) -> list[list]:
    """Members grouped into passes: one in memory; on dask, one per halo beyond a voxel."""
    if not members:
        return []
    if single:
        return [members]
    groups: dict[int, list] = {}
    for member in members:
        groups.setdefault(member[2] if member[2] > 1 else 1, []).append(member)
    return [groups[h] for h in sorted(groups)]


def _finish(form: BlockForm, total: Any, context: MetricContext) -> Any:
    if isinstance(total, _Failed):
        return total
    try:
        return form.finish(total, context)
    except InputError as exc:
        return _Failed(str(exc))


def _call(form: BlockForm, data: MetricInput | None) -> Any:
    try:
        return form(data)  # type: ignore[arg-type]
    except InputError as exc:
        return _Failed(str(exc))


def _in_memory(
    blocks: VolumeBlocks, context: MetricContext, *, reference: bool, mask: bool
) -> MetricInput:
    """The volume in memory for the metrics without a block form (loads a dask volume).

    The bone is the measurement's (a segmentation's, inside the mask); the
    reference and the mask are loaded only when such a metric reads them.
    """
    bone = blocks.bone  # the segmentation's, inside the mask: loaded with the volume
    return MetricInput(
        volume=np.asarray(blocks.volume),
        reference=np.asarray(blocks.reference)
        if reference and blocks.reference is not None
        else None,
        voxel_size=context.voxel_size,
        threshold=context.threshold,
        reference_threshold=context.reference_threshold if reference else None,
        mask=np.asarray(blocks.mask) if mask and blocks.mask is not None else None,
        bone=None if bone is None else np.asarray(bone),
    )
