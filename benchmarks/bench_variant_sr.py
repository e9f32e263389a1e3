"""Spatially variant kernels: regional estimates against the truth, and super-resolution
with them against one global kernel (run by hand).

Cases: a phantom whose blur widens S times across x (``simulate_pair(kernel_variation=S)``)
and a real trabecular structure (``../shared/data/trabecular/P7_mask.nii.gz``) scanned
through the same kind of blur (the benchmark's non-Gaussian, anisotropic kernel widened
S times across x), both 128³ HR, 1 % noise, an offset. For each: the FWHM of each
region's kernel against the true blur at the region's centre, and the PSNR of TV-SR
(inner region, 1/8 of the side cut on every face) with one global kernel, with the
estimated regional kernels and with the true ones; times. Then the method against the
exact variant-model solution on a small case (tight tolerances).

    python benchmarks/bench_variant_sr.py [--size 128] [--variation 1.8] [--regions 1,1,4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_morphometry_sr import NOISE, OFFSET, real_kernel  # noqa: E402

from boneframe.kernel import estimate_kernel, estimate_regional_kernels  # noqa: E402
from boneframe.metrics.psnr import psnr  # noqa: E402
from boneframe.phantom import micro_ct, simulate_acquisition, simulate_pair  # noqa: E402
from boneframe.phantom_variation import KernelVariation  # noqa: E402
from boneframe.superres import super_resolve  # noqa: E402
from boneframe.volume import Volume  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trabecular"
VS = 41.0


def phantom(size: int, s: float):
    pair = simulate_pair(size, 0, noise=NOISE, offset=OFFSET, kernel_variation=s)
    return "phantom", pair.hr, pair.lr, pair.variation


def real(size: int, s: float):
    import nibabel

    mask = np.asarray(nibabel.load(str(DATA / "P7_mask.nii.gz")).dataobj).astype(np.float32)
    variation = KernelVariation(real_kernel(), s, (size - 1) * VS)
    margin = 2 * (-(-(max(variation.support) // 2 + 2) // 2))
    big = size + 2 * margin
    occ = np.clip(mask[20 : 20 + big, 20 : 20 + big, 20 : 20 + big], 0, 1)
    import scipy.ndimage

    occ = scipy.ndimage.gaussian_filter(occ, 0.6)
    blur = variation.blur((big,) * 3, (VS,) * 3, (-margin,) * 3)
    f, g = simulate_acquisition(micro_ct(occ), np.ones(variation.support), offset=OFFSET,
                                noise=NOISE, p=2, margin=margin, blur=blur)  # fmt: skip
    return "real P7", f, g, variation


def run(case, regions, support) -> None:
    name, f, g, variation = case
    hr, lr = Volume(f, voxel_size=(VS,) * 3), Volume(g, voxel_size=(2 * VS,) * 3)
    t = time.perf_counter()
    reg = estimate_regional_kernels(hr, lr, regions, support=support)
    t_reg = time.perf_counter() - t
    t = time.perf_counter()
    glob = estimate_kernel(hr, lr, support=support)
    t_glob = time.perf_counter() - t
    truth = variation.regional(g.shape, reg, (VS,) * 3, (2, 2, 2), OFFSET)
    print(f"\n## {name} {f.shape[0]}³, blur widening {variation.factor}x across x, "
          f"regions {regions}, support {support}")  # fmt: skip
    print(f"estimate: regional {t_reg:.1f} s, global {t_glob:.1f} s")
    print("| region | centre x (mm) | FWHM z/y/x est (µm) | true (µm) | error (%) |")
    print("|---|---|---|---|---|")
    errs = []
    for a, b in zip(reg.region_summaries(), truth.region_summaries(), strict=True):
        e = 100 * (np.array(a["fwhm_um"]) / np.array(b["fwhm_um"]) - 1)
        errs.append(e)
        print(f"| {a['index']} | {a['centre_um'][2] / 1000:.2f} | "
              + "/".join(f"{v:.0f}" for v in a["fwhm_um"]) + " | "
              + "/".join(f"{v:.0f}" for v in b["fwhm_um"]) + " | "
              + "/".join(f"{v:+.1f}" for v in e) + " |")  # fmt: skip
    print(f"largest |FWHM error|: {np.abs(errs).max():.1f} %")
    n = f.shape[0]
    inner = tuple(slice(n // 8, n - n // 8) for _ in range(3))
    rows = []
    for label, k in (("global kernel", glob), ("regional (estimated)", reg),
                     ("regional (true)", truth)):  # fmt: skip
        t = time.perf_counter()
        sr = super_resolve(lr, k)
        dt = time.perf_counter() - t
        rows.append((label, psnr(np.asarray(sr.array)[inner], f[inner]), sr.iterations, dt))
    base = rows[0][1]
    print("| SR with | PSNR inner (dB) | vs global (dB) | iterations | time (s) |")
    print("|---|---|---|---|---|")
    for label, p, it, dt in rows:
        print(f"| {label} | {p:.2f} | {p - base:+.2f} | {it} | {dt:.1f} |")


def exactness(s: float) -> None:
    pair = simulate_pair(48, 1, noise=NOISE, offset=OFFSET, kernel_variation=s)
    truth = pair.regional_truth((1, 1, 3))
    lr = Volume(pair.lr, voxel_size=(2 * VS,) * 3)
    import boneframe.superres.variant as variant

    t = time.perf_counter()
    fast = super_resolve(lr, truth)
    t_fast = time.perf_counter() - t
    old = variant.CG_TOL
    variant.CG_TOL = 1e-10
    try:
        t = time.perf_counter()
        exact = super_resolve(lr, truth, tol=1e-6, max_iter=3000, solver_params={"adapt_iter": 0})
        t_exact = time.perf_counter() - t
    finally:
        variant.CG_TOL = old
    a, b = np.asarray(fast.array), np.asarray(exact.array)
    rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    print("\n## the method against the exact variant-model solution (48³ phantom, 3 regions)")
    print(f"default (CG tol {old:g}, ADMM tol 1e-3): {fast.iterations} iterations, {t_fast:.1f} s, "
          f"PSNR {psnr(a, pair.hr):.2f} dB")  # fmt: skip
    print(f"exact (CG tol 1e-10, ADMM tol 1e-6, plain ADMM): {exact.iterations} iterations, "
          f"{t_exact:.1f} s, PSNR {psnr(b, pair.hr):.2f} dB")  # fmt: skip
    print(f"relative L2 difference {rel:.2e}; PSNR of default against exact "
          f"{psnr(a, b):.1f} dB")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--variation", type=float, default=1.8)
    ap.add_argument("--regions", default="1,1,4")
    ap.add_argument("--support", type=int, default=13)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-exact", action="store_true")
    args = ap.parse_args()
    regions = tuple(int(v) for v in args.regions.split(","))
    run(phantom(args.size, args.variation), regions, args.support)
    if not args.skip_real and (DATA / "P7_mask.nii.gz").is_file():
        run(real(args.size, args.variation), regions, args.support)
    if not args.skip_exact:
        exactness(args.variation)


if __name__ == "__main__":
    main()
