"""Large volumes: write a tiled phantom to zarr, simulate its scan, measure it chunk by chunk.

    python benchmarks/bench_large_metrics.py [--sizes 256 512 1024] [--chunk 128] [--tile 256]

Target (issue 8): the chunked metrics of a 1024³ volume with a peak resident
memory below 2 GiB, time linear in the number of voxels.

For each size N, in order and each step in its own child process (so that its
peak resident memory, ``getrusage`` of the child, is its own):

1. ``phantom``: :func:`boneframe.chunked.phantom.write_large_phantom`, the N³
   micro-CT phantom tiled from a ``tile³`` periodic tile, written to zarr chunk
   by chunk (noise 0.01);
2. ``hr-pqct``: :func:`boneframe.chunked.phantom.write_large_acquisition`, its
   simulated HR-pQCT scan ``U(h * (f + c)) + n`` (p = 2), to zarr;
3. ``metrics``: :func:`boneframe.metrics.measure` of the zarr phantom read
   lazily, chunk by chunk (the metrics without a reference and without the
   structure ones: Otsu, BV/TV, TV, χ, β0, β1, β2, Conn.D, BoneJ's Conn.D);
4. at the smallest size only, the baseline: the in-memory
   :func:`boneframe.metrics.measure` of the same volume loaded whole
   (loading not timed), whose values the chunked ones must equal.

Each line gives wall time, CPU time (user + system, less disturbed by a busy
machine), the child's peak memory and the time per voxel (ns), which is flat
when the time is linear. The data lives in a temporary directory, deleted at
the end (a 1024³ float32 phantom is about 4 GiB on disk before compression).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import machine

TARGET_GIB = 2.0
VOXEL_UM = 41.0


def _cpu() -> float:
    """CPU time (user + system) of this process so far (s)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_step(step: str, folder: str, size: int, chunk: int, tile: int) -> dict:
    """Run one step in this (child) process; return its figures."""
    root = Path(folder)
    hr, lr = root / f"f{size}.zarr", root / f"g{size}.zarr"
    result: dict = {}
    if step == "phantom":
        from boneframe.chunked.phantom import write_large_phantom

        cpu0, t0 = _cpu(), time.perf_counter()
        vol = write_large_phantom(hr, size, seed=0, chunk=chunk, tile=tile, voxel_size=VOXEL_UM)
        result["chunks"] = list(vol.data.chunksize)
    elif step == "hr-pqct":
        from boneframe.chunked.phantom import write_large_acquisition

        cpu0, t0 = _cpu(), time.perf_counter()
        g = write_large_acquisition(hr, lr, offset=0.05, noise=0.01, seed=0)
        result["shape"] = list(g.shape)
    elif step == "metrics":
        from boneframe.io import read_volume
        from boneframe.metrics import measure

        vol = read_volume(hr)
        cpu0, t0 = _cpu(), time.perf_counter()
        result["values"] = measure(vol, structure=False)
    elif step == "in-memory":
        from boneframe.io import read_volume
        from boneframe.metrics import measure

        vol = read_volume(hr)
        vol = vol.with_data(vol.numpy())
        cpu0, t0 = _cpu(), time.perf_counter()
        result["values"] = measure(vol, structure=False)
    else:
        raise SystemExit(f"unknown step {step!r}")
    result["seconds"] = time.perf_counter() - t0
    result["cpu"] = _cpu() - cpu0
    result["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def _child(step: str, folder: str, size: int, chunk: int, tile: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--step", step, folder, str(size), str(chunk), str(tile)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> bool:
    """Chunked and in-memory values equal (integers exactly, floats to 1e-12)."""
    for key, want in b.items():
        got = a.get(key)
        if isinstance(want, float):
            if not math.isclose(got, want, rel_tol=1e-12):
                return False
        elif got != want and list(got or []) != list(want or []):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--chunk", type=int, default=128, help="zarr chunk edge (voxels)")
    parser.add_argument("--tile", type=int, default=256, help="period of the phantom (voxels)")
    parser.add_argument("--no-lr", action="store_true", help="skip the HR-pQCT simulation")
    args = parser.parse_args()

    steps = ["phantom", "hr-pqct", "metrics"]
    if args.no_lr and "hr-pqct" in steps:
        steps.remove("hr-pqct")

    print(
        f"machine: {machine()}; chunk {args.chunk}³, tile {args.tile}³; "
        f"each step in its own child process; target: 1024³ metrics peak < {TARGET_GIB} GiB"
    )
    header = ("size", "step", "wall s", "CPU s", "peak GiB", "wall ns/vox", "CPU ns/vox")
    print("{:>6} {:>10} {:>8} {:>8} {:>9} {:>11} {:>10}  notes".format(*header))
    baseline = None
    with tempfile.TemporaryDirectory(prefix="bench-large-") as folder:
        for n, size in enumerate(args.sizes):
            voxels = size**3
            runs = [(s, _child(s, folder, size, args.chunk, args.tile)) for s in steps]
            if n == 0 and size <= 512:  # a 1024³ volume whole takes ~13 GiB in memory
                baseline = _child("in-memory", folder, size, args.chunk, args.tile)
                runs.append(("in-memory", baseline))
            chunked = dict(runs)["metrics"]["values"]
            for step, r in runs:
                note = ""
                if step == "metrics":
                    v = r["values"]
                    note = (
                        f"BV/TV {v['bv_tv']:.4f}, χ {v['euler']:.0f}, β0 {v['betti0']:.0f}, "
                        f"β1 {v['betti1']:.0f}, β2 {v['betti2']:.0f}"
                    )
                    if size == 1024:
                        ok = "met" if r["peak_gib"] < TARGET_GIB else "MISSED"
                        note += f"; target {ok}"
                elif step == "in-memory":
                    note = "baseline; values " + (
                        "equal to the chunked ones" if _same(chunked, r["values"]) else "DIFFER"
                    )
                elif step == "hr-pqct":
                    note = f"LR shape {tuple(r['shape'])}"
                print(
                    f"{size:>5}³ {step:>10} {r['seconds']:8.2f} {r['cpu']:8.2f} "
                    f"{r['peak_gib']:9.2f} {1e9 * r['seconds'] / voxels:11.1f} "
                    f"{1e9 * r['cpu'] / voxels:10.1f}  {note}",
                    flush=True,
                )
            for path in Path(folder).iterdir():  # free the disk before the next size
                subprocess.run(["rm", "-rf", str(path)], check=True)
    if baseline is not None:
        print(
            f"in-memory baseline at {args.sizes[0]}³: {baseline['seconds']:.2f} s, "
            f"{baseline['peak_gib']:.2f} GiB peak (the volume loaded whole)"
        )
    print(f"scratch data under {tempfile.gettempdir()} ({os.cpu_count()} cores, shared or not)")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--step":
        _, _, step, folder, size, chunk, tile = sys.argv
        print(json.dumps(run_step(step, folder, int(size), int(chunk), int(tile))))
    else:
        main()
