"""Chunked vs in-memory kernel estimation on 128³–256³ phantoms (L2 and MI, converged).

For each size, the pair is estimated in memory (numpy) and chunk by chunk (the
same arrays as dask arrays, chunks of half the volume per axis), with L2 (exact
normal equations) and MI (gradient descent to convergence). Prints the relative
difference of the two kernels (target: 1e-5), of the offsets and gains, both
times (the in-memory solve is the baseline, measured in the same run), the
iteration counts and the kernel error against the true kernel.

Run: ``python benchmarks/bench_chunked_kernel.py [--sizes 128 256] [--similarities l2 mi]
[--tol 1e-12] [--mi-exact]``.
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np
from _timing import machine, peak_rss_gib, report

from boneframe.kernel import estimate_kernel
from boneframe.phantom import simulate_pair
from boneframe.pipeline import kernel_error


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare(
    size: int, similarity: str, cache_boxes: bool, tol: float | None, mi_params: dict
) -> None:
    pair = simulate_pair(size, seed=0, offset=0.05, noise=0.01, hr_noise=0.01)
    kw: dict = {"similarity": similarity}
    if similarity == "mi":
        kw.update(solver="gradient-descent", max_iter=3000, tol=tol, similarity_params=mi_params)
    t0 = time.perf_counter()
    mem = estimate_kernel(pair.hr, pair.lr, **kw)
    t_mem = time.perf_counter() - t0
    f = da.from_array(pair.hr, chunks=size // 2)
    g = da.from_array(pair.lr, chunks=size // 4)
    t0 = time.perf_counter()
    chk = estimate_kernel(f, g, cache_boxes=cache_boxes, **kw)  # the same call, dask input
    t_chk = time.perf_counter() - t0
    print(
        f"{size}^3 {similarity}: kernel {_rel(chk.array, mem.array):.1e} rel | "
        f"offset {abs(chk.offset - mem.offset) / abs(mem.offset):.1e} rel | "
        f"gain {abs(chk.gain - mem.gain) / abs(mem.gain):.1e} rel | target 1e-5",
        flush=True,
    )
    print(
        f"    iterations {mem.iterations} / {chk.iterations} ({mem.message} / {chk.message}); "
        f"error vs true kernel {kernel_error(mem.array, pair.kernel):.3f}",
        flush=True,
    )
    report(f"    {size}^3 {similarity} time (chunked vs in memory)", t_chk, t_mem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--similarities", nargs="+", default=["l2", "mi"])
    parser.add_argument(
        "--skip-mi-above", type=int, default=10**9, help="Only L2 for larger sizes."
    )
    parser.add_argument(
        "--tol", type=float, default=None, help="MI's gradient-descent tolerance (default 1e-8)."
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="Re-read and re-transform the boxes each pass."
    )
    parser.add_argument(
        "--mi-exact",
        action="store_true",
        help="MI by the literal Parzen sums (32 bins, width 1), the reference estimator",
    )
    args = parser.parse_args()
    mi_params = {"method": "exact", "bins": 32, "parzen_width": 1.0} if args.mi_exact else {}
    print(f"machine: {machine()}", flush=True)
    for size in args.sizes:
        for similarity in args.similarities:
            if similarity == "mi" and size > args.skip_mi_above:
                continue
            compare(size, similarity, not args.no_cache, args.tol, mi_params)
    print(f"peak resident memory {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
