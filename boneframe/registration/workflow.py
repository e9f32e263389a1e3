"""Registration in one call: estimate the transform, refuse a failure, resample.

The micro-CT at full resolution is resampled once, onto the grid whose voxel
``p·i`` is HR-pQCT voxel ``i`` (:func:`~boneframe.registration.fine_grid`), so
that ``g = U(h * (f + c))`` holds on the pair.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from boneframe.errors import InputError
from boneframe.registration.optimise import (
    RegistrationError,
    RegistrationResult,
    estimate_transform,
)
from boneframe.registration.params import RegistrationParams
from boneframe.registration.resample import resample_to_fine_grid
from boneframe.registration.sitk import field_of_view_corners, write_transform
from boneframe.volume import Volume

__all__ = ["register", "register_and_resample", "run_registration"]


def register(
    moving: Volume, fixed: Volume, params: RegistrationParams | None = None, **kwargs: Any
) -> tuple[RegistrationResult, Volume]:
    """Register a micro-CT scan onto an HR-pQCT scan and resample it onto the fine grid.

    Parameters
    ----------
    moving : Volume
        Micro-CT at its own resolution (voxel size known; numpy or dask).
    fixed : Volume
        HR-pQCT scan (voxel size known).
    params : RegistrationParams, optional
        All parameters at once; the keywords override its fields.
    **kwargs
        Fields of :class:`RegistrationParams` (``p``, ``interp``, ``init``,
        ``seed``, ...), validated by it.

    Returns
    -------
    (RegistrationResult, Volume)
        What the optimisation found (transform fixed → moving points, metric
        values, times, versions) and the micro-CT on the HR-pQCT-aligned grid of
        spacing HR-pQCT / ``p``, its voxel ``p·(i + pad)`` on HR-pQCT voxel ``i``.

    Raises
    ------
    InputError
        An unknown or invalid parameter, a volume without voxel size, a mirrored pair.
    RegistrationError
        When less than ``min_overlap`` of the HR-pQCT maps inside the micro-CT
        after registration, or the metric did not improve.

    Examples
    --------
    >>> result, f = register(micro_ct, hr_pqct, p=2, interp="bspline")  # doctest: +SKIP
    >>> result.rotation_angle_deg, f.voxel_size                         # doctest: +SKIP
    """
    for name, vol in (("moving", moving), ("fixed", fixed)):
        if not isinstance(vol, Volume):
            raise InputError(
                f"{name} must be a Volume with its voxel size (boneframe.Volume(array, "
                f"voxel_size=...)), got {type(vol).__name__}"
            )
    base = params.model_dump() if params is not None else {}
    try:
        checked = RegistrationParams.model_validate({**base, **kwargs})
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'parameters'}: {e['msg']}"
            for e in exc.errors()
        )
        raise InputError(f"invalid registration parameters: {reasons}") from exc
    return register_and_resample(moving, fixed, checked)


def register_and_resample(
    moving: Volume, fixed: Volume, params: RegistrationParams | None = None
) -> tuple[RegistrationResult, Volume]:
    """:func:`estimate_transform`, refuse a failed registration, resample onto the fine grid.

    :func:`register` with a :class:`RegistrationParams` object.

    Raises
    ------
    RegistrationError
        When less than ``params.min_overlap`` of the HR-pQCT maps inside the
        micro-CT, or the final metric is no better than the initial one.
    """
    params = params or RegistrationParams()
    result = estimate_transform(moving, fixed, params)
    if result.overlap < params.min_overlap:
        raise RegistrationError(
            f"registration failed: only {100 * result.overlap:.1f}% of the HR-pQCT lies "
            f"inside the micro-CT after registration (at least {100 * params.min_overlap:.0f}% "
            "needed). Crop the HR-pQCT to the micro-CT's field of view, or check the start"
        )
    if not result.improved:
        raise RegistrationError(
            f"registration failed: the final metric {result.metric_final:.5f} is no better "
            f"than the initial {result.metric_initial:.5f} (Mattes MI, lower is better). "
            "Try --init moments or a starting .tfm, or check that the scans show the same bone"
        )
    t0, c0 = time.perf_counter(), time.process_time()
    fine = resample_to_fine_grid(
        moving, fixed, result.transform, params.p, params.interp, pad=params.pad
    )
    result.times_s["resample"] = time.perf_counter() - t0
    result.cpu_s["resample"] = time.process_time() - c0
    return result, fine


def run_registration(
    moving_path: str | os.PathLike[str],
    fixed_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    params: RegistrationParams | None = None,
    overwrite: bool = False,
    *,
    moving_voxel_size: float | tuple[float, float, float] | None = None,
    fixed_voxel_size: float | tuple[float, float, float] | None = None,
) -> RegistrationResult:
    """Register a micro-CT file to an HR-pQCT file and write the resampled micro-CT.

    Writes, each atomically: ``OUT`` (the micro-CT on the HR-pQCT-aligned fine
    grid, format by extension), ``<stem>.tfm`` (the transform, ITK-readable) and
    ``<stem>.json`` (geometry, every parameter, library versions, metric values,
    iterations, stop reason, times).

    Parameters
    ----------
    moving_path, fixed_path : path-like
        Micro-CT and HR-pQCT scans.
    out_path : path-like
        Output volume.
    params : RegistrationParams, optional
    overwrite : bool
        Replace existing outputs.
    moving_voxel_size, fixed_voxel_size : float or 3 floats, optional
        Voxel sizes (µm) overriding the files'.

    Raises
    ------
    RegistrationError
        When the final metric is no better than the initial one, or less than
        ``params.min_overlap`` of the HR-pQCT maps inside the micro-CT; nothing
        is written then.
    """
    from boneframe.io import sidecar_path
    from boneframe.io.atomic import reserve
    from boneframe.io.unit import reserve_volume

    params = params or RegistrationParams()
    out = Path(out_path)
    tfm = sidecar_path(out).with_suffix(".tfm")
    with contextlib.ExitStack() as held:  # both outputs are ours for the whole run
        held.enter_context(reserve_volume(out, overwrite))
        held.enter_context(reserve(tfm, overwrite))
        return _register_files(
            moving_path, fixed_path, out, tfm, params, overwrite,
            moving_voxel_size, fixed_voxel_size,
        )  # fmt: skip


def _register_files(
    moving_path: str | os.PathLike[str],
    fixed_path: str | os.PathLike[str],
    out: Path,
    tfm: Path,
    params: RegistrationParams,
    overwrite: bool,
    moving_voxel_size: float | tuple[float, float, float] | None,
    fixed_voxel_size: float | tuple[float, float, float] | None,
) -> RegistrationResult:
    """:func:`run_registration` once its outputs are reserved."""
    from boneframe.io import read_volume, write_volume
    from boneframe.io.atomic import mark_absent, remove_path

    t0, c0 = time.perf_counter(), time.process_time()
    moving = read_volume(moving_path, moving_voxel_size)
    fixed = read_volume(fixed_path, fixed_voxel_size)
    t1, c1 = time.perf_counter(), time.process_time()
    result, fine = register_and_resample(moving, fixed, params)
    result.times_s["read"] = t1 - t0
    result.cpu_s["read"] = c1 - c0
    report = {
        "command": "register",
        "moving": str(moving_path),
        "fixed": str(fixed_path),
        "transform_file": tfm.name,
        "fine_grid": {
            "p": params.p,
            "pad": params.pad,
            "note": "output voxel p*(i + pad) lies on HR-pQCT voxel i",
        },
        "moving_geometry": _geometry(moving),
        "fixed_geometry": _geometry(fixed),
        **result.to_json(),
    }
    report["times_s"]["total_before_writing"] = time.perf_counter() - t0
    # the volume and its sidecar (which holds the transform too) are the unit; the
    # .tfm copy for ITK tools comes last, so a killed run never leaves it alone
    if tfm.exists():  # the old .tfm must not outlive its volume if we are killed
        remove_path(tfm)
        mark_absent(tfm)
    write_volume(fine, out, overwrite=overwrite, sidecar=report)
    write_transform(result.transform, tfm, overwrite=overwrite)
    return result


def _geometry(v: Volume) -> dict[str, Any]:
    corners = field_of_view_corners(v)
    return {
        "shape": list(v.shape),
        "dtype": str(v.dtype),
        "voxel_size_um": list(v.require_voxel_size()),
        "origin_um": list(v.origin),
        "direction": v.direction.tolist(),
        "fov_min_um": corners.min(axis=0).tolist(),
        "fov_max_um": corners.max(axis=0).tolist(),
    }
