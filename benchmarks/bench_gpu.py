"""TV super-resolution on the GPU: time per ADMM iteration against the CPU and cuFFT (#22).

One run prints, per HR size (default 256³ and 512³, a periodic grid: an LR
volume of half the size, p = 2, the default 9³ kernel, ADMM's defaults):

* GPU (CuPy, ``device="cuda"``) and CPU (numpy, the compiled path) milliseconds
  per ADMM iteration (median over ``--iters`` iterations after two warm-up
  ones, beta being adapted as in the first 50 iterations of a real solve; the
  GPU is synchronised at every iteration);
* one float32 ``cupyx.scipy.fft.rfftn`` and one ``irfftn`` of the HR size
  (``cupy.fft.rfftn`` too) and the iteration's time in units of that pair, the
  f-step's two transforms (target: <= 3); "FFT fraction" is its inverse, the
  share of the device's own FFT throughput reached;
* the GPU memory pool's high-water mark per HR voxel;

then extrapolates to a whole 1536 x 1536 x 110 scan (``--scan``; padded as
:func:`boneframe.super_resolve` pads it, ``--scan-iters`` iterations; target:
under 5 minutes) and says whether its arrays fit in the device's memory.

Without a CUDA device (or CuPy) it prints ``no CUDA device: ...`` and, so that
the script itself is exercised, times the array-API iteration (the code the
GPU runs) on numpy against the compiled CPU path at ``--cpu-check`` HR voxels
per side; it exits 0 either way.

    python benchmarks/bench_gpu.py [--sizes 256 512] [--cpu-sizes 256 512] [--iters 8]
        [--cpu-iters 3] [--scan 1536 1536 110] [--scan-iters 60] [--cpu-check 96]

CuPy: ``pip install 'boneframe[gpu]'`` (``cupy-cuda12x``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.ndimage
from _timing import machine

from boneframe.device import array_namespace_for
from boneframe.errors import InputError
from boneframe.phantom import DEFAULT_SIGMA, gaussian_kernel
from boneframe.regularizers.tv import TV
from boneframe.solvers.admm import ADMM
from boneframe.superres import SuperResolutionProblem
from boneframe.superres.problem import _fast_len, padding_width

WARMUP = 2


def lr_volume(n: int, seed: int = 0) -> np.ndarray:
    """A two-phase LR volume of side ``n`` (smoothed noise thresholded, blurred, noisy)."""
    rng = np.random.default_rng(seed)
    field = scipy.ndimage.gaussian_filter(rng.standard_normal((n, n, n), dtype=np.float32), 2.0)
    g = np.where(field > 0.1 * field.std(), 300.0, 45.0).astype(np.float32)
    g = scipy.ndimage.gaussian_filter(g, 0.8)
    return g + rng.normal(0.0, 3.0, g.shape).astype(np.float32)


def ms_per_iteration(
    problem: SuperResolutionProblem, iters: int, sync: Callable[[], None] | None = None
) -> float:
    """Median wall time (ms) of ADMM iterations ``WARMUP + 1 ..`` on ``problem``."""
    stamps: list[float] = []

    def callback(it: int, x: Any, record: dict[str, float]) -> None:
        if sync is not None:
            sync()
        stamps.append(time.perf_counter())

    x0 = problem.initial_estimate()
    if sync is not None:
        sync()
    ADMM(max_iter=WARMUP + iters, tol=0.0).solve(problem, x0, callback)
    steps = np.diff(stamps)[WARMUP - 1 :]
    return 1e3 * float(np.median(steps))


def problem_at(n_hr: int, device: str) -> SuperResolutionProblem:
    """The periodic problem of an HR grid of side ``n_hr`` (LR side ``n_hr / 2``)."""
    h = gaussian_kernel(DEFAULT_SIGMA, 9)
    return SuperResolutionProblem(lr_volume(n_hr // 2), h / h.sum(), 2, TV(), device=device)


def cufft_ms(cupy: Any, n: int, reps: int = 10) -> dict[str, float]:
    """Median ms of float32 ``rfftn`` and ``irfftn`` of ``n³`` (cupyx.scipy.fft and cupy.fft)."""
    import cupyx.scipy.fft as cfft

    x = cupy.random.standard_normal((n, n, n), dtype=cupy.float32)
    out: dict[str, float] = {}
    for name, fwd, inv in (
        ("cupyx", cfft.rfftn, lambda s: cfft.irfftn(s, s=(n, n, n))),
        ("cupy", cupy.fft.rfftn, lambda s: cupy.fft.irfftn(s, s=(n, n, n))),
    ):
        spec = fwd(x)  # plans made and cached
        inv(spec)
        for label, fn, arg in (("rfftn", fwd, x), ("irfftn", inv, spec)):
            times = []
            for _ in range(reps):
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                fn(arg)
                end.record()
                end.synchronize()
                times.append(cupy.cuda.get_elapsed_time(start, end))
            out[f"{name} {label}"] = statistics.median(times)
    del x, spec
    return out


def scan_grid(scan: tuple[int, int, int], p: int = 2) -> tuple[int, ...]:
    """The padded HR grid :func:`boneframe.super_resolve` solves for an LR scan."""
    pad = padding_width((9, 9, 9), p)
    return tuple(p * _fast_len(n + 2 * m, p) for n, m in zip(scan, pad, strict=True))


def gpu_run(args: argparse.Namespace) -> None:
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    free, total = dev.mem_info
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU: {name}, {total / 2**30:.0f} GiB; CPU: {machine()}; CuPy {cupy.__version__}")
    pool = cupy.get_default_memory_pool()
    rows: dict[int, dict[str, float]] = {}
    for n in args.sizes:
        pool.free_all_blocks()
        problem = problem_at(n, "cuda")
        gpu = ms_per_iteration(problem, args.iters, dev.synchronize)
        high = pool.total_bytes()
        del problem
        pool.free_all_blocks()
        ffts = cufft_ms(cupy, n)
        pool.free_all_blocks()
        pair = ffts["cupyx rfftn"] + ffts["cupyx irfftn"]
        cpu = float("nan")
        if n in args.cpu_sizes:
            cpu = ms_per_iteration(problem_at(n, "cpu"), args.cpu_iters)
        rows[n] = {"gpu": gpu, "pair": pair, "bytes": high / n**3}
        print(
            f"\n== {n}^3 HR (LR {n // 2}^3, p = 2) ==\n"
            f"cuFFT float32: rfftn {ffts['cupyx rfftn']:.2f} ms, irfftn "
            f"{ffts['cupyx irfftn']:.2f} ms (cupy.fft: {ffts['cupy rfftn']:.2f} / "
            f"{ffts['cupy irfftn']:.2f} ms)\n"
            f"ADMM iteration: GPU {gpu:.1f} ms | CPU {cpu:.1f} ms | CPU / GPU {cpu / gpu:.1f} x\n"
            f"GPU iteration = {gpu / pair:.2f} x (rfftn + irfftn) (target <= 3) | FFT fraction "
            f"{pair / gpu:.0%} | memory pool high-water {high / 2**30:.2f} GiB "
            f"({high / n**3:.0f} B per HR voxel)"
        )
    n = max(rows)
    grid = scan_grid(tuple(args.scan))
    voxels = math.prod(grid)
    ratio = voxels / n**3
    # FFTs grow as N log N, the element-wise passes as N: scale by the FFT's factor
    per_it = rows[n]["gpu"] * ratio * math.log(voxels) / math.log(n**3)
    need = rows[n]["bytes"] * voxels
    total_s = per_it * args.scan_iters / 1e3
    print(
        f"\n== whole scan {' x '.join(map(str, args.scan))} LR (padded HR grid "
        f"{' x '.join(map(str, grid))}, {voxels / 1e9:.2f} G voxels) ==\n"
        f"extrapolated from {n}^3: {per_it / 1e3:.2f} s per iteration, {args.scan_iters} "
        f"iterations {total_s / 60:.1f} min (target < 5 min)\n"
        f"GPU memory: ~{need / 2**30:.0f} GiB needed, {total / 2**30:.0f} GiB on the device: "
        + ("fits" if need < 0.9 * total else "does not fit in one piece: solve it block by block")
    )


def cpu_check(n: int, iters: int, reason: str) -> None:
    print(f"no CUDA device: {reason}")
    print(f"CPU only ({machine()}): the array-API iteration (the GPU's code) on numpy against "
          f"the compiled CPU path, {n}^3 HR")  # fmt: skip
    problem = problem_at(n, "cpu")
    fused = ms_per_iteration(problem, iters)
    problem = problem_at(n, "cpu")
    stamps: list[float] = []
    x0 = problem.initial_estimate()
    ADMM(max_iter=WARMUP + iters, tol=0.0, fused=False).solve(
        problem, x0, lambda *_: stamps.append(time.perf_counter())
    )
    generic = 1e3 * float(np.median(np.diff(stamps)[WARMUP - 1 :]))
    print(f"ADMM iteration: array API on numpy {generic:.1f} ms | compiled {fused:.1f} ms | "
          f"{generic / fused:.2f} x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--cpu-sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--cpu-iters", type=int, default=3)
    parser.add_argument("--scan", type=int, nargs=3, default=[1536, 1536, 110])
    parser.add_argument("--scan-iters", type=int, default=60)
    parser.add_argument("--cpu-check", type=int, default=96)
    args = parser.parse_args()
    try:
        array_namespace_for("cuda")
    except InputError as exc:
        cpu_check(args.cpu_check, args.cpu_iters + 2, str(exc))
        return
    gpu_run(args)


if __name__ == "__main__":
    main()
