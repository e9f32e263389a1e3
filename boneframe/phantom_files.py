"""A synthetic micro-CT / HR-pQCT pair with a known kernel, written to a folder.

``boneframe phantom`` is this function. Up to :data:`LARGE_PHANTOM` voxels per
axis the pair is simulated in memory (:func:`boneframe.phantom.simulate_pair`);
above, or when a tile is asked for, the micro-CT is a periodic tiling of a
smaller phantom and both volumes are written chunk by chunk to zarr
(:mod:`boneframe.chunked.phantom`), so memory stays bounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.errors import InputError

__all__ = ["FORMATS", "LARGE_PHANTOM", "write_phantom"]

#: Phantoms larger than this (per axis) are written chunk by chunk.
LARGE_PHANTOM = 512
#: Output format -> file extension.
FORMATS = {"zarr": ".zarr", "npy": ".npy", "tif": ".tif", "tiff": ".tif", "nii": ".nii.gz"}


def write_phantom(
    out: str | os.PathLike[str],
    *,
    size: int = 64,
    seed: int = 0,
    kernel: np.ndarray,
    offset: float = 0.0,
    noise: float = 0.01,
    shading: float = 0.0,
    kernel_variation: float = 1.0,
    regions: tuple[int, int, int] = (1, 1, 4),
    bv_tv: float = 0.25,
    thickness: float = 3.0,
    voxel_size: float = 41.0,
    p: int = 2,
    format: str = "npy",
    tile: int = 0,
    overwrite: bool = False,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``hr``, ``lr``, ``kernel.npy`` and ``phantom.json`` into the folder ``out``.

    Parameters
    ----------
    out : path-like
        Output folder, written atomically (refused when it exists, unless
        ``overwrite``).
    size, seed : int
        High-resolution size per axis and random seed (same seed, same bytes).
    kernel : ndarray
        The blurring kernel of the simulated HR-pQCT (odd support).
    offset, noise, shading : float
        Grey-level shift ``c``, noise SD of the low-resolution scan, and a gain
        varying by ±shading across its last axis (in memory only).
    kernel_variation : float
        ``S >= 1``: the blur widens ``S`` times across the last axis
        (:class:`~boneframe.phantom_variation.KernelVariation`, in memory only);
        the true kernels of a ``regions`` grid are written to
        ``kernel_true_regional.npy`` (a regional kernel file, see
        :mod:`boneframe.kernel.regional`); ``kernel.npy`` is the base kernel.
    regions : 3 ints
        The grid of the true regional kernels.
    bv_tv, thickness : float
        Target bone volume fraction and trabecular thickness (HR voxels).
    voxel_size : float
        High-resolution voxel size, µm.
    p : int
        Resolution factor per axis.
    format : str
        ``zarr``, ``npy``, ``tif`` or ``nii``.
    tile : int
        Write chunk by chunk, the micro-CT a periodic tiling of a ``tile``³
        phantom; 0: automatic (256 above :data:`LARGE_PHANTOM`).
    overwrite : bool
        Replace an existing ``out``.
    info : dict, optional
        Extra entries for ``phantom.json`` (how the kernel was made).

    Returns
    -------
    dict
        The content of ``phantom.json`` (sizes, seed, files, ...).
    """
    from boneframe.io import atomic_path, write_json

    ext = FORMATS.get(format)
    if ext is None:
        raise InputError(f"unknown format {format!r}; choose zarr, npy, tif or nii")
    if tile == 0 and size > LARGE_PHANTOM:
        tile = 256
    if tile and format != "zarr":
        raise InputError(
            f"a {size}³ phantom is written chunk by chunk, which needs --format zarr "
            f"(or give --size <= {LARGE_PHANTOM})"
        )
    if tile and shading:
        raise InputError("--shading is not available for phantoms written chunk by chunk")
    if tile and kernel_variation != 1.0:
        raise InputError("--kernel-variation is not available for phantoms written chunk by chunk")
    with atomic_path(Path(out), overwrite=overwrite) as tmp:
        tmp.mkdir()
        if tile:
            from boneframe.chunked.phantom import write_large_acquisition, write_large_phantom

            hr = write_large_phantom(
                tmp / "hr.zarr", size, seed, tile=tile, voxel_size=voxel_size, noise=0.0
            )
            write_large_acquisition(
                hr, tmp / "lr.zarr", kernel=kernel, offset=offset, noise=noise, p=p, seed=seed
            )
            params: dict[str, Any] = {
                "size": [size] * 3,
                "seed": seed,
                "tile": tile,
                "offset": offset,
                "noise": noise,
                "p": [p] * 3,
            }
        else:
            from boneframe.io import write_volume
            from boneframe.phantom import simulate_pair

            pair = simulate_pair(
                size,
                seed,
                kernel=kernel,
                offset=offset,
                noise=noise,
                p=p,
                bv_tv=bv_tv,
                thickness=thickness,
                voxel_size_hr=voxel_size,
                shading=shading,
                kernel_variation=kernel_variation,
            )
            hr_vol, lr_vol = pair.volumes()
            write_volume(hr_vol, tmp / f"hr{ext}")
            write_volume(lr_vol, tmp / f"lr{ext}")
            params = dict(pair.params)
        np.save(tmp / "kernel.npy", kernel)
        files = {"hr": f"hr{ext}", "lr": f"lr{ext}", "kernel": "kernel.npy"}
        if kernel_variation != 1.0:
            truth = pair.regional_truth(regions)
            truth.save(tmp / "kernel_true_regional.npy")
            files["kernel_true_regional"] = "kernel_true_regional.npy"
            params["regions"] = list(truth.grid)
        content = {
            **params,
            **(info or {}),
            "voxel_size_lr_um": [voxel_size * p] * 3,
            "format": format,
            "files": files,
        }
        write_json(tmp / "phantom.json", content)
    return content
