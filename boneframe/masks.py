"""Masks as volumes with a scan's geometry: read them, put them on another grid.

A mask is a :class:`~boneframe.volume.Volume` whose non-zero voxels are inside
(a Scanco mask AIM, a NIfTI, npy or zarr volume; a Scanco GOBJ contour file,
filled). :func:`mask_on_grid` puts it on the grid of the volume it restricts,
by geometry and not by shape, so a mask drawn on the HR-pQCT scan applies
unchanged to the super-resolved volume on the ``p`` times finer grid.

Grid convention. Both grids must share their direction, and each axis's voxel
sizes must be in an integer ratio. Mask voxel ``i`` stands for the cell from its
centre to the next centre, ``[x_i, x_i + s)`` along each axis (``s`` its voxel
size); a target voxel takes the value of the mask voxel whose cell holds its
centre. This is boneframe's convention for a change of resolution: the
decimation keeps voxels ``0, p, 2p, …`` and a super-resolved volume keeps the
input's origin (:func:`boneframe.superres.super_resolve`: fine voxel ``p i`` lies
on coarse voxel ``i``), so fine voxels ``p i … p i + p - 1`` are coarse voxel
``i``'s, fine voxel ``j`` lies in coarse voxel ``floor(j / p)``, and a coarse
grid covers the whole fine grid derived from it. On equal grids it is the
identity, whatever the origins' rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from boneframe.compute import is_lazy
from boneframe.errors import InputError, VolumeIOError
from boneframe.volume import Volume

#: Tolerance (in mask voxels) of a target centre on a mask cell's edge, and of ratios.
_EPS = 1e-4

Outside = Literal["refuse", "empty"]


def describe_geometry(volume: Volume) -> str:
    """One line: shape, voxel size (µm), origin (µm) and direction of a volume."""
    vs = "unknown" if volume.voxel_size is None else _numbers(volume.voxel_size)
    rows = "; ".join(_numbers(row) for row in np.asarray(volume.direction))
    return (
        f"shape {volume.shape}, voxel size {vs} µm, origin {_numbers(volume.origin)} µm, "
        f"direction [{rows}]"
    )


def _numbers(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def _refuse(mask: Volume, target: Volume, why: str) -> InputError:
    return InputError(
        f"the mask does not fit the volume's grid: {why}. Mask: {describe_geometry(mask)}. "
        f"Volume: {describe_geometry(target)}"
    )


def _as_bool(data: Any) -> Any:
    return data if data.dtype == bool else data != 0


def same_geometry(a: Volume, b: Volume) -> bool:
    """Same shape, voxel size, origin (to a thousandth of a voxel) and direction."""
    if a.shape != b.shape or (a.voxel_size is None) != (b.voxel_size is None):
        return False
    if not np.allclose(a.direction, b.direction, atol=1e-6):
        return False
    if a.voxel_size is None or b.voxel_size is None:
        return True
    vs = np.asarray(a.voxel_size)
    return bool(
        np.allclose(vs, np.asarray(b.voxel_size), rtol=_EPS, atol=0)
        and np.all(np.abs(np.subtract(a.origin, b.origin)) <= 1e-3 * vs.min())
    )


def grid_indices(
    mask: Volume, target: Volume, outside: Outside = "refuse"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per target axis, the mask index of each target voxel and whether it is inside the
    mask's grid (see the module's notes for the rule).

    Raises
    ------
    InputError
        With both geometries: the voxel size of either is unknown (and the shapes
        differ), the directions differ, a voxel-size ratio is not an integer or its
        inverse, or (``outside="refuse"``) the mask does not cover the target.
    """
    if mask.voxel_size is None or target.voxel_size is None:
        raise _refuse(mask, target, "a voxel size is unknown, so the grids cannot be matched")
    if not np.allclose(mask.direction, target.direction, atol=1e-6):
        raise _refuse(mask, target, "the directions differ")
    ms, ts = np.asarray(mask.voxel_size), np.asarray(target.voxel_size)
    for axis, (m, t) in enumerate(zip(ms, ts, strict=True)):
        ratio = max(m / t, t / m)
        if abs(ratio - round(ratio)) > _EPS * ratio:
            raise _refuse(
                mask,
                target,
                f"along axis {axis} the voxel sizes {m:g} and {t:g} µm are not in an integer ratio",
            )
    start = np.linalg.solve(mask.direction, np.subtract(target.origin, mask.origin)) / ms
    indices, inside = [], []
    for axis in range(3):
        u = start[axis] + np.arange(target.shape[axis]) * (ts[axis] / ms[axis])
        idx = np.floor(u + _EPS).astype(np.intp)
        ok = (idx >= 0) & (idx < mask.shape[axis])
        if outside == "refuse" and not ok.all():
            raise _refuse(mask, target, f"the mask does not cover the volume along axis {axis}")
        indices.append(np.clip(idx, 0, mask.shape[axis] - 1))
        inside.append(ok)
    return indices, inside


def mask_on_grid(mask: Volume, target: Volume, *, outside: Outside = "refuse") -> Any:
    """The mask's values (bool) on ``target``'s voxels, by geometry.

    Parameters
    ----------
    mask : Volume
        Non-zero inside.
    target : Volume
        The volume the mask restricts (numpy or dask data).
    outside : {"refuse", "empty"}
        Where ``target`` reaches beyond the mask's grid: refuse (default), or
        take it as outside the mask.

    Returns
    -------
    numpy or dask array of bool, of ``target``'s shape
        Lazy, in ``target``'s chunks, when ``target`` is; the mask's own data when
        the grids are the same.

    Raises
    ------
    InputError
        If the grids do not fit (the message gives both geometries); see
        :func:`grid_indices`. Without a voxel size on either side, only equal
        shapes are accepted.

    Examples
    --------
    >>> lr = Volume(np.array([[[0, 1]]], np.uint8), voxel_size=(80, 80, 80))
    >>> sr = Volume(np.zeros((2, 2, 4)), voxel_size=(40, 40, 40))  # p = 2, same origin
    >>> mask_on_grid(lr, sr)[0, 0].tolist()  # SR voxel j in LR voxel floor(j / 2)
    [False, False, True, True]
    """
    if same_geometry(mask, target):
        return _as_bool(mask.data)
    if (mask.voxel_size is None or target.voxel_size is None) and mask.shape == target.shape:
        return _as_bool(mask.data)  # no geometry to go by: the same grid, as the shapes say
    indices, inside = grid_indices(mask, target, outside)
    full = all(ok.all() for ok in inside)
    if not is_lazy(target.data):
        out = np.asarray(_as_bool(mask.data))[np.ix_(*indices)]
        return out if full else out & _outer(inside)
    return _lazy_take(_as_bool(mask.data), indices, None if full else inside, target.data.chunks)


def region_on(
    mask: Any, target: Any, *, what: str = "the mask", of: str = "the volume"
) -> Any:
    """``mask`` as booleans on ``target``'s voxels (non-zero inside).

    Two Volumes: by geometry (:func:`mask_on_grid`; a scan's mask applies to its
    super-resolution). Otherwise the mask's array (numpy or dask, as given), which
    must have ``target``'s shape (``target``: a Volume, an array or a shape).

    Raises
    ------
    InputError
        If the grids do not fit, or an array's shape is not ``target``'s (the
        message names ``what`` and ``of`` with both shapes).
    """
    if isinstance(mask, Volume) and isinstance(target, Volume):
        return mask_on_grid(mask, target)
    data = mask.data if isinstance(mask, Volume) else mask
    if not hasattr(data, "shape"):
        data = np.asarray(data)
    shape = tuple(int(n) for n in (target if isinstance(target, tuple) else target.shape))
    if tuple(data.shape) != shape:
        raise InputError(f"{what} has shape {tuple(data.shape)}, {of} {shape}")
    return _as_bool(data)


def _outer(flags: list[np.ndarray]) -> np.ndarray:
    return flags[0][:, None, None] & flags[1][None, :, None] & flags[2][None, None, :]


def _take(mask: np.ndarray, indices: list[np.ndarray], inside: list[np.ndarray] | None) -> Any:
    out = np.asarray(mask)[np.ix_(*indices)]
    return out if inside is None else out & _outer(inside)


def _lazy_take(
    mask: Any, indices: list[np.ndarray], inside: list[np.ndarray] | None, chunks: Any
) -> Any:
    """A dask array in ``chunks``: each block takes its voxels from the mask."""
    import dask
    import dask.array as da

    source = mask if is_lazy(mask) else dask.delayed(np.asarray(mask), pure=True)
    bounds = [np.cumsum((0, *c)) for c in chunks]
    grid: Any = np.empty(tuple(len(c) for c in chunks), dtype=object)
    for block in np.ndindex(*grid.shape):
        cut = [slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, block, strict=True)]
        idx = [ix[c] for ix, c in zip(indices, cut, strict=True)]
        ok = None if inside is None else [f[c] for f, c in zip(inside, cut, strict=True)]
        shape = tuple(len(i) for i in idx)
        if is_lazy(mask):
            part = source[idx[0]][:, idx[1]][:, :, idx[2]]
            grid[block] = part if ok is None else part & _outer(ok)
        else:
            task = dask.delayed(_take, pure=True)(source, idx, ok)
            grid[block] = da.from_delayed(task, shape=shape, dtype=bool)
    return da.block(grid.tolist())


# -- reading ------------------------------------------------------------------------------
def gobj_volume(path: str | Path) -> Volume:
    """A Scanco GOBJ contour file as a filled mask Volume in the scan's frame.

    aimio-py rasterises the contours (filled, holes of subtractive contours
    cleared) over their bounding box; the box's position (voxels of the scan,
    x y z) and the header's element size give the geometry, as the AIM reader
    (:mod:`boneframe.io.scanco`) gives a scan's: arrays ``(z, y, x)``, origin
    ``position * element_size`` (µm, x y z).

    Raises
    ------
    VolumeIOError
        If aimio-py is not installed or the file is not a GOBJ it can read.
    """
    from boneframe.io.scanco import ZYX_DIRECTION, import_aimio

    aimio = import_aimio()
    try:
        data, meta = aimio.read_gobj(str(path), value=1, crop="tight")
    except (OSError, ValueError) as exc:
        raise VolumeIOError(f"{path}: not a readable Scanco GOBJ contour file ({exc})") from None
    spacing_um = np.asarray(meta["spacing"], dtype=float) * 1000.0  # mm -> µm, x y z
    if not np.all(np.isfinite(spacing_um)) or np.any(spacing_um <= 0):
        raise VolumeIOError(f"{path}: the GOBJ header gives element size {list(spacing_um)} µm")
    origin = np.asarray(meta["position"], dtype=float) * spacing_um
    metadata = {"scanner_format": "Scanco GOBJ", "gobj_position": list(meta["position"])}
    return Volume(
        np.asarray(data) != 0,
        voxel_size=tuple(spacing_um[::-1]),
        origin=tuple(origin),
        direction=ZYX_DIRECTION,
        metadata=metadata,
    )


def read_mask(
    path: str | Path,
    like: Volume | None = None,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    outside: Outside | None = None,
) -> Volume:
    """Read a mask (non-zero inside) as a boolean Volume, optionally on ``like``'s grid.

    Parameters
    ----------
    path : path
        A volume any :func:`boneframe.io.read_volume` format reads (Scanco mask
        AIM, NIfTI, npy, zarr, ...) or a Scanco GOBJ contour file (``.gobj``,
        filled; needs aimio-py).
    like : Volume, optional
        Put the mask on this volume's grid (:func:`mask_on_grid`); the result
        has ``like``'s geometry.
    voxel_size : float or three floats, optional
        Override the file's voxel size (µm).
    outside : {"refuse", "empty"}, optional
        Where ``like`` reaches beyond the mask: default ``"empty"`` for a GOBJ
        (a contour file spans its contours' box only), ``"refuse"`` otherwise.

    Returns
    -------
    Volume
        Boolean data (lazy for a zarr mask not put on another grid).

    Raises
    ------
    InputError, VolumeIOError
        If the file cannot be read, or the mask does not fit ``like``'s grid.
    """
    p = Path(path)
    is_gobj = p.suffix.lower().split(";")[0] == ".gobj"
    if is_gobj:
        mask = gobj_volume(p)
        if voxel_size is not None:
            mask = mask.with_data(mask.data, voxel_size=voxel_size)
    else:
        from boneframe.io import read_volume

        mask = read_volume(p, voxel_size)
        mask = mask.with_data(_as_bool(mask.data))
    if like is None:
        return mask
    rule: Outside = outside or ("empty" if is_gobj else "refuse")
    data = mask_on_grid(mask, like, outside=rule)
    return like.with_data(data, metadata={"mask_of": str(p)})
