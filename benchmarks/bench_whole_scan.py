"""Whole-scan throughput of block-wise TV super-resolution, and a full XtremeCT scan.

Measured in one run, on the machine at hand:

1. **Cost per HR voxel and iteration**, block-wise against the whole-volume solve,
   with exactly ``--iters`` ADMM iterations everywhere (tol 0): an LR volume of
   ``--size``³ (``simulate_pair``, 1 % noise, the default 9³ kernel, p = 2) solved
   whole in memory (FFTs on all cores) and block by block (``--block`` LR voxels,
   the default halo of 8, dask's threaded scheduler, one FFT thread per block).
   The ratio includes everything a block pays: its halo and its padding.
2. **A dask.distributed LocalCluster** of 1 and of 2 single-threaded worker
   processes computing the same block-wise solve: the speed-up from 1 to 2
   workers.
3. **A full XtremeCT scan** (1536 × 1536 × 110 LR voxels of 82 µm): the blocks a
   periosteal mask meets (the contour of a synthetic distal-radius section of that
   field, :mod:`boneframe.phantom_radius`, radius and ulna) and all the blocks,
   each costing the measured seconds per block at convergence (tol 1e-3), for 1
   and for the measured 2-worker speed-up.

    python benchmarks/bench_whole_scan.py [--size 128] [--block 64] [--iters 10]
        [--no-cluster]
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import dask
import dask.array as da
import numpy as np
from _timing import best_time

from boneframe.kernel import Kernel
from boneframe.phantom import simulate_pair
from boneframe.superres import super_resolve
from boneframe.superres.blockwise import DEFAULT_HALO, super_resolve_blockwise

#: The XtremeCT (first generation) scan: slices, rows, columns (82 µm voxels).
XCT_SCAN = (110, 1536, 1536)


def _blockwise(lr: np.ndarray, kernel: Kernel, block: int, settings: dict[str, Any]) -> Any:
    g = da.from_array(lr, chunks=block)
    return super_resolve_blockwise(g, kernel, block=block, settings=settings).volume


def _scan_blocks(block: int) -> tuple[int, int]:
    """Blocks of an XtremeCT scan, and those a periosteal mask meets (with the halo)."""
    from boneframe.compartments import contour
    from boneframe.phantom_radius import radius_section

    section = radius_section((2, XCT_SCAN[1], XCT_SCAN[2]), seed=0)
    peri = contour(section.scan, bones="all")["periosteal"].numpy()[0] != 0
    grid = [math.ceil(n / block) for n in XCT_SCAN]
    hit = 0
    for by in range(grid[1]):
        for bx in range(grid[2]):
            y0, x0 = max(by * block - DEFAULT_HALO, 0), max(bx * block - DEFAULT_HALO, 0)
            y1 = min((by + 1) * block + DEFAULT_HALO, XCT_SCAN[1])
            x1 = min((bx + 1) * block + DEFAULT_HALO, XCT_SCAN[2])
            hit += bool(peri[y0:y1, x0:x1].any())
    return grid[0] * grid[1] * grid[2], grid[0] * hit  # the bone runs through every slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="LR size per axis (HR: twice)")
    parser.add_argument("--block", type=int, default=64, help="LR block side")
    parser.add_argument("--iters", type=int, default=10, help="ADMM iterations for the cost")
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster runs")
    args = parser.parse_args()

    pair = simulate_pair(2 * args.size, 0, noise=0.01)
    kernel = Kernel(pair.kernel, offset=pair.offset, p=pair.p)
    lr = pair.lr.astype(np.float32)
    voxels = float(np.prod(pair.hr.shape))
    fixed = {"max_iter": args.iters, "tol": 0.0}
    super_resolve(lr[:16, :16, :16], kernel, max_iter=2)  # compile the passes

    t_whole, _ = best_time(lambda: super_resolve(lr, kernel, max_iter=args.iters, tol=0.0), 1)
    with dask.config.set(scheduler="threads"):
        t_block, _ = best_time(lambda: _blockwise(lr, kernel, args.block, fixed).compute(), 1)
    per_whole = t_whole / voxels / args.iters * 1e9
    per_block = t_block / voxels / args.iters * 1e9
    print(f"== cost per HR voxel and iteration, {args.size}³ LR -> {2 * args.size}³ HR, "
          f"{args.iters} iterations ==")  # fmt: skip
    print(f"whole volume (in memory)        {t_whole:7.2f} s  {per_whole:7.1f} ns/voxel/it")
    ratio = per_block / per_whole
    print(f"block-wise ({args.block}³ LR, halo {DEFAULT_HALO})    {t_block:7.2f} s  "
          f"{per_block:7.1f} ns/voxel/it  -> {ratio:.2f} x the whole volume")  # fmt: skip

    with dask.config.set(scheduler="threads"):
        t_conv, _ = best_time(lambda: _blockwise(lr, kernel, args.block, {}).compute(), 1)
    n_blocks = math.prod(math.ceil(n / args.block) for n in lr.shape)
    per_block_s = t_conv / n_blocks * 2  # two blocks at a time on the threaded scheduler
    print(f"block-wise to tol 1e-3: {t_conv:.2f} s for {n_blocks} blocks "
          f"({per_block_s:.2f} s per block on one core)")  # fmt: skip

    speedup = 1.0
    if not args.no_cluster:
        from distributed import Client, LocalCluster

        times = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
                _blockwise(lr[:32, :32, :32], kernel, 32, fixed).compute()  # warm the workers
                times[workers], _ = best_time(
                    lambda: _blockwise(lr, kernel, args.block, fixed).compute(), 1
                )
        speedup = times[1] / times[2]
        print(f"LocalCluster, 1 worker: {times[1]:.2f} s; 2 workers: {times[2]:.2f} s "
              f"-> speed-up {speedup:.2f}")  # fmt: skip

    total, masked = _scan_blocks(args.block)
    print(f"== a full XtremeCT scan {XCT_SCAN} LR (82 µm) -> 41 µm ==")
    for label, count in (("inside the periosteal mask", masked), ("every block", total)):
        one = count * per_block_s
        print(f"{label:28s} {count:5d} blocks: {one / 60:7.1f} min on 1 core, "
              f"{one / 60 / max(speedup, 1.0):7.1f} min on 2")  # fmt: skip


if __name__ == "__main__":
    main()
