r"""Bone metrics of a chunked (dask) volume, equal to the in-memory ones.

:func:`compute_metrics_chunked` gives the same names, values and keys as
:func:`boneframe.metrics.compute.compute_metrics`, reading the volume chunk by
chunk in three passes (each one ``dask.compute``, so a ``dask.distributed``
client, when one is active, runs them):

1. the global ``[min, max]`` of the volume (and the reference), and the sum of
   squared differences behind PSNR;
2. a histogram of :data:`~boneframe.metrics.segmentation.OTSU_BINS` bins over that
   range, summed over chunks: Otsu's threshold, exactly as in memory;
3. on the binarised volume: the Euler counts of each chunk with a one-voxel halo
   (:func:`~boneframe.metrics.morphometry.euler_block_counts`, additive), the
   bone and overlap voxel counts (BV/TV, DICE), and the components of the bone
   (26-connected, :math:`\beta_0`) and of the marrow (6-connected; those off the
   border are the cavities, :math:`\beta_2`) merged across chunk faces, edges and
   corners (:mod:`boneframe.chunked.labels`).

Every count is an integer and the histogram rule is applied voxel by voxel, so
the thresholds, χ, the Betti numbers, BV/TV, DICE and Conn.D are identical to the
in-memory ones; PSNR differs only by the order of a floating-point sum.
Memory is bounded by a few chunks (plus the label planes of the chunks' faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from boneframe.errors import InputError
from boneframe.metrics._arrays import check_volume_array
from boneframe.metrics.compute import DEFAULT_METRICS, default_metric_names
from boneframe.metrics.morphometry import EulerCounts, euler_block_counts, total_volume_mm3
from boneframe.metrics.psnr import psnr_from_error
from boneframe.metrics.segmentation import OTSU_BINS, histogram, otsu_from_histogram
from boneframe.volume import Triple, as_triple

#: Chunk shape given to an in-memory (numpy) input.
DEFAULT_CHUNK = 64

_NEEDS_REFERENCE = frozenset({"psnr", "dice"})
_NEEDS_VOXEL_SIZE = frozenset({"conn_d", "conn_d_bonej"})
_NEEDS_CHI = frozenset({"euler", "betti1", "conn_d", "conn_d_bonej"})
_NEEDS_BETTI0 = frozenset({"betti0", "betti1", "conn_d"})
_NEEDS_BETTI2 = frozenset({"betti1", "betti2", "conn_d"})


def _as_dask(x: Any, what: str) -> Any:
    """``x`` (dask, numpy or a Volume of either) as a checked 3-D dask array."""
    import dask.array as da

    if x is None:
        raise InputError(f"no {what} given")
    data = getattr(x, "data", x) if hasattr(x, "voxel_size") else x
    if not isinstance(data, da.Array):
        data = np.asarray(data)
        if data.ndim == 3:
            data = da.from_array(data, chunks=tuple(min(DEFAULT_CHUNK, n) for n in data.shape))
    check_volume_array(data, what)
    return data.astype(np.uint8) if data.dtype == bool else data


def _binarize(block: np.ndarray, threshold: float) -> np.ndarray:
    """``block > threshold``, exactly as :func:`boneframe.metrics.segmentation.binarize`."""
    return np.asarray(block) > threshold


def _squared_difference(f: np.ndarray, f_hat: np.ndarray) -> np.ndarray:
    diff = np.subtract(f, f_hat, dtype=np.float64)
    return np.asarray(np.vdot(diff, diff)).reshape(1, 1, 1)


def _check_range(lo: float, hi: float, what: str) -> tuple[float, float]:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"the {what} contains NaN or infinite values")
    return lo, hi


def _block_histogram(block: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    return histogram(block, OTSU_BINS, value_range).reshape(1, 1, 1, OTSU_BINS)


def _histogram_of(arr: Any, value_range: tuple[float, float]) -> Any:
    """A lazy histogram of ``arr`` over ``value_range``: the chunks' histograms summed."""
    per_chunk = arr.map_blocks(
        _block_histogram,
        value_range,
        new_axis=3,
        chunks=(1, 1, 1, OTSU_BINS),
        dtype=np.int64,
    )
    return per_chunk.sum(axis=(0, 1, 2))


def _block_euler(halo: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """8χ and 8Δχ of one halo'd chunk, shape ``(1, 1, 1, 2)``."""
    info = block_info[0] if block_info else {"chunk-location": (0, 0, 0), "num-chunks": (1, 1, 1)}
    border = tuple(
        (i == 0, i == n - 1)
        for i, n in zip(info["chunk-location"], info["num-chunks"], strict=True)
    )
    counts = euler_block_counts(halo, border)
    return np.array([counts.chi8, counts.correction8], dtype=np.int64).reshape(1, 1, 1, 2)


def _euler_of(mask: Any) -> Any:
    """A lazy ``[8χ, 8Δχ]`` of the volume, summed over chunks with a one-voxel halo."""
    import dask.array as da

    halo = da.overlap.overlap(mask, depth=1, boundary=0)
    per_chunk = halo.map_blocks(_block_euler, new_axis=3, chunks=(1, 1, 1, 2), dtype=np.int64)
    return per_chunk.sum(axis=(0, 1, 2))


def _check_names(names: Sequence[str] | None, has_reference: bool, vs: Triple | None) -> list[str]:
    if names is None:
        return default_metric_names(has_reference, vs is not None)
    names = list(names)
    unsupported = [n for n in names if n not in DEFAULT_METRICS]
    if unsupported:
        raise InputError(
            f"metric(s) {', '.join(map(repr, unsupported))} cannot be computed chunk by chunk; "
            f"chunked metrics are {', '.join(DEFAULT_METRICS)} (compute the others in memory)"
        )
    for name in names:
        if name in _NEEDS_REFERENCE and not has_reference:
            raise InputError(f"metric {name!r} compares against a reference: give one")
        if name in _NEEDS_VOXEL_SIZE and vs is None:
            raise InputError(f"metric {name!r} is per mm³ and needs the voxel size (µm)")
    return names


def compute_metrics_chunked(
    volume: Any,
    reference: Any = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    threshold: float | None = None,
    reference_threshold: float | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Bone metrics of a chunked ``volume``: :func:`~boneframe.metrics.compute_metrics`'s.

    Parameters
    ----------
    volume : dask.array.Array, numpy.ndarray or Volume
        The volume measured; a numpy array is split into chunks of
        :data:`DEFAULT_CHUNK` voxels per axis.
    reference : dask.array.Array, numpy.ndarray or Volume, optional
        Ground truth of the same shape, for ``psnr`` and ``dice`` (rechunked to
        the volume's chunks).
    voxel_size : float or three floats, optional
        Voxel size in µm (default: ``volume.voxel_size`` for a Volume); needed by
        ``conn_d`` and ``conn_d_bonej``.
    threshold, reference_threshold : float, optional
        Binarisation thresholds (bone is ``> threshold``); default Otsu's
        threshold of each volume (256 bins over its ``[min, max]``).
    names : sequence of str, optional
        Metrics among :data:`~boneframe.metrics.compute.DEFAULT_METRICS`.
        Default: each of them that applies (``psnr`` and ``dice`` only with a
        reference, ``conn_d`` and ``conn_d_bonej`` only with a voxel size).

    Returns
    -------
    dict
        ``threshold``, then ``reference_threshold`` when a reference is given,
        ``voxel_size_um`` (three floats or None), then each metric (float) under
        its name in the order asked (``otsu`` only when ``threshold`` was given,
        as it is the threshold otherwise): the same as ``compute_metrics``.

    Raises
    ------
    InputError
        If a metric has no chunked form (the trabecular structure metrics
        ``tb_th``, ``tb_sp``, ``tb_n``, ``da``, ``mil_ratio``, plugins), needs a
        reference or a voxel size that is not given, the shapes differ, or the
        data is not a 3-D real array or holds NaN or infinity.

    Notes
    -----
    Runs three ``dask.compute`` passes over the chunks (range, histogram,
    binary counts; see the module's notes); under an active
    ``dask.distributed`` client they run on its workers.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> bone = np.zeros((8, 8, 8)); bone[2:6, 2:6, 2:6] = 1.0
    >>> m = compute_metrics_chunked(da.from_array(bone, chunks=3), voxel_size=50)
    >>> m["bv_tv"], m["euler"], m["betti1"]
    (0.125, 1.0, 0.0)
    """
    import dask

    if voxel_size is None:
        voxel_size = getattr(volume, "voxel_size", None)
    vs = None if voxel_size is None else as_triple(voxel_size, "voxel size")
    names = _check_names(names, reference is not None, vs)
    vol = _as_dask(volume, "volume")
    ref = None if reference is None else _as_dask(reference, "reference")
    compare = ref is not None and any(n in _NEEDS_REFERENCE for n in names)
    if compare:
        assert ref is not None
        if ref.shape != vol.shape:
            raise InputError(
                f"the volume and the reference must have one shape, got {vol.shape} and {ref.shape}"
            )
        ref = ref.rechunk(vol.chunks)

    # -- pass 1: value ranges and the squared error -------------------------------
    need_otsu = threshold is None or "otsu" in names
    need_ref_otsu = ref is not None and reference_threshold is None
    first: dict[str, Any] = {}
    if need_otsu:
        first["lo"], first["hi"] = vol.min(), vol.max()
    if need_ref_otsu or (ref is not None and "psnr" in names):
        assert ref is not None
        first["ref_lo"], first["ref_hi"] = ref.min(), ref.max()
    if ref is not None and "psnr" in names:
        sq = ref.map_blocks(_squared_difference, vol, dtype=np.float64, chunks=(1, 1, 1))
        first["sse"] = sq.sum()
    got = dict(zip(first, dask.compute(*first.values()), strict=True)) if first else {}

    # -- pass 2: histograms, Otsu's thresholds -----------------------------------
    second: dict[str, Any] = {}
    if need_otsu:
        vrange = _check_range(float(got["lo"]), float(got["hi"]), "volume")
        second["volume"] = _histogram_of(vol, vrange)
    if need_ref_otsu:
        assert ref is not None
        rrange = _check_range(float(got["ref_lo"]), float(got["ref_hi"]), "reference")
        second["reference"] = _histogram_of(ref, rrange)
    hists = dict(zip(second, dask.compute(*second.values()), strict=True)) if second else {}
    otsu = otsu_from_histogram(hists["volume"], vrange) if need_otsu else None
    t = float(threshold) if threshold is not None else float(otsu)  # type: ignore[arg-type]
    rt = None
    if ref is not None:
        rt = (
            float(reference_threshold)
            if reference_threshold is not None
            else otsu_from_histogram(hists["reference"], rrange)
        )

    # -- pass 3: counts on the binary volume -------------------------------------
    from boneframe.chunked.labels import components_delayed

    asked = set(names)
    third: dict[str, Any] = {}
    mask = vol.map_blocks(_binarize, t, dtype=bool)
    if "bv_tv" in asked or "dice" in asked:
        third["bone"] = (mask.astype(np.int64)).sum()
    if "dice" in asked:
        assert ref is not None
        ref_mask = ref.map_blocks(_binarize, rt, dtype=bool)
        third["ref_bone"] = ref_mask.astype(np.int64).sum()
        third["both"] = (mask & ref_mask).astype(np.int64).sum()
    if asked & _NEEDS_CHI:
        third["chi"] = _euler_of(mask)
    if asked & _NEEDS_BETTI0:
        third["betti0"] = components_delayed(mask, 26)
    if asked & _NEEDS_BETTI2:
        third["betti2"] = components_delayed(mask, 6, invert=True)
    counts = dict(zip(third, dask.compute(*third.values()), strict=True)) if third else {}

    out: dict[str, Any] = {"threshold": t}
    if ref is not None:
        out["reference_threshold"] = rt
    out["voxel_size_um"] = vs
    chi = EulerCounts(*(int(c) for c in counts["chi"])) if "chi" in counts else None
    betti0 = int(counts["betti0"][0]) if "betti0" in counts else 0
    betti2 = int(counts["betti2"][0] - counts["betti2"][1]) if "betti2" in counts else 0
    shape = tuple(int(n) for n in vol.shape)
    for name in names:
        if name == "otsu":
            if threshold is None:
                continue
            value = float(otsu)  # type: ignore[arg-type]
        elif name == "psnr":
            peak = float(got["ref_hi"]) - float(got["ref_lo"])
            value = psnr_from_error(float(got["sse"]) / vol.size, peak)
        elif name == "dice":
            total = int(counts["bone"]) + int(counts["ref_bone"])
            value = 1.0 if total == 0 else 2.0 * int(counts["both"]) / total
        elif name == "bv_tv":
            value = int(counts["bone"]) / vol.size
        elif name == "euler":
            value = chi.euler  # type: ignore[union-attr]
        elif name == "betti0":
            value = betti0
        elif name == "betti2":
            value = betti2
        elif name == "betti1":
            value = betti0 + betti2 - chi.euler  # type: ignore[union-attr]
        elif name == "conn_d":
            value = (betti0 + betti2 - chi.euler) / total_volume_mm3(shape, vs)  # type: ignore[union-attr]
        else:  # conn_d_bonej
            assert chi is not None
            value = (1.0 - (chi.euler - chi.edge_correction)) / total_volume_mm3(shape, vs)
        out[name] = float(value)
    return out


def all_metrics_chunked(
    volume: Any,
    reference: Any = None,
    *,
    voxel_size: float | Sequence[float] | None = None,
    threshold: float | None = None,
    structure: bool = True,
) -> dict[str, Any]:
    """:func:`compute_metrics_chunked` plus Tb.Th, Tb.Sp and Tb.N, chunk by chunk.

    The large-volume counterpart of :func:`boneframe.metrics.compute.all_metrics`:
    the thickness metrics come from
    :func:`boneframe.chunked.thickness.thickness_metrics_chunked` on the same
    binary volume (isotropic voxels only). DA and the MIL ratio are not chunked:
    ``structure_skipped`` says so (and why anything else was left out).
    """
    out = compute_metrics_chunked(volume, reference, voxel_size=voxel_size, threshold=threshold)
    if not structure:
        return out
    vs = out.get("voxel_size_um")
    if vs is None:
        out["structure_skipped"] = "voxel size unknown"
    elif max(vs) - min(vs) > 1e-3 * max(vs):
        out["structure_skipped"] = f"anisotropic voxel size {tuple(vs)} µm"
    else:
        from boneframe.chunked.thickness import thickness_metrics_chunked

        data = volume.data if hasattr(volume, "require_voxel_size") else volume
        out.update(thickness_metrics_chunked(_as_dask(data, "volume") > out["threshold"], vs))
        out["structure_skipped"] = "DA and the MIL ratio are not computed chunk by chunk"
    return out
