"""Tb.Th + Tb.Sp of a 320³ trabecular volume vs scipy's distance transform and a Python peer.

Target (issue 12): both maps in <= 30 s and <= 2.5 GiB peak on 2 cores.

Baselines, timed in the same run:

- ``scipy.ndimage.distance_transform_edt`` of both phases alone: only the first
  of local thickness's five steps;
- ``localthickness.local_thickness`` (Dahl & Dahl 2023, ``pip install
  localthickness``) of both phases: a fast approximate local thickness by
  iterated dilation (it returns radii; doubled here to compare diameters).

Each contender runs in its own child process, so that its peak resident memory
(``getrusage`` of the child) is its own; the volume is built once, in another
child (the parent stays small: a child's peak counts the parent's memory at
the fork), and handed over as a ``.npy`` file. Besides wall time, each line
gives the child's CPU time (user + system), a figure that a busy machine
disturbs less. Run: ``python benchmarks/bench_thickness.py [size]``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from _timing import machine

TARGET = "<= 30 s, <= 2.5 GiB on 2 cores"


def run_part(part: str, path: str) -> dict:
    """Time one contender on the volume saved at ``path`` (in this process)."""
    if part == "build":
        from boneframe.phantom import trabecular_occupancy

        binary = trabecular_occupancy(int(path.rsplit("-", 1)[1][:-4]), seed=0) > 0.5
        np.save(path, binary)
        return {"bv_tv": float(binary.mean())}
    binary = np.load(path)
    if part == "boneframe":
        from boneframe.metrics.thickness import local_thickness

        local_thickness(np.zeros((4, 4, 4), dtype=bool) | (np.arange(4) < 2))  # load compiled code
        cpu0, t0 = _cpu(), time.perf_counter()
        bone = local_thickness(binary, phase="bone")
        marrow = local_thickness(binary, phase="marrow")
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        means = (bone.mean, marrow.mean)
        extra = {"edt_check": _edt_agrees(binary)}
    elif part == "scipy-edt":
        from scipy import ndimage

        cpu0, t0 = _cpu(), time.perf_counter()
        a = ndimage.distance_transform_edt(binary)
        del a
        b = ndimage.distance_transform_edt(~binary)
        del b
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        means, extra = (float("nan"), float("nan")), {}
    elif part == "localthickness":
        import localthickness

        cpu0, t0 = _cpu(), time.perf_counter()
        bone_r = localthickness.local_thickness(binary)
        bone_mean = 2 * float(bone_r[binary].mean())
        del bone_r
        marrow_r = localthickness.local_thickness(~binary)
        marrow_mean = 2 * float(marrow_r[~binary].mean())
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        means, extra = (bone_mean, marrow_mean), {}
    else:
        raise SystemExit(f"unknown part {part!r}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": seconds, "cpu": cpu, "peak_gib": peak, "means": means, **extra}


def _cpu() -> float:
    """CPU time (user + system) of this process so far (s)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _edt_agrees(binary: np.ndarray) -> float:
    """Largest difference between edt's and scipy's distances on a 64³ corner."""
    import edt
    from scipy import ndimage

    crop = np.ascontiguousarray(binary[:64, :64, :64])
    return float(
        np.abs(
            np.sqrt(edt.edtsq(crop, black_border=False)) - ndimage.distance_transform_edt(crop)
        ).max()
    )


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 320
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"binary-{size}.npy")
        results = {}
        for part in ("build", "boneframe", "scipy-edt", "localthickness"):
            out = subprocess.run(
                [sys.executable, __file__, "--part", part, path],
                check=True,
                capture_output=True,
                text=True,
            )
            results[part] = json.loads(out.stdout.strip().splitlines()[-1])
    bv_tv = results.pop("build")["bv_tv"]
    ours = results["boneframe"]
    print(
        f"machine: {machine()}; volume {size}^3, BV/TV {bv_tv:.3f}; "
        f"edt vs scipy distances max |diff| {ours['edt_check']:.1e} (tolerance 1e-5)"
    )
    for part, r in results.items():
        th, sp = r["means"]
        print(
            f"{part:>15}: {r['seconds']:7.2f} s (CPU {r['cpu']:6.2f} s) | "
            f"peak {r['peak_gib']:.2f} GiB | "
            f"Tb.Th {th:.3f} vox | Tb.Sp {sp:.3f} vox"
        )
    for part in ("scipy-edt", "localthickness"):
        ratio = results[part]["seconds"] / ours["seconds"]
        print(f"ratio {part} / boneframe: {ratio:.2f}x")
    lt_th, lt_sp = results["localthickness"]["means"]
    th, sp = ours["means"]
    print(
        f"localthickness vs boneframe (BoneJ) means: Tb.Th {100 * (lt_th / th - 1):+.1f} %, "
        f"Tb.Sp {100 * (lt_sp / sp - 1):+.1f} % (different algorithm: approximate dilation)"
    )
    print(
        f"Tb.Th + Tb.Sp {size}^3: boneframe {ours['seconds']:.2f} s, "
        f"{ours['peak_gib']:.2f} GiB | target {TARGET}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--part":
        print(json.dumps(run_part(sys.argv[2], sys.argv[3])))
    else:
        main()
