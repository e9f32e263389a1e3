"""All bone metrics of a 200³ volume against scikit-image's Euler number and Otsu.

    python benchmarks/bench_metrics.py [--size 200] [--repeat 5] [--real]

The volume is smoothed noise split into bone (1000) and marrow (200) grey levels
with noise, like a micro-CT crop; the "estimate" is it blurred plus noise.
``--real`` instead pads a real trabecular mask (../shared/data) to the size.
Times are the best of ``--repeat`` runs, ours and the baseline interleaved so
that load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import euler_number

from boneframe.metrics import measure

TRABECULAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trabecular"


def synthetic_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bone = ndimage.gaussian_filter(rng.standard_normal((size,) * 3), 3) > 0.02
    reference = np.where(bone, 1000.0, 200.0) + 60.0 * rng.standard_normal(bone.shape)
    estimate = ndimage.gaussian_filter(reference, 1.0) + 30.0 * rng.standard_normal(bone.shape)
    return estimate, reference


def real_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import nibabel

    mask = np.asarray(nibabel.load(str(TRABECULAR / "P8_mask.nii.gz")).dataobj) > 0.5
    mask = mask[:size, :size, :size]
    mask = np.pad(mask, [(0, size - n) for n in mask.shape])
    rng = np.random.default_rng(seed)
    reference = np.where(mask, 1000.0, 200.0) + 60.0 * rng.standard_normal(mask.shape)
    estimate = ndimage.gaussian_filter(reference, 1.0) + 30.0 * rng.standard_normal(mask.shape)
    return estimate, reference


def best_of(repeat: int, *fns: Callable[[], object]) -> list[tuple[float, float]]:
    """Best wall-clock and best CPU (all threads) seconds of each function."""
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
    return list(zip(wall, cpu, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="use a real trabecular mask")
    args = parser.parse_args()

    estimate, reference = (real_pair if args.real else synthetic_pair)(args.size)
    measure(estimate[:8, :8, :8], reference[:8, :8, :8], voxel_size=41, structure=False)  # imports

    def ours_full() -> dict:
        return measure(estimate, reference, voxel_size=41, structure=False)

    def ours_alone() -> dict:
        return measure(estimate, voxel_size=41, structure=False)

    def skimage_chi() -> int:
        return euler_number(binary, connectivity=3)

    def skimage_otsu_chi() -> int:
        return euler_number(estimate > threshold_otsu(estimate), connectivity=3)

    binary = estimate > threshold_otsu(estimate)
    result = ours_full()
    assert result["euler"] == skimage_chi(), "Euler characteristic disagrees with scikit-image"

    (t_full, c_full), (t_alone, c_alone), (t_chi, c_chi), (t_otsu_chi, c_otsu_chi) = best_of(
        args.repeat, ours_full, ours_alone, skimage_chi, skimage_otsu_chi
    )
    print(f"volume {args.size}³ ({'real mask' if args.real else 'synthetic'}), "
          f"best of {args.repeat}, {os.cpu_count()} CPUs")  # fmt: skip
    print("  " + ", ".join(f"{k}={v:.6g}" for k, v in result.items() if isinstance(v, float)))
    print(f"  {'':48s} {'wall ms':>8s} {'cpu ms':>8s}")
    rows = [
        ("boneframe: all 11 metrics, with reference", t_full, c_full),
        ("boneframe: 9 metrics, no reference", t_alone, c_alone),
        ("scikit-image: euler_number (on a given mask)", t_chi, c_chi),
        ("scikit-image: threshold_otsu + euler_number", t_otsu_chi, c_otsu_chi),
    ]
    for name, t, c in rows:
        print(f"  {name:48s} {t * 1000:8.1f} {c * 1000:8.1f}")
    print(f"  ratio all metrics / skimage chi alone        {t_full / t_chi:8.2f} "
          f"{c_full / c_chi:8.2f}  (target <= 2)")  # fmt: skip
    print(f"  ratio no-reference set / skimage chi alone   {t_alone / t_chi:8.2f} "
          f"{c_alone / c_chi:8.2f}")  # fmt: skip
    print(f"  ratio all metrics / skimage otsu + chi       {t_full / t_otsu_chi:8.2f} "
          f"{c_full / c_otsu_chi:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
