"""Kernel estimation with L2: exact solve vs gradient descent vs fixed-step descent.

Simulates a 200³ / 100³ pair (anisotropic, off-centre Gaussian kernel of gain
0.9, offset 0.05, 1 % noise) and, for each kernel support, times

* ``exact``: the normal equations (Gram matrix + Cholesky) at a given alpha;
* ``exact+gcv``: the same with the default alpha chosen by GCV;
* ``gd-bb``: gradient descent with Barzilai-Borwein steps, stopped when its
  objective is within ``--gap`` (relative) of the exact solve's;
* ``gd-fixed``: the baseline, plain gradient descent with the fixed step 1/L
  (the paper's scheme), with the same stopping rule and an iteration cap.

Run: ``python benchmarks/bench_kernel_l2.py [--size 200] [--supports 9 13]``.
The figures depend on the machine's load: the load average is printed with them.
On an oversubscribed machine OpenBLAS's threads spin and the Gram product can be
several times slower than with ``OPENBLAS_NUM_THREADS=1``; ``--exact-only`` skips
the (long) gradient descents.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from boneframe.kernel import estimate_kernel
from boneframe.phantom import gaussian_kernel, simulate_pair


def kernel_error(h: np.ndarray, truth: np.ndarray) -> float:
    """Relative L2 error of unit-sum kernels, the truth zero-padded to ``h``'s support."""
    pad = [((a - b) // 2, (a - b) // 2) for a, b in zip(h.shape, truth.shape, strict=True)]
    t = np.pad(truth, pad) / truth.sum()
    return float(np.linalg.norm(h / h.sum() - t) / np.linalg.norm(t))


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall-clock and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_support(f: np.ndarray, g: np.ndarray, truth: np.ndarray, k: int, args) -> None:
    """Time the three solvers for one kernel support and print the figures."""
    print(f"\n== support {k}³ ({k**3} unknowns); load average {os.getloadavg()[0]:.1f}")
    gcv, t_gcv, c_gcv = timed(estimate_kernel, f, g, support=k)
    alpha = gcv.alpha
    print(
        f"exact+gcv  {t_gcv:7.2f} s wall {c_gcv:7.2f} s cpu  alpha {alpha:.3g}  "
        f"error {kernel_error(gcv.array, truth):.4f} gain {gcv.gain:.4f} c {gcv.offset:.4f}"
    )
    exact, t_exact, c_exact = timed(estimate_kernel, f, g, support=k, alpha=alpha)
    j_star = exact.history[-1]["objective"]
    print(f"exact      {t_exact:7.2f} s wall {c_exact:7.2f} s cpu  objective {j_star:.8g}")
    if args.exact_only:
        return
    times = {"exact": t_exact}
    for label, params, cap in (
        ("gd-bb", {"step": "bb"}, args.gd_iter),
        ("gd-fixed", {"step": "fixed"}, args.baseline_iter),
    ):
        gaps: list[float] = []

        def stop(it: int, h: np.ndarray, rec: dict, gaps: list[float] = gaps) -> bool:
            gaps.append((rec["objective"] - j_star) / j_star)
            return gaps[-1] <= args.gap

        est, t, c = timed(
            estimate_kernel, f, g, support=k, alpha=alpha, solver="gradient-descent",
            solver_params=params, max_iter=cap, tol=0.0, callback=stop,
        )  # fmt: skip
        reached = gaps[-1] <= args.gap
        note = "" if reached else "  NOT reached: time is a lower bound"
        print(
            f"{label:10s} {t:7.2f} s wall {c:7.2f} s cpu  {est.iterations} iterations "
            f"({t / max(est.iterations, 1):.3f} s each), gap {gaps[-1]:.1e}{note}"
        )
        times[label] = t
    print("ratios (wall):")
    print(f"  gd-bb / exact    = {times['gd-bb'] / times['exact']:.1f}x")
    print(f"  gd-fixed / exact = {times['gd-fixed'] / times['exact']:.1f}x")
    print(f"  gd-fixed / gd-bb = {times['gd-fixed'] / times['gd-bb']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--supports", type=int, nargs="+", default=[9, 13])
    parser.add_argument("--gap", type=float, default=1e-4)
    parser.add_argument("--gd-iter", type=int, default=2000)
    parser.add_argument("--baseline-iter", type=int, default=300)
    parser.add_argument("--exact-only", action="store_true", help="Skip the gradient descents.")
    args = parser.parse_args()

    truth = gaussian_kernel((1.6, 1.3, 1.1), 9, shift=(0.3, -0.2, 0.1), gain=0.9)
    pair, t_sim, _ = timed(simulate_pair, args.size, seed=0, kernel=truth, offset=0.05, noise=0.01)
    print(
        f"pair {pair.hr.shape} / {pair.lr.shape} simulated in {t_sim:.1f} s; cores {os.cpu_count()}"
    )
    for k in args.supports:
        bench_support(pair.hr, pair.lr, truth, k, args)


if __name__ == "__main__":
    main()
