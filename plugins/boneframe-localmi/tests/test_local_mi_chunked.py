"""local-mi on zarr volumes: the core's one kernel engine runs a plugin similarity
that declares no sums over voxels by gathering the low-resolution prediction over
the boxes of the chunked pair — the same kernel as in memory."""

from __future__ import annotations

import numpy as np
import pytest

import boneframe.kernel.boxes as boxes_module
from boneframe.io import read_volume, write_volume
from boneframe.kernel import estimate_kernel
from boneframe.phantom import simulate_pair
from boneframe.volume import Volume


def test_local_mi_kernel_from_zarr_equals_in_memory(tmp_path, monkeypatch):
    import dask.array as da

    pair = simulate_pair(24, seed=2, noise=0.01, hr_noise=0.01)
    hr, lr = pair.volumes()
    write_volume(Volume(da.from_array(hr.data, chunks=16), voxel_size=hr.voxel_size),
                 tmp_path / "hr.zarr")  # fmt: skip
    write_volume(Volume(da.from_array(lr.data, chunks=8), voxel_size=lr.voxel_size),
                 tmp_path / "lr.zarr")  # fmt: skip
    hr_z, lr_z = read_volume(tmp_path / "hr.zarr"), read_volume(tmp_path / "lr.zarr")
    assert hr_z.is_lazy and hr_z.data.chunksize == (16, 16, 16)
    assert lr_z.is_lazy and lr_z.data.chunksize == (8, 8, 8)

    calls = {"boxes": 0}
    gather = boxes_module._gather_box

    def counted(*args):
        calls["boxes"] += 1
        return gather(*args)

    monkeypatch.setattr(boxes_module, "_gather_box", counted)
    # the same 30 iterations from zarr as in memory (to convergence, 128 each, the kernels
    # agreed to 1e-9: README; 30 keep the test short and the paths as long as it takes
    # to tell two engines apart)
    kw = dict(similarity="local-mi", support=5, similarity_params={"window": 3.0}, max_iter=30)
    mem = estimate_kernel(hr, lr, **kw)
    assert calls["boxes"] >= 1  # in memory: one box per gathering
    calls["boxes"] = 0
    chk = estimate_kernel(hr_z, lr_z, **kw)
    # the valid region of a 12³ LR volume with 8³ chunks is cut into 2 x 2 x 2 boxes,
    # each gathered at every evaluation
    assert calls["boxes"] >= 8 * chk.iterations and calls["boxes"] % 8 == 0
    assert mem.iterations == chk.iterations == 30, (mem.message, chk.message)
    start = np.linalg.norm(mem.array - estimate_kernel(hr, lr, **{**kw, "max_iter": 1}).array)
    rel = np.linalg.norm(chk.array - mem.array) / np.linalg.norm(mem.array)
    print(f"zarr vs in memory: {rel:.1e}; the path moved {start / np.linalg.norm(mem.array):.1e}")
    assert start > 1e3 * np.linalg.norm(chk.array - mem.array)  # the path went somewhere
    assert rel < 1e-6, rel
    assert chk.offset == pytest.approx(mem.offset, rel=1e-4, abs=1e-6)
