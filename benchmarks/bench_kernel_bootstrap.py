"""Coverage and cost of the kernel bootstrap (:mod:`boneframe.kernel.bootstrap`).

For each seed of a stationary phantom (``simulate_pair(size, seed, noise)``, the
default anisotropic, off-centre Gaussian kernel, 9³ support) it estimates the
kernel, bootstraps it and checks whether the intervals contain the figures of the
true kernel (:func:`~boneframe.kernel.summary.summarize_kernel`). It prints, for
each interval method (the default ``debiased``, ``percentile`` and
``bias-aware``, all computed from the same replicates), the fraction of
axis-cases (seeds × 3 axes) whose interval contains the truth and the mean
interval width, for FWHM and MTF 50 %/10 %; the time of the estimate and of the
bootstrap (and their ratio); and the FWHM's sensitivity to the regularisation
weight (FWHM at α/2 and 2α minus FWHM at α). Target: FWHM coverage ≥ 90 % at 95 %.

Run: ``python benchmarks/bench_kernel_bootstrap.py [--size 64] [--seeds 20]
[--replicates 200] [--noise 0.01] [--similarity l2] [--box 7]``; ``--similarity mi
--seeds 3 --replicates 20`` for the mutual-information cost (each replicate runs
gradient descent twice, from the estimate). The figures depend on the machine's
load: the load average is printed with them (``OPENBLAS_NUM_THREADS=1`` on a
shared machine).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from boneframe.kernel import estimate_kernel
from boneframe.kernel.bootstrap import FIGURES, _intervals, bootstrap_kernel
from boneframe.kernel.summary import summarize_kernel
from boneframe.phantom import simulate_pair

METHODS = ("debiased", "percentile", "bias-aware")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--similarity", default="l2")
    parser.add_argument("--box", type=int, default=None, help="cell side (default: 4 per axis)")
    parser.add_argument("--level", type=float, default=0.95)
    args = parser.parse_args()

    print(
        f"size {args.size}³, noise {args.noise}, {args.similarity}, {args.replicates} "
        f"replicates, level {args.level}, seeds {args.first_seed}..."
        f"{args.first_seed + args.seeds - 1}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    hits = {(m, k): [] for m in METHODS for k in FIGURES}
    widths = {(m, k): [] for m in METHODS for k in FIGURES}
    t_est, t_boot, half, double, bias = [], [], [], [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        pair = simulate_pair(args.size, seed=seed, noise=args.noise)
        hr, lr = pair.volumes()
        truth = summarize_kernel(pair.kernel, pair.voxel_size_hr)
        options = {"similarity": args.similarity}
        if args.similarity != "l2":  # start MI from the L2 estimate, as the paper does
            options["init"] = estimate_kernel(hr, lr).array
        t0 = time.perf_counter()
        est = estimate_kernel(hr, lr, **options)
        t_est.append(time.perf_counter() - t0)
        out = bootstrap_kernel(
            hr, lr, replicates=args.replicates, box=args.box, level=args.level, seed=seed,
            interval="bias-aware", estimate=est, **options,
        )  # fmt: skip
        t_boot.append(out.seconds)
        fwhm = np.array(est.summary()["fwhm_um"], dtype=float)
        half.append(np.array(out.alpha_sensitivity["fwhm_um_half_alpha"], dtype=float) - fwhm)
        double.append(np.array(out.alpha_sensitivity["fwhm_um_double_alpha"], dtype=float) - fwhm)
        bias.append(fwhm - np.array(truth["fwhm_um"], dtype=float))
        line = []
        for m in METHODS:
            for k in FIGURES:
                ci = _intervals(out.samples, k, args.level, m)
                for (lo, hi), t in zip(ci, truth[k], strict=True):
                    lo_, hi_ = -np.inf if lo is None else lo, np.inf if hi is None else hi
                    hits[(m, k)].append(lo_ <= t <= hi_)
                    widths[(m, k)].append(hi_ - lo_)
                if k == "fwhm_um":
                    inside = "".join("+" if h else "-" for h in hits[(m, k)][-3:])
                    line.append(f"{m} {inside}")
        print(
            f"seed {seed:3d}: estimate {t_est[-1]:6.2f} s, bootstrap {t_boot[-1]:7.2f} s "
            f"({out.cells} cells, alpha {out.alpha:.3g}); FWHM error "
            f"{np.round(bias[-1], 1).tolist()} µm; truth in FWHM interval: {', '.join(line)}",
            flush=True,
        )
    n = len(t_est)
    print(f"\ncoverage over {n} seeds × 3 axes = {3 * n} axis-cases (target FWHM >= 90 %)")
    for m in METHODS:
        for k in FIGURES:
            w = np.array(widths[(m, k)]).reshape(n, 3).mean(axis=0)
            print(
                f"  {m:<11} {k:<11} coverage {100 * np.mean(hits[(m, k)]):5.1f} %   "
                f"mean width per axis {np.round(w, 3).tolist()}"
            )
    ratio = np.array(t_boot) / np.array(t_est)
    print(
        f"time: estimate {np.mean(t_est):.2f} s, bootstrap {np.mean(t_boot):.2f} s "
        f"({args.replicates} replicates, {np.mean(t_boot) / args.replicates * 1000:.0f} ms each); "
        f"bootstrap / estimate {np.mean(ratio):.1f} (median {np.median(ratio):.1f})"
    )
    mean, sd = np.round(np.mean(bias, 0), 2).tolist(), np.round(np.std(bias, 0), 2).tolist()
    print(f"FWHM error of the estimate over the seeds (µm): mean {mean}, SD {sd}")
    lower, higher = np.round(np.mean(half, 0), 2).tolist(), np.round(np.mean(double, 0), 2).tolist()
    print(f"alpha sensitivity (mean FWHM change, µm): at alpha/2 {lower}, at 2 alpha {higher}")


if __name__ == "__main__":
    main()
