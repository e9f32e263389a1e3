"""Peak memory of ``boneframe run`` on a zarr pair against the same run on npy files.

Target (issue 19): a spec with one L2 kernel stage on a 320³ / 160³ pair peaks,
from zarr (kept lazy: ``compute.chunk_size`` chunks, kernel boxes, chunked
metrics and figures), below 0.6 × the same run from npy (everything in memory),
with the same kernel. Each run is a child process timed by ``/usr/bin/time -f
%M`` (its peak resident set), the baseline (npy) measured in the same run.

Usage: ``python benchmarks/bench_run_memory.py [--size 320] [--chunk 128] [--structure]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import machine


def write_pair(folder: Path, size: int, chunk: int) -> None:
    """The phantom pair as npy (with sidecars) and as zarr (``chunk`` HR voxels)."""
    import dask.array as da

    from boneframe.io import write_volume
    from boneframe.phantom import simulate_pair
    from boneframe.volume import Volume

    hr, lr = simulate_pair(size, seed=0, offset=0.05, noise=0.01).volumes()
    for name, vol, c in (("hr", hr, chunk), ("lr", lr, chunk // 2)):
        write_volume(vol, folder / f"{name}.npy")
        lazy = Volume(da.from_array(vol.data, chunks=c), voxel_size=vol.voxel_size)
        write_volume(lazy, folder / f"{name}.zarr")


def run(folder: Path, ext: str, chunk: int, structure: bool) -> dict:
    """``boneframe run`` of the kernel-only spec on the ``ext`` files, in a child."""
    spec = {
        "version": 1,
        "inputs": {"files": {"hr": f"hr.{ext}", "lr": f"lr.{ext}"}},
        "kernels": [{"name": "l2", "similarity": "l2"}],
        "metrics": {"structure": structure},
        "compute": {"chunk_size": chunk},
    }
    path = folder / f"{ext}.json"
    path.write_text(json.dumps(spec))
    out = folder / f"{ext}-out"
    boneframe = Path(sys.executable).with_name("boneframe")
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", str(boneframe), "run", str(path), "--out", str(out),
         "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"boneframe run on {ext} failed:\n{proc.stderr}")
    peak_kib = int(proc.stderr.strip().splitlines()[-1])
    return {
        "peak_mib": peak_kib / 1024,
        "seconds": seconds,
        "kernel": np.load(out / "kernel_l2.npy"),
        "metrics": json.loads((out / "metrics.json").read_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320, help="HR size per axis")
    parser.add_argument("--chunk", type=int, default=128, help="compute.chunk_size (HR voxels)")
    parser.add_argument("--structure", action="store_true", help="also Tb.Th, Tb.Sp, Tb.N, DA")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_pair(folder, args.size, args.chunk)
        npy = run(folder, "npy", args.chunk, args.structure)
        zarr = run(folder, "zarr", args.chunk, args.structure)
    a, b = npy["kernel"], zarr["kernel"]
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(a))
    print(
        f"machine: {machine()}; {args.size}³ HR / {args.size // 2}³ LR, one L2 kernel stage, "
        f"chunk {args.chunk}, structure metrics {'on' if args.structure else 'off'}"
    )
    print(f"npy  (in memory, baseline): peak {npy['peak_mib']:.0f} MiB, {npy['seconds']:.1f} s")
    print(f"zarr (chunk by chunk):      peak {zarr['peak_mib']:.0f} MiB, {zarr['seconds']:.1f} s")
    print(
        f"ratio zarr / npy {zarr['peak_mib'] / npy['peak_mib']:.2f} (target < 0.6); "
        f"kernels differ by {rel:.1e} (relative L2)"
    )
    mn, mz = npy["metrics"]["volumes"], zarr["metrics"]["volumes"]
    for volume in mn:
        diffs = [
            f"{k} {mn[volume][k]:.6g} / {mz[volume][k]:.6g}"
            for k in ("bv_tv", "conn_d")
            if mn[volume].get(k) is not None
        ]
        print(f"  {volume}: " + ", ".join(diffs))


if __name__ == "__main__":
    main()
