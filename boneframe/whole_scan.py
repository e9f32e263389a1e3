r"""A whole-scan walk-through: contour → super-resolution → per-compartment metrics.

:func:`simulate_scan` makes a calibrated HR-pQCT section of a distal forearm
the way the paper's model says a scanner sees it: a synthetic radius and ulna
(:func:`boneframe.phantom_radius.radius_section`, drawn at half the scan's
voxel size, noise-free) is the truth ``f`` in mg HA/cm³, the scan is
:math:`g = U(h * f) + n` with a Gaussian point-spread function ``h`` of 60 µm
and noise of 50 mg HA/cm³, stored as the scanner's native integers with the
calibration in its metadata (as a Scanco AIM is).

:func:`run_whole_scan` then does what a researcher does with a cohort scan:

1. writes the scan (AIM when aimio-py is installed, else zarr) and reads it
   back lazily, as a whole scan is read;
2. contours it (:func:`boneframe.compartments.contour`, the dual-threshold
   method) and writes the three masks;
3. super-resolves it block by block, only the blocks that meet the periosteal
   mask (:func:`boneframe.superres.super_resolve` with ``mask``), with the known
   kernel, and writes the result with the scan's geometry and calibration;
4. evaluates the scan, the super-resolution and the truth in the same
   compartments (:func:`boneframe.evaluation.evaluate`: vBMD, areas, Ct.Th,
   Ct.Po, BV/TV, Tb.Th, Tb.Sp, Tb.N);
5. draws ``whole_scan.png``: the masks over the scan, and HR-pQCT, SR and
   truth inside the trabecular mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.kernel.result import Kernel
from boneframe.phantom import gaussian_kernel
from boneframe.phantom_radius import SCANCO_CALIBRATION, radius_section
from boneframe.progress import Reporter
from boneframe.volume import Volume

#: The demo's section: slices, rows, columns of the scan (82 µm voxels).
WHOLE_SCAN_SHAPE = (8, 448, 448)

#: The scanner's point-spread function (Gaussian, standard deviation), µm.
PSF_UM = 60.0

#: Noise of the scan, mg HA/cm³.
NOISE = 50.0

#: Kernel support (HR voxels per axis).
SUPPORT = 9


@dataclass(frozen=True)
class SimulatedScan:
    """A calibrated scan ``scan`` (native int16), its truth ``truth`` on the p-times
    finer grid (mg HA/cm³), the truth's compartments on that grid, and the kernel."""

    scan: Volume
    truth: Volume
    compartments: dict[str, Volume]
    kernel: Kernel


def simulate_scan(
    shape: tuple[int, int, int] = WHOLE_SCAN_SHAPE,
    voxel_size: float = 82.0,
    seed: int = 0,
    p: int = 2,
) -> SimulatedScan:
    """A calibrated HR-pQCT section made by the paper's model from a finer truth.

    Parameters
    ----------
    shape : 3 ints
        Slices, rows and columns of the scan.
    voxel_size : float
        The scan's voxel size, µm (the truth's is ``voxel_size / p``).
    seed : int
        Seed of the anatomy, the texture and the noise.
    p : int
        Resolution factor.

    Returns
    -------
    SimulatedScan
    """
    fine = radius_section(
        tuple(n * p for n in shape), voxel_size / p, seed, noise=0.0, blur=0.0
    )
    from boneframe.calibration import from_density, to_density

    density = to_density(fine.scan)  # float32, mg HA/cm³, calibrated as such
    truth = density.numpy()
    sigma = PSF_UM / (voxel_size / p)
    h = gaussian_kernel(sigma, SUPPORT)
    # a separable Gaussian cut at the kernel's support: the same kernel as ``h``
    blurred = ndimage.gaussian_filter(truth, sigma, mode="nearest", truncate=(SUPPORT // 2) / sigma)
    g = blurred[::p, ::p, ::p]
    g = g + np.random.default_rng(seed + 7).standard_normal(g.shape).astype(np.float32) * NOISE
    like = Volume(np.zeros((1, 1, 1)), metadata=dict(SCANCO_CALIBRATION))
    native = np.clip(np.rint(from_density(g, like)), -32768, 32767).astype(np.int16)
    scan = Volume(native, voxel_size=(voxel_size,) * 3, metadata=dict(SCANCO_CALIBRATION))
    kernel = Kernel(h, offset=0.0, p=(p,) * 3, voxel_size=(voxel_size / p,) * 3)
    comps = {name: getattr(fine, name) for name in ("periosteal", "trabecular", "cortical")}
    return SimulatedScan(
        scan=scan,
        truth=density.with_data(truth),
        compartments=comps,
        kernel=kernel,
    )


def run_whole_scan(
    out: str | Path,
    *,
    shape: tuple[int, int, int] = WHOLE_SCAN_SHAPE,
    seed: int = 0,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    max_iter: int = 300,
) -> dict[str, Any]:
    """Contour, super-resolve and evaluate a simulated whole scan into the folder ``out``.

    Parameters
    ----------
    out : path
        Output folder (written atomically): the scan, ``masks/``, ``sr`` (same
        format as the scan), ``truth.zarr``, ``evaluation.json``,
        ``whole_scan.png``.
    shape : 3 ints
        The scan's slices, rows and columns (82 µm voxels; at least 448 in-plane
        for the default radius and ulna).
    seed : int
        Seed of the simulation.
    overwrite : bool
        Replace an existing ``out``.
    reporter : Reporter, optional
        Progress (default: to stderr).
    max_iter : int
        ADMM iterations per block at most.

    Returns
    -------
    dict
        ``evaluation``: per volume (``scan``, ``sr``, ``truth``) the row of
        :func:`boneframe.evaluation.evaluate`; ``dice``: the contours against the
        truth's compartments; ``blocks``: solved and in all; ``seconds`` per step.
    """
    from boneframe.compartments import contour
    from boneframe.io import atomic_path, read_volume, write_json, write_volume
    from boneframe.superres import super_resolve

    rep = reporter or Reporter()
    sim = simulate_scan(shape, seed=seed)
    ext = ".aim" if _has_aimio() else ".zarr"
    seconds: dict[str, float] = {}
    with atomic_path(Path(out), overwrite=overwrite) as tmp:
        tmp.mkdir()
        scan_path = write_volume(sim.scan, tmp / f"scan{ext}")
        write_volume(sim.truth, tmp / "truth.zarr")
        scan = read_volume(scan_path)
        lazy = scan.with_data(_chunked(scan.data, 64))

        t0 = time.perf_counter()
        with rep.stage("contour"):
            masks = contour(scan)
        seconds["contour"] = time.perf_counter() - t0
        (tmp / "masks").mkdir()
        for name, mask in masks.items():
            write_volume(mask, tmp / "masks" / f"{name}{ext}")

        t0 = time.perf_counter()
        sr = super_resolve(lazy, sim.kernel, mask=masks["periosteal"], max_iter=max_iter)
        from boneframe.superres.blockwise import PROGRESS_TAG

        with rep.tasks("super-resolution", sr.solved or 0, PROGRESS_TAG):
            sr_path = write_volume(sr.volume, tmp / "sr.zarr")
        seconds["super_resolution"] = time.perf_counter() - t0
        sr_volume = read_volume(sr_path)

        from boneframe.evaluation import evaluate

        t0 = time.perf_counter()
        with rep.stage("evaluation"):
            rows = {
                "scan": evaluate(scan, masks),
                "sr": evaluate(sr_volume, masks),
                "truth": evaluate(sim.truth, masks),
            }
        seconds["evaluation"] = time.perf_counter() - t0
        dice = _dices(masks, sim)
        result = {
            "evaluation": rows,
            "dice": dice,
            "blocks": {"solved": sr.solved, "total": sr.blocks},
            "seconds": seconds,
            "scan": {"shape": list(scan.shape), "voxel_size_um": list(scan.voxel_size or ())},
        }
        write_json(tmp / "evaluation.json", result)
        from boneframe.whole_scan_figure import whole_scan_figure

        whole_scan_figure(scan, masks, sr_volume, sim.truth, tmp / "whole_scan.png")
    return result


def _chunked(data: Any, chunk: int) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        return data.rechunk(chunk)
    return da.from_array(np.asarray(data), chunks=chunk)


def _has_aimio() -> bool:
    try:
        import py_aimio  # noqa: F401
    except ImportError:
        return False
    return True


def _dices(masks: dict[str, Volume], sim: SimulatedScan) -> dict[str, float]:
    """DICE of each contour against the truth's compartment (decimated to the scan's grid),
    the radius only (the contouring keeps the largest bone)."""
    from boneframe.metrics.segmentation import dice

    p = sim.kernel.p
    out = {}
    # the truth of the bone the contour found (the radius): near its periosteal mask
    near = ndimage.binary_dilation(masks["periosteal"].numpy() != 0, iterations=3)
    for name, mask in masks.items():
        truth = sim.compartments[name].numpy()[:: p[0], :: p[1], :: p[2]] != 0
        if truth.shape != mask.shape:
            raise InputError("the truth's compartments do not match the scan's grid")
        out[name] = float(dice(mask.numpy(), truth & near))
    return out
