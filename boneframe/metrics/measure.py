"""All the bone metrics of a volume in one call, in memory or chunk by chunk: one engine.

:func:`measure` runs every :class:`~boneframe.interfaces.Metric` the same way
on a numpy array (the whole volume is one block) and on a dask array (every
chunk is a block, a dask task; a ``dask.distributed`` client, when one is
active, runs them), in passes over the blocks:

1. the value ranges of the volume (and the reference), for Otsu's histograms;
2. the histograms over those ranges, summed over the blocks: Otsu's thresholds;
3. one pass computing the partial results of every block-form metric and
   every shared quantity they read (χ, the labellings behind the Betti
   numbers, local thickness), reduced with each one's ``combine``
   (:mod:`boneframe.metrics.passes`); the blocks whose local thickness needs
   more halo than the pass holds (the halo depends on the data) run again,
   alone, with the halo they ask for;
4. ``finish`` of each metric; then the metrics without a block form (DA), on
   the volume in memory: a dask volume is loaded whole for them, which costs
   its size in memory (as float) plus a bone mask, so on a dask volume they are
   measured only when named (by default they are reported as None, with why).

A dask volume (with its reference and mask) of at most :data:`KEEP_BYTES` is
read once, before the first pass, and its chunks kept in memory for all of
them (a volume of one chunk is then measured as in memory, one block); a
larger one is read by each pass (each chunk once per pass).

With a mask the bone measured is ``bone & mask`` (the structure of the bone
inside the mask) and the marrow's thickness is that of ``mask & ~bone``; with a
segmentation strategy its bone replaces ``volume > threshold``
(:meth:`~boneframe.metrics.blocks.VolumeBlocks.bone`).

Integer counts are exact and the histogram rule is applied voxel by voxel, so
the thresholds, χ, the Betti numbers, BV/TV, DICE and Conn.D are identical in
memory and chunked; sums of floats (PSNR, Tb.Th) differ by rounding only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from boneframe.compute import compute
from boneframe.errors import InputError
from boneframe.interfaces import (
    BlockForm,
    Metric,
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
from boneframe.metrics.passes import Failed, Member, run_views
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

#: Bytes of a dask volume (with its reference and mask) read once and kept in memory
#: for the passes of a measurement; a larger one is read again by each pass (the
#: thresholds' two, then the metrics').
KEEP_BYTES = 512 * 2**20


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
    lazy = blocks.lazy  # a dask volume, even one kept in memory as a numpy array
    blocks = blocks.kept(KEEP_BYTES)
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
        if not reason and not explicit and lazy and not metric.has_block_form():
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
        value = values.get(name, Failed(skipped.get(name, "not computed")))
        if isinstance(value, Failed):
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
def _evaluate(
    blocks: VolumeBlocks, metrics: dict[str, Metric], context: MetricContext
) -> dict[str, Any]:
    """Each metric's value (or :class:`Failed`), every quantity computed once."""
    quantities = list(dict.fromkeys(q for m in metrics.values() for q in m.quantities()))
    blockwise = [q for q in quantities if q.has_block_form()]
    marrow = [q for q in blockwise if blocks.mask is not None and _marrow_thickness(q)]
    forms: list[tuple[Any, BlockForm]] = [(q, q) for q in blockwise if q not in marrow]
    forms += [(n, m) for n, m in metrics.items() if m.has_block_form() and m.has_own_block()]
    values: dict[Any, Any] = {}
    views = [(blocks, _members(blocks, forms, context, values))]
    if marrow:  # inside a mask: the bone-phase thickness of the marrow in the mask
        inside = blocks.marrow_in_mask()
        as_bone = [(q, replace(q, phase="bone", like="marrow")) for q in marrow]  # type: ignore[type-var]
        views.append((inside, _members(inside, as_bone, context, values)))
    totals: dict[Any, Any] = {}
    for (_, members), done in zip(views, run_views(views), strict=True):
        totals.update(done)
        for key, form, _ in members:
            if isinstance(key, Quantity):
                values[key] = _finish(form, done[key], context)

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
        data.values.update({q: v for q, v in values.items() if not isinstance(v, Failed)})
        for q in in_memory:
            values[q] = _call(q, data)
    ready = replace(context, values={q: v for q, v in values.items() if not isinstance(v, Failed)})

    out: dict[str, Any] = {}
    for name, m in metrics.items():
        failed = [values[q] for q in m.quantities() if isinstance(values[q], Failed)]
        if failed:
            out[name] = failed[0]
        elif m.has_block_form():
            out[name] = _finish(m, totals.get(name), ready)
        else:
            out[name] = _call(m, data)
    return out


def _marrow_thickness(q: Quantity) -> bool:
    return isinstance(q, PhaseThickness) and q.phase == "marrow"


def _members(
    blocks: VolumeBlocks,
    forms: Sequence[tuple[Any, BlockForm]],
    context: MetricContext,
    failed: dict[Any, Any],
) -> list[Member]:
    """``(key, form, halo)`` of the forms; those whose halo cannot be found go to ``failed``."""
    members: list[Member] = []
    for key, form in forms:
        try:
            if blocks.single:
                halo = 0
            elif isinstance(form, Quantity):
                halo = int(form.block_halo(blocks, context))
            else:
                halo = int(form.halo)
        except InputError as exc:
            failed[key] = Failed(str(exc))
            continue
        members.append((key, form, halo))
    return members


def _finish(form: BlockForm, total: Any, context: MetricContext) -> Any:
    if isinstance(total, Failed):
        return total
    try:
        return form.finish(total, context)
    except InputError as exc:
        return Failed(str(exc))


def _call(form: BlockForm, data: MetricInput | None) -> Any:
    try:
        return form(data)  # type: ignore[arg-type]
    except InputError as exc:
        return Failed(str(exc))


def _in_memory(
    blocks: VolumeBlocks, context: MetricContext, *, reference: bool, mask: bool
) -> MetricInput:
    """The volume in memory for the metrics without a block form (loads a dask volume).

    The bone is the measurement's (a segmentation's, inside the mask); the
    reference and the mask are loaded only when such a metric reads them.
    """
    volume, ref, inside, bone = compute(  # one graph: each chunk read once for all
        blocks.volume,
        blocks.reference if reference else None,
        blocks.mask if mask else None,
        blocks.bone,  # the segmentation's, inside the mask
    )
    return MetricInput(
        volume=np.asarray(volume),
        reference=None if ref is None else np.asarray(ref),
        voxel_size=context.voxel_size,
        threshold=context.threshold,
        reference_threshold=context.reference_threshold if reference else None,
        mask=None if inside is None else np.asarray(inside),
        bone=np.asarray(bone),
    )
