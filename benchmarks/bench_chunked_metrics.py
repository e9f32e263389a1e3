"""Every metric chunk by chunk against in memory: the cost of the chunked engine.

One volume per ``--size`` (N³ voxels of 41 µm: smoothed-noise trabecular bone
with micro-CT noise, :func:`boneframe.phantom.micro_ct`), measured by
:func:`boneframe.metrics.measure` with every default metric and the structure
metrics (Tb.Th, Tb.Sp, Tb.N; DA and the MIL ratio have no block form and are left
out of both), against a reference:

* in memory (numpy, one block);
* from a zarr written by boneframe, read lazily in ``--chunk``³ chunks (what a
  large scan costs: reading, checksums and the chunked passes), on dask's
  threaded scheduler;
* the same inside a mask (a ball filling most of the volume).

A volume of at most ``boneframe.metrics.measure.KEEP_BYTES`` (with its
reference and mask) is read once and kept in memory for the passes; with
``--stream`` nothing is kept, and each pass reads the chunks again (what a scan
larger than that costs: the thresholds' two passes read the volume and the
reference once more each).

Times are the best of ``--repeat`` runs, in memory and chunked interleaved;
the machine's load average is printed with each size (the ratio of two wall
times means little on a busy machine).

    python benchmarks/bench_chunked_metrics.py [--size 48 128 256] [--chunk 128] [--repeat 3]
        [--stream]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _timing import best_time

from boneframe.io import read_volume, write_volume
from boneframe.metrics import measure
from boneframe.phantom import micro_ct, trabecular_occupancy
from boneframe.volume import Volume

NAMES = ["psnr", "dice", "bv_tv", "tv_mm3", "euler", "betti0", "betti1", "betti2", "conn_d",
         "tb_th", "tb_sp", "tb_n"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256])
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stream", action="store_true", help="keep no chunk in memory")
    args = parser.parse_args()
    if args.stream:  # the module, not the function of the same name
        sys.modules["boneframe.metrics.measure"].KEEP_BYTES = 0  # type: ignore[attr-defined]
    for n in args.size:
        run(n, args.chunk, args.repeat)


def run(n: int, chunk: int, repeat: int) -> None:
    """Measure one N³ volume in memory and from a zarr in ``chunk``³ chunks."""
    occ = trabecular_occupancy(n, 0)
    vol = Volume(micro_ct(occ, noise=0.05, seed=1), voxel_size=(41.0,) * 3)
    ref = Volume(micro_ct(occ, noise=0.02, seed=2), voxel_size=(41.0,) * 3)
    zz, yy, xx = np.ogrid[:n, :n, :n]
    ball = ((zz - n / 2) ** 2 + (yy - n / 2) ** 2 + (xx - n / 2) ** 2) < (0.45 * n) ** 2
    mask = Volume(ball.astype(np.uint8), voxel_size=(41.0,) * 3)
    with tempfile.TemporaryDirectory() as folder:
        paths = [write_volume(v.with_data(_chunked(v.data, chunk)), Path(folder) / f"{k}.zarr")
                 for k, v in (("v", vol), ("r", ref), ("m", mask))]  # fmt: skip
        lazy, lazy_ref, lazy_mask = (read_volume(p) for p in paths)
        load = os.getloadavg()[0]
        print(f"== {n}³ voxels, zarr chunks {chunk}³, best of {repeat} (load {load:.1f}) ==")
        for label, extra, extra_lazy in (
            ("whole volume", None, None),
            ("inside a ball", mask, lazy_mask),
        ):
            t_mem, a = best_time(lambda e=extra: measure(vol, ref, e, names=NAMES), repeat)
            t_zarr, b = best_time(
                lambda e=extra_lazy: measure(lazy, lazy_ref, e, names=NAMES), repeat
            )
            worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in NAMES if a[k] is not None)
            print(f"{label:14s} in memory {t_mem:6.2f} s, chunked from zarr {t_zarr:6.2f} s "
                  f"-> {t_zarr / t_mem:.2f} x  (values within {worst:.1e})")  # fmt: skip


def _chunked(data: np.ndarray, chunk: int) -> Any:
    import dask.array as da

    return da.from_array(data, chunks=chunk)


if __name__ == "__main__":
    main()
