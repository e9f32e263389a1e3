"""Per-compartment morphometry of boneframe against ORMIR_XCT on the same synthetic scan.

The scan is :func:`boneframe.phantom_radius.radius_section` (82 µm, radius and ulna,
cortex 0.45–1.2 mm, soft tissue, noise), and both packages measure inside the
**same masks** (the phantom's true compartments of the radius), so that only the
morphometry differs:

* Tb.BV/TV: a Gaussian (σ 0.8, support 1 voxel) and a 320 mg HA/cm³ threshold
  inside the trabecular mask (boneframe: ``gauss-threshold``; ORMIR_XCT:
  ``seg_gauss``, then ``trabecular_bone_volume_fraction``);
* Tb.Th: the mean local thickness of that bone (boneframe's ``tb_th``; ORMIR_XCT's
  ``trabecular_thickness``, Hildebrand–Rüegsegger as IPL, no oversampling);
* Ct.Th: the mean local thickness of the cortical mask (boneframe's
  ``evaluate``; ORMIR_XCT's ``calc_structure_thickness_statistics``), against the
  phantom's thickness, 0.45–1.2 mm around the bone.

ORMIR_XCT runs in its own virtual environment (``ORMIR_PYTHON``, default
``/tmp/ormir-venv/bin/python``); when it cannot run, the reason is printed.

    python benchmarks/bench_ormir_morphometry.py [--slices 8] [--seed 0]
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

ORMIR_PYTHON = os.environ.get("ORMIR_PYTHON", "/tmp/ormir-venv/bin/python")

_ORMIR = r"""
import json, sys, time
import numpy as np
import SimpleITK as sitk
from ormir_xct.core.segmentation.seg_gauss import seg_gauss
from ormir_xct.core.microarchitecture.trabecular_microarchitecture import (
    trabecular_bone_volume_fraction, trabecular_thickness)
from ormir_xct.core.util.hildebrand_thickness import calc_structure_thickness_statistics

folder, vs = sys.argv[1], float(sys.argv[2]) / 1000.0
density = np.load(folder + "/density.npy")
trab, cort = np.load(folder + "/trabecular.npy"), np.load(folder + "/cortical.npy")
t0 = time.perf_counter()
image = sitk.GetImageFromArray(density)
image.SetSpacing((vs, vs, vs))
seg = sitk.GetArrayFromImage(seg_gauss(image, 320.0, 1e9, 1, 0, sigma=0.8, support=1)) > 0
bone = sitk.GetImageFromArray((seg & (trab > 0)).astype(np.uint8))
bone.SetSpacing((vs, vs, vs))
mask = sitk.GetImageFromArray(trab.astype(np.uint8))
mask.SetSpacing((vs, vs, vs))
bv_tv = float(trabecular_bone_volume_fraction(bone, mask))
tb_th = float(trabecular_thickness(bone)[0])
ct_th = float(calc_structure_thickness_statistics(cort > 0, (vs, vs, vs), 0,
                                                  oversample=False, skeletonize=False)[0])
print(json.dumps({"tb_bv_tv": bv_tv, "tb_th_um": 1000 * tb_th, "ct_th_um": 1000 * ct_th,
                  "seconds": time.perf_counter() - t0}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from boneframe.calibration import to_density
    from boneframe.evaluation import evaluate
    from boneframe.phantom_radius import radius_section

    section = radius_section((args.slices, 448, 448), seed=args.seed)
    radius = section.bones.numpy() == 1
    masks = {
        name: section.scan.with_data((getattr(section, name).numpy() != 0) & radius, metadata={})
        for name in ("periosteal", "trabecular", "cortical")
    }
    t0 = time.perf_counter()
    given = {k: v.with_data(v.data.astype(np.uint8)) for k, v in masks.items()}
    ours = evaluate(section.scan, given)
    seconds = time.perf_counter() - t0
    vs = section.scan.require_voxel_size()[0]
    print(f"== radius section {section.scan.shape} at {vs:g} µm, the true compartments ==")
    print(f"{'':12s} {'Tb.BV/TV':>9s} {'Tb.Th µm':>9s} {'Ct.Th µm':>9s} {'time s':>7s}")
    print(f"{'boneframe':12s} {ours['tb_bv_tv_fraction']:9.4f} {ours['tb_th_um']:9.1f} "
          f"{ours['ct_th_um']:9.1f} {seconds:7.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "density.npy", to_density(section.scan).numpy())
        for name in ("trabecular", "cortical"):
            np.save(folder / f"{name}.npy", masks[name].numpy().astype(np.uint8))
        try:
            done = subprocess.run([ORMIR_PYTHON, "-c", _ORMIR, str(folder), str(vs)],
                                  capture_output=True, text=True, timeout=1800)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"ORMIR_XCT: not run ({exc})")
            return
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            print(f"ORMIR_XCT: not run ({last[-1]})")
            return
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'ORMIR_XCT':12s} {theirs['tb_bv_tv']:9.4f} {theirs['tb_th_um']:9.1f} "
          f"{theirs['ct_th_um']:9.1f} {theirs['seconds']:7.2f}")  # fmt: skip
    lo, hi = section.params["cortical_thickness_mm"]
    print(f"phantom cortex: {1000 * lo:.0f}–{1000 * hi:.0f} µm around the bone")


if __name__ == "__main__":
    sys.exit(main())
