"""Automatic compartments (issue 21): DICE, time and memory of the dual-threshold
contouring, beside ORMIR_XCT's autocontour.

Figures:

1. DICE of the periosteal, trabecular and cortical masks against the truth of a
   synthetic forearm section (:func:`boneframe.phantom_radius.radius_section`:
   radius, ulna, soft tissue and fat, 82 µm voxels), for boneframe (the radius
   alone, the default, and both bones) and for ORMIR_XCT (``AutocontourKnee``'s
   periosteal mask of the largest bone and its endosteal step: what its
   ``autocontour`` runs per bone), with their times.
2. The time and peak memory of ``boneframe.compartments.contour`` on a slab of
   an XtremeCT scan (1536 × 1536 pixels, 10 slices), extrapolated linearly to
   the 110 slices of a full scan, and
3. measured on the full 1536 × 1536 × 110 scan (``--quick`` skips it; building
   it takes a minute and about 6 GiB).

Each contender runs in its own child process (its peak resident memory,
``getrusage``, is its own; "above input" subtracts the memory held once the scan
is loaded); the scans are built once, by another child, and handed over as
``.npy`` files. ORMIR_XCT runs in its own virtualenv (``ORMIR_PYTHON``, default
``/tmp/ormir-venv/bin/python``); when it cannot run, the reason is printed.

Target: well under a minute per full scan on 2 cores.
Run: ``python benchmarks/bench_contour.py [--quick] [--ormir-slab]``.
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

ORMIR_PYTHON = os.environ.get("ORMIR_PYTHON", "/tmp/ormir-venv/bin/python")
SECTION = {"shape": [8, 400, 400], "voxel_size": 82.0, "seed": 0, "radius_width": 16.0}
SLAB = {"shape": [10, 1536, 1536], "voxel_size": 82.0, "seed": 0}
FULL = {"shape": [110, 1536, 1536], "voxel_size": 82.0, "seed": 0}
NAMES = ("periosteal", "trabecular", "cortical")


def _rss_gib() -> float:
    """Resident memory of this process now (GiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _peak_gib() -> float:
    """Peak resident memory of this process since the last :func:`_reset_peak` (GiB)."""
    with open("/proc/self/status") as f:
        for row in f:
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> None:
    """Forget the peak so far (Linux: ``clear_refs`` 5), so that a warm-up's does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _dices(masks: dict, folder: str, bones: str) -> dict:
    labels = np.load(os.path.join(folder, "bones.npy"))
    keep = labels == 1 if bones == "largest" else labels > 0
    return {n: _dice(masks[n], np.load(os.path.join(folder, f"{n}.npy")) & keep) for n in NAMES}


def part_build(folder: str, spec: dict) -> dict:
    from boneframe.phantom_radius import radius_section

    t0 = time.perf_counter()
    section = radius_section(**{**spec, "shape": tuple(spec["shape"])})
    np.save(os.path.join(folder, "scan.npy"), section.scan.numpy())
    for name in (*NAMES, "bones"):
        np.save(os.path.join(folder, f"{name}.npy"), getattr(section, name).numpy())
    meta = {k: v for k, v in section.scan.metadata.items()}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"metadata": meta, "voxel_size": spec["voxel_size"]}, f)
    return {"seconds": time.perf_counter() - t0, "peak_gib": _peak_gib()}


def part_boneframe(folder: str, bones: str) -> dict:
    from boneframe.compartments import contour
    from boneframe.phantom_radius import radius_section
    from boneframe.volume import Volume

    contour(radius_section((2, 128, 128), 164.0, radius_width=12.0).scan)  # imports, warm caches
    _reset_peak()
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    scan = Volume(
        np.load(os.path.join(folder, "scan.npy")), meta["voxel_size"], metadata=meta["metadata"]
    )
    loaded = _rss_gib()
    cpu0, t0 = _cpu(), time.perf_counter()
    masks = contour(scan, bones=bones)
    seconds, cpu, peak = time.perf_counter() - t0, _cpu() - cpu0, _peak_gib()
    arrays = {n: masks[n].numpy() for n in NAMES}
    del masks, scan
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_gib": peak,
        "above_input_gib": peak - loaded,
        "dice": _dices(arrays, folder, bones),
    }


def part_ormir(folder: str) -> dict:
    import SimpleITK as sitk
    from ormir_xct.core.segmentation.autocontour.AutocontourKnee import AutocontourKnee

    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)["metadata"]
    native = np.load(os.path.join(folder, "scan.npy")).astype(np.float32)
    bmd = native * np.float32(meta["calibration_slope"]) + np.float32(meta["calibration_intercept"])
    image = sitk.GetImageFromArray(bmd)
    del native, bmd
    _reset_peak()
    loaded = _rss_gib()
    cpu0, t0 = _cpu(), time.perf_counter()
    contours = AutocontourKnee()
    peri = contours.get_periosteal_mask(image, 1)  # the largest bone, as autocontour's first
    cortex = contours.get_endosteal_mask(image, peri)  # it returns the cortical mask
    seconds, cpu, peak = time.perf_counter() - t0, _cpu() - cpu0, _peak_gib()
    p = sitk.GetArrayFromImage(peri) > 0
    c = sitk.GetArrayFromImage(cortex) > 0
    masks = {"periosteal": p, "trabecular": p & ~c, "cortical": p & c}
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_gib": peak,
        "above_input_gib": peak - loaded,
        "dice": _dices(masks, folder, "largest"),
    }


def run_part(
    part: str, folder: str, arg: str, python: str = sys.executable, timeout: float = 3600
) -> dict:
    """Run one part in a child process; its last stdout line is its JSON result."""
    cmd = [python, os.path.abspath(__file__), "--part", part, folder, arg]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    except OSError as exc:
        return {"error": f"cannot start {python}: {exc}"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def line(label: str, r: dict) -> str:
    if "error" in r:
        return f"{label}: not run ({r['error']})"
    d = r["dice"]
    return (
        f"{label}: DICE periosteal {d['periosteal']:.4f} trabecular {d['trabecular']:.4f} "
        f"cortical {d['cortical']:.4f} | {r['seconds']:.2f} s (cpu {r['cpu']:.2f} s) | "
        f"peak {r['peak_gib']:.2f} GiB ({r['above_input_gib']:.2f} above input)"
    )


def main(argv: list[str]) -> None:
    quick, ormir_slab = "--quick" in argv, "--ormir-slab" in argv
    print(f"machine: {os.cpu_count()} cores; target: full 1536x1536x110 scan well under 60 s")
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in (("section", SECTION), ("slab", SLAB)):
            folder = os.path.join(tmp, label)
            os.mkdir(folder)
            built = run_part("build", folder, json.dumps(spec))
            print(f"{label} {spec['shape']} built in {built['seconds']:.1f} s", flush=True)
            r = run_part("boneframe", folder, "largest")
            print(line("  boneframe (radius)", r), flush=True)
            print(
                line("  boneframe (both bones)", run_part("boneframe", folder, "all")), flush=True
            )
            if label == "section" or ormir_slab:
                ormir = run_part("ormir", folder, "", ORMIR_PYTHON, 1800)
                print(line("  ORMIR_XCT (radius)", ormir), flush=True)
            if label == "slab":
                if "error" not in r:
                    k = FULL["shape"][0] / SLAB["shape"][0]
                    print(
                        f"  extrapolated to {FULL['shape']}: {r['seconds'] * k:.1f} s, "
                        f"{r['above_input_gib'] * k:.2f} GiB above input (linear in slices)"
                    )
            for name in os.listdir(folder):
                os.remove(os.path.join(folder, name))
        if not quick:
            folder = os.path.join(tmp, "full")
            os.mkdir(folder)
            built = run_part("build", folder, json.dumps(FULL))
            print(
                f"full {FULL['shape']} built in {built['seconds']:.1f} s "
                f"(peak {built['peak_gib']:.1f} GiB)",
                flush=True,
            )
            print(
                line("  boneframe (radius)", run_part("boneframe", folder, "largest")), flush=True
            )
            print(
                line("  boneframe (both bones)", run_part("boneframe", folder, "all")), flush=True
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--part":
        part, folder, arg = sys.argv[2], sys.argv[3], sys.argv[4]
        if part == "build":
            result = part_build(folder, json.loads(arg))
        elif part == "boneframe":
            result = part_boneframe(folder, arg)
        else:
            result = part_ormir(folder)
        print(json.dumps(result))
    else:
        main(sys.argv[1:])
