"""Block-wise TV super-resolution of large volumes, zarr to zarr: time, peak memory, agreement.

Each case runs in a child process that reports its own peak resident memory,
``VmHWM`` of ``/proc/self/status`` (``ru_maxrss`` of a child, from
``os.wait4`` or ``RUSAGE_CHILDREN``, would also count the parent's pages
resident when it forked); an "imports only" child gives the memory every case
starts from. Cases:

* ``blockwise``: :func:`boneframe.superres.super_resolve` of the zarr volume (lazy: block by block)
  from an LR zarr to an HR zarr (normalisation pass, solves and writes block by
  block, dask's threaded scheduler, one FFT thread per block);
* ``whole``: the LR zarr read into memory, :func:`boneframe.superres.super_resolve`
  (all cores for the FFTs), the HR volume written to zarr: the in-memory
  baseline, run up to ``--whole-max``.

For every size that has both, the PSNR of the block-wise result against the
whole-volume one (peak: the latter's range) is printed.

The LR volumes come from one simulated pair (``simulate_pair``, 1 % noise, the
default 9³ kernel, p = 2) of ``--base`` LR voxels per axis: smaller sizes are
crops of it, larger ones mirror-tilings (continuous across the seams).

    python benchmarks/bench_large_superres.py [--sizes 64,128,256] [--whole-max 128]
        [--block 64] [--halo 8] [--max-iter N]

``--max-iter N`` runs exactly N ADMM iterations everywhere (tol 0), for timings
per iteration on sizes too large to solve to convergence in the time at hand.

Measured 2026-11-25 on 2 cores shared with other jobs (load average 5-9, so
times are only indicative), block 64, halo 8, to tol 1e-3:

====  ====  =========  ========  =========  ========  =============
LR    HR    case       time s    ns/HR vox  peak GiB  PSNR vs whole
====  ====  =========  ========  =========  ========  =============
64    128   whole          27.6      13165      --     --
64    128   blockwise      25.5      12153      --     identical (one block)
128   256   whole         130.1       7755      2.15   --
128   256   blockwise     169.9      10127      1.05   55.8 dB
256   512   blockwise    1391.1      10365      1.34   --
====  ====  =========  ========  =========  ========  =============

Peak memory of the 64 and 128 rows comes from a ``--max-iter 10`` run (the
arrays are all allocated by the first iteration): 0.53 GiB for both 64 rows;
the children start at 0.12 GiB. That run took 295.5 s for 256 -> 512
(220 ns per HR voxel and iteration, 1.32 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import machine  # noqa: E402


def _solver_kwargs(max_iter: int | None) -> dict:
    return {} if max_iter is None else {"max_iter": max_iter, "tol": 0.0}


def peak_rss_gib() -> float:
    """Peak resident memory of this process since its ``exec`` (GiB), from ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource  # not on Linux: ru_maxrss (KiB there too on most systems)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(args: argparse.Namespace) -> None:
    """One case, in this (child) process; prints one JSON line."""
    from boneframe.io import read_volume, write_volume

    if args.child == "imports":
        import dask.array  # noqa: F401

        from boneframe.superres import super_resolve  # noqa: F401

        print(json.dumps({"seconds": 0.0, "peak_gib": peak_rss_gib()}))
        return
    from boneframe.superres import super_resolve

    kernel = np.load(args.kernel)
    kwargs = _solver_kwargs(args.max_iter)
    t0 = time.perf_counter()
    g = read_volume(args.lr)
    if args.child == "blockwise":  # the lazy volume: solved block by block as it is written
        res = super_resolve(g, kernel, block=args.block, halo=args.halo, **kwargs)
        write_volume(res.volume, args.out)
        info = {"scale": res.scale}
    else:
        res = super_resolve(g.with_data(g.numpy()), kernel, **kwargs)
        write_volume(res.volume, args.out)
        info = {"scale": res.scale, "iterations": res.iterations}
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_gib": peak_rss_gib(), **info}))


def run_child(*extra: str) -> tuple[dict, float]:
    """Run this script as a child case; its JSON result and its peak RSS (GiB)."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *extra],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {extra} failed with code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, float(result["peak_gib"])


def mirror_tile(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` cropped or mirror-tiled to ``n`` voxels per axis."""
    for axis in range(3):
        while a.shape[axis] < n:
            a = np.concatenate([a, np.flip(a, axis)], axis=axis)
        a = np.take(a, range(n), axis=axis)
    return np.ascontiguousarray(a)


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """The paper's PSNR (peak: the reference's range); inf when equal."""
    ref = reference.astype(np.float64)
    mse = float(np.mean((estimate.astype(np.float64) - ref) ** 2))
    if mse == 0:
        return float("inf")
    return -10.0 * np.log10(mse / float(ref.max() - ref.min()) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256", help="LR sizes per axis (HR: twice)")
    parser.add_argument("--whole-max", type=int, default=128, help="largest LR size solved whole")
    parser.add_argument("--base", type=int, default=128, help="LR size of the simulated pair")
    parser.add_argument("--block", type=int, default=64, help="LR block side")
    parser.add_argument("--halo", type=int, default=None, help="LR halo (default: the module's)")
    parser.add_argument("--max-iter", type=int, default=None, help="exactly this many iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="folder for the zarr volumes (tmp)")
    # child-process mode
    parser.add_argument(
        "--child", choices=["imports", "blockwise", "whole"], help=argparse.SUPPRESS
    )
    parser.add_argument("--lr", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--kernel", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.halo is None:
            from boneframe.superres.blockwise import DEFAULT_HALO

            args.halo = DEFAULT_HALO
        child(args)
        return

    import dask.array as da

    from boneframe.io import read_volume, write_volume
    from boneframe.phantom import simulate_pair
    from boneframe.superres.blockwise import DEFAULT_HALO
    from boneframe.volume import Volume

    halo = DEFAULT_HALO if args.halo is None else args.halo
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_large_sr_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pair = simulate_pair(2 * args.base, args.seed, noise=0.01)
    kernel_path = work / "kernel.npy"
    np.save(kernel_path, pair.kernel)
    iters = "to tol 1e-3" if args.max_iter is None else f"exactly {args.max_iter} iterations"
    print(
        f"{machine()}, load average {os.getloadavg()[0]:.1f} (shared machine); block {args.block}³ "
        f"LR, halo {halo}, p = 2, ADMM {iters}; phantom {2 * args.base}³ -> {args.base}³ "
        f"in {time.perf_counter() - t0:.0f} s; volumes in {work}",
        flush=True,
    )
    base_rss = run_child("--child", "imports")[1]
    print(f"child baseline (python + imports): peak RSS {base_rss:.2f} GiB", flush=True)
    header = (
        f"{'LR':>5} {'HR':>5} {'case':>10} {'time s':>8} {'ns/HR vox':>10} "
        f"{'ns/HR vox/it':>13} {'peak GiB':>9} {'PSNR vs whole':>14}"
    )
    print(header, flush=True)
    for n in sizes:
        lr = mirror_tile(pair.lr, n)
        lr_path = work / f"lr{n}.zarr"
        write_volume(
            Volume(da.from_array(lr, chunks=args.block), voxel_size=pair.voxel_size_lr),
            lr_path,
            overwrite=True,
        )
        del lr
        outputs = {}
        for case in ("whole", "blockwise"):
            if case == "whole" and n > args.whole_max:
                continue
            out = work / f"sr{n}_{case}.zarr"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            extra = ["--lr", str(lr_path), "--out", str(out), "--kernel", str(kernel_path)]
            extra += ["--block", str(args.block), "--halo", str(halo)]
            if args.max_iter is not None:
                extra += ["--max-iter", str(args.max_iter)]
            result, rss = run_child("--child", case, *extra)
            outputs[case] = out
            voxels = (2 * n) ** 3
            seconds = result["seconds"]
            its = args.max_iter or result.get("iterations")
            per_it = f"{seconds / voxels / its * 1e9:13.1f}" if its else f"{'-':>13}"
            note = f" ({result['iterations']} it)" if "iterations" in result else ""
            agree = ""
            if case == "blockwise" and "whole" in outputs:
                whole = np.asarray(read_volume(outputs["whole"]).data)
                block = np.asarray(read_volume(out).data)
                value = psnr(whole, block)
                agree = "identical" if not np.isfinite(value) else f"{value:11.1f} dB"
                del whole, block
            print(
                f"{n:>5} {2 * n:>5} {case:>10} {seconds:8.1f} {seconds / voxels * 1e9:10.0f} "
                f"{per_it} {rss:9.2f} {agree:>14}{note}",
                flush=True,
            )


if __name__ == "__main__":
    main()
