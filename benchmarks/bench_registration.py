"""Rigid registration micro-CT -> HR-pQCT: time, peak memory and accuracy.

Cases (each run as ``run_registration`` on files, in a fresh process, so the peak
resident memory is the command's own):

- 100³ HR-pQCT (82 µm) / 350³ micro-CT (24 µm, int16). Target: < 30 s, < 2 GiB
  on 2 cores.
- with ``--big``: 216³ / 740³ (≈ 10 minutes budget), extrapolated to a 1500³
  micro-CT. Target: ≤ 15 min, ≤ 16 GiB.

Baseline, same pair, same process kind: SimpleITK with textbook settings on the
full-resolution images (learning rate 1, shrink 4-2-1, no smoothing of the
micro-CT, no high-pass).

Usage: ``python benchmarks/bench_registration.py [--big]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from _timing import machine

from boneframe.io import read_volume, write_volume
from boneframe.registration import (
    RegistrationParams,
    read_transform,
    transform_difference,
    write_transform,
)
from boneframe.registration.phantom import simulate_pair, synthetic_structure

TEXTBOOK = {
    "learning_rate": 1.0,
    "shrink_factors": [4, 2, 1],
    "smoothing_sigmas_mm": [0.164, 0.082, 0.0],
    "moving_fwhm_um": 0.0,
    "highpass_sigma_mm": 0.0,
    "min_overlap": 0.0,
}

CHILD = textwrap.dedent(
    """
    import json, re, sys, time
    from boneframe.registration import RegistrationParams, run_registration
    moving, fixed, out, params = sys.argv[1:5]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = run_registration(moving, fixed, out, RegistrationParams(**json.loads(params)))
        status = {"times_s": result.times_s, "cpu_s": result.cpu_s,
                  "iterations": result.iterations, "overlap": result.overlap}
    except Exception as exc:
        status = {"error": f"{type(exc).__name__}: {exc}"}
    status["wall_s"] = time.perf_counter() - t0
    status["cpu_total_s"] = time.process_time() - c0
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec
    hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())
    status["peak_gib"] = int(hwm.group(1)) / 2**20
    print(json.dumps(status))
    """
)


def make_pair(lr: int, moving: int, seed: int, folder: Path) -> None:
    """Simulate a pair whose micro-CT (``moving``³) sees the middle of the structure;
    write ``uct.npy``, ``hr.npy`` and the true transform ``truth.tfm`` to ``folder``."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    shift = rng.normal(size=3)
    shift *= 300.0 / np.linalg.norm(shift)
    # the HR-pQCT sees a wider structure than the micro-CT's field of view
    need = int(np.ceil((lr * 82.0 * 1.15 + 1000.0) / 24.0)) // 2 * 2
    structure = synthetic_structure(max(need, moving), seed, period=288)
    pair = simulate_pair(
        structure,
        angle_deg=4.0,
        axis=axis,
        translation_um=shift,
        lr_shape=lr,
        moving_shape=moving,
        seed=seed,
    )
    del structure
    write_volume(pair.moving, folder / "uct.npy", overwrite=True)
    write_volume(pair.fixed, folder / "hr.npy", overwrite=True)
    write_transform(pair.truth, folder / "truth.tfm", overwrite=True)


def run_child(folder: Path, name: str, params: dict) -> dict:
    out = folder / f"{name}.npy"
    for old in (out, out.with_suffix(".json"), out.with_suffix(".tfm")):
        old.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", CHILD, str(folder / "uct.npy"), str(folder / "hr.npy")]
    cmd += [str(out), json.dumps(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def accuracy(folder: Path, name: str) -> str:
    tfm = folder / f"{name}.tfm"
    if not tfm.is_file():
        return "no transform"
    truth = read_transform(folder / "truth.tfm")
    fixed = read_volume(folder / "hr.npy")
    angle, dist = transform_difference(read_transform(tfm), truth, fixed)
    return f"rotation error {angle:.4f} deg, worst point error {dist:.2f} um"


def case(lr: int, moving: int, seed: int, baseline: bool, cache: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_registration_") as tmp:
        folder = (cache or Path(tmp)) / f"pair_{lr}_{moving}_{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "truth.tfm").is_file():
            t0 = time.perf_counter()
            make_pair(lr, moving, seed, folder)
            print(
                f"  simulated {lr}^3 / {moving}^3 in {time.perf_counter() - t0:.0f} s", flush=True
            )
        ours = run_child(folder, "ours", {"min_overlap": 0.8})
        label = f"{lr}^3 HR-pQCT / {moving}^3 micro-CT"
        print(
            f"{label}: boneframe {ours['wall_s']:.1f} s wall, {ours['cpu_total_s']:.1f} s CPU, "
            f"peak {ours['peak_gib']:.2f} GiB, {accuracy(folder, 'ours')}; "
            f"stages {fmt_times(ours)}",
            flush=True,
        )
        if baseline:
            base = run_child(folder, "base", TEXTBOOK)
            print(
                f"{label}: textbook SimpleITK {base['wall_s']:.1f} s wall, "
                f"{base['cpu_total_s']:.1f} s CPU, peak {base['peak_gib']:.2f} GiB, "
                f"{base.get('error') or accuracy(folder, 'base')}",
                flush=True,
            )
        return ours


def fmt_times(status: dict) -> str:
    if "error" in status:
        return status["error"]
    wall, cpu = status["times_s"], status["cpu_s"]
    return ", ".join(f"{k} {wall[k]:.1f}/{cpu[k]:.1f}" for k in cpu) + " (s wall/CPU)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the 216^3 / 740^3 case")
    parser.add_argument("--cache", type=Path, help="keep the simulated pairs here and reuse them")
    args = parser.parse_args()
    print(f"machine: {machine()}; defaults {RegistrationParams().model_dump()}", flush=True)
    small = case(100, 350, 0, True, args.cache)
    print(
        f"target 100^3/350^3: < 30 s and < 2 GiB on 2 cores; got {small['wall_s']:.1f} s wall "
        f"({small['cpu_total_s']:.1f} s CPU), {small['peak_gib']:.2f} GiB",
        flush=True,
    )
    if args.big:
        big = case(216, 740, 1, False, args.cache)
        if "error" not in big:
            extrapolate(big, 740, 216)


def extrapolate(big: dict, n: int, lr: int) -> None:
    """Scale the big case's CPU times and memory to a 1500³ micro-CT (24 µm)."""
    scale = (1500 / n) ** 3
    cpu = big["cpu_s"]
    lr_big = 1500 * 24 / 82
    # reading, smoothing and resampling grow with the voxels; the optimisation costs
    # per metric sample, and the samples are capped (1e6) -- unless per-voxel set-up
    # (pyramid, high-pass) dominated, which would make it grow with the voxels too
    samples = min(0.25 * lr_big**3, 1e6) / min(0.25 * lr**3, 1e6)
    grows = (cpu["read"] + cpu["prepare"] + cpu["resample"]) * scale
    opt = cpu["optimise"] + cpu["evaluate"]
    low, high = grows + opt * samples, grows + opt * scale
    gib = 2.0**30
    # int16 micro-CT and fine grid grow; the slabs' working set stays (256 MiB budget)
    grow = (2 * (1500**3 - n**3) + 2 * 8 * (lr_big**3 - lr**3)) / gib
    print(
        f"1500^3 micro-CT, extrapolated from {n}^3: {low / 60:.1f} min (optimisation "
        f"bound by its capped samples) to {high / 60:.1f} min (if it grew with the "
        f"voxels) of CPU, about the wall time on an idle machine; peak "
        f"~{big['peak_gib'] + grow:.1f} GiB (measured peak + growth of the int16 micro-CT "
        "and the fine grid); target <= 15 min, <= 16 GiB",
        flush=True,
    )


if __name__ == "__main__":
    main()
