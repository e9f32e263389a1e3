"""Full MI kernel estimation on a 200³/100³ pair (target: under 60 s on 2 cores).

Baseline in the same run: the L2 exact solve on the same pair. Prints the time,
the kernel error against the true kernel and the FWHM error for each, on the
plain pair and after a logarithmic grey-level map of the HR-pQCT volume.

Run: ``python benchmarks/bench_kernel_mi.py [--size 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import machine

from boneframe.kernel import estimate_kernel, summarize_kernel
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.pipeline import kernel_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    true = gaussian_kernel((1.6, 1.3, 1.1), 9, (0.3, -0.2, 0.1), gain=0.9)
    pair = simulate_pair(args.size, 0, kernel=true, offset=0.05, noise=0.01)
    fwhm_true = np.asarray(summarize_kernel(true, 41.0)["fwhm_um"])
    print(f"machine: {machine()}; pair {pair.hr.shape} / {pair.lr.shape}, 1 % noise")
    maps = {"identity": lambda g: g, "log": lambda g: np.log(g - g.min() + 0.05)}
    for name, grey in maps.items():
        g = grey(pair.lr.astype(np.float64)).astype(np.float32)
        times = {}
        for label, kwargs in (
            ("l2 exact (baseline)", {}),
            ("mi", {"similarity": "mi", "solver": "gradient-descent"}),
        ):
            t0 = time.perf_counter()
            est = estimate_kernel(pair.hr, g, **kwargs)
            times[label] = time.perf_counter() - t0
            fwhm = np.asarray(summarize_kernel(est.array, 41.0)["fwhm_um"])
            print(
                f"{name:8s} {label:20s}: {times[label]:6.1f} s, {est.iterations:4d} iterations, "
                f"kernel error {100 * kernel_error(est.array, true):5.1f} %, "
                f"FWHM error {100 * np.max(np.abs(fwhm / fwhm_true - 1)):4.1f} %",
                flush=True,
            )
        ratio = times["mi"] / times["l2 exact (baseline)"]
        print(f"{name:8s} mi / l2 time ratio {ratio:.1f}x | target: mi under 60 s")


if __name__ == "__main__":
    main()
