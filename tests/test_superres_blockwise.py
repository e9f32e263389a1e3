"""Block-wise super-resolution: the whole-volume solve, stitched from overlapping blocks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.io import read_volume, write_volume
from boneframe.kernel import Kernel
from boneframe.phantom import simulate_pair
from boneframe.regularizers.tv import TV
from boneframe.superres import SuperResolutionProblem, super_resolve
from boneframe.superres.blockwise import grey_scale, kernel_reach
from boneframe.volume import Volume


def psnr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """The paper's PSNR of ``estimate`` against ``reference`` (peak: its range)."""
    ref = reference.astype(np.float64)
    mse = np.mean((estimate.astype(np.float64) - ref) ** 2)
    return float(-10 * np.log10(mse / (ref.max() - ref.min()) ** 2))


@pytest.fixture(scope="module")
def pair():
    """64³ HR / 32³ LR simulated bone, 1 % noise, the default anisotropic 9³ kernel."""
    return simulate_pair(64, 0, noise=0.01, offset=0.1)


@pytest.fixture(scope="module")
def kernel(pair):
    return Kernel(pair.kernel, offset=pair.offset, p=pair.p)


@pytest.fixture(scope="module")
def whole(pair, kernel):
    return super_resolve(pair.lr, kernel)


@pytest.fixture(scope="module")
def stored(pair, kernel, tmp_path_factory):
    """Block-wise from zarr to zarr: 16³ LR blocks along two axes, the default halo."""
    folder = tmp_path_factory.mktemp("sr")
    lr = Volume(da.from_array(pair.lr, chunks=16), voxel_size=pair.voxel_size_lr, origin=(1, 2, 3))
    source = read_volume(write_volume(lr, folder / "lr.zarr"))
    res = super_resolve(source, kernel, block=(16, 16, 32))
    path = write_volume(res.volume, folder / "sr.zarr")
    return res, path


def test_blockwise_agrees_with_the_whole_volume(pair, whole, stored):
    res, _ = stored
    assert res.scale == whole.scale  # the whole volume's normalisation, exactly
    assert isinstance(res.array, da.Array)  # lazy: computed block by block when written
    vol = res.array.compute()
    assert vol.shape == pair.hr.shape and vol.dtype == np.float32
    assert psnr(whole.array, vol) >= 40.0
    # and as good an estimate of the truth
    assert psnr(pair.hr, vol) >= psnr(pair.hr, whole.array) - 0.3


def test_output_is_a_zarr_volume_with_the_hr_geometry(pair, stored):
    res, path = stored
    back = read_volume(path)
    assert back.is_lazy and back.data.chunksize == (32, 32, 64)
    assert back.voxel_size == pytest.approx(pair.voxel_size_hr)
    assert back.origin == (1.0, 2.0, 3.0)
    assert res.block == (16, 16, 32) and res.halo == (8, 8, 8)


def test_grey_scale_is_the_in_memory_normalisation(pair):
    chunked = da.from_array(pair.lr, chunks=(7, 16, 32))
    problem = SuperResolutionProblem.from_scan(
        pair.lr, pair.kernel, offset=pair.offset, regularizer=TV()
    )
    assert grey_scale(chunked, pair.kernel, offset=pair.offset) == problem.scale
    # a constant volume falls back to its largest magnitude, as in memory
    flat = np.full((8, 8, 8), 3.0)
    problem = SuperResolutionProblem.from_scan(flat, pair.kernel, regularizer=TV())
    assert grey_scale(da.from_array(flat, chunks=4), pair.kernel) == problem.scale


def test_lazy_result_and_distributed_client_give_the_same_bytes(pair, kernel):
    distributed = pytest.importorskip("distributed")
    g = da.from_array(pair.lr[:16, :16, :24], chunks=8)
    kwargs = dict(block=8, halo=2, max_iter=3)
    lazy = super_resolve(g, kernel, **kwargs)
    assert isinstance(lazy.array, da.Array)
    assert lazy.array.chunks == ((16, 16), (16, 16), (16, 16, 16))
    local = lazy.array.compute()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2):
        remote = super_resolve(g, kernel, **kwargs).array.compute()
    np.testing.assert_array_equal(local, remote)


def test_a_single_block_is_the_in_memory_solve(pair):
    g = pair.lr[:12, :12, :12]
    one = super_resolve(da.from_array(g), pair.kernel, block=12, max_iter=4).array.compute()
    np.testing.assert_array_equal(one, super_resolve(g, pair.kernel, max_iter=4, workers=1).array)


def test_bad_arguments_are_refused(pair):
    g = da.from_array(pair.lr[:16, :16, :16])
    assert kernel_reach(pair.kernel.shape, 2) == (2, 2, 2)
    with pytest.raises(InputError, match="halo 1 is too small.*kernel's reach"):
        super_resolve(g, pair.kernel, halo=1)
    with pytest.raises(InputError, match="block"):
        super_resolve(g, pair.kernel, block=0)
    with pytest.raises(InputError, match="halo"):
        super_resolve(g, pair.kernel, halo=(2, 2))
    with pytest.raises(InputError, match="in-memory volume"):
        super_resolve(g, pair.kernel, reference=np.zeros((32, 32, 32)))
    with pytest.raises(InputError, match="3D"):
        super_resolve(g[0], pair.kernel)
    with pytest.raises(InputError, match="NaN"):
        super_resolve(da.where(g > 0.5, np.nan, g), pair.kernel)
    with pytest.raises(InputError, match="scale"):
        super_resolve(np.asarray(g), pair.kernel, scale=-1.0)
    with pytest.raises(InputError, match="scale"):
        super_resolve(g, pair.kernel, scale=float("nan"))


def test_a_mask_solves_only_the_blocks_it_meets(pair, kernel):
    from boneframe.superres.blockwise import super_resolve_blockwise
    from boneframe.superres.upsample import upsample_spline

    g = da.from_array(pair.lr, chunks=16)
    mask = np.zeros(pair.lr.shape, np.uint8)
    mask[2:5, 3:6, 20:22] = 1  # in block (0, 0, 1); with halo 8 it reaches block (0, 0, 0)
    settings = {"max_iter": 3, "tol": 0.0}
    full = super_resolve_blockwise(g, kernel, block=16, settings=settings)
    part = super_resolve_blockwise(g, kernel, block=16, settings=settings, mask=mask)
    assert (full.solved, full.blocks) == (8, 8)
    assert (part.solved, part.blocks) == (2, 8)
    a, b = full.volume.compute(), part.volume.compute()
    np.testing.assert_array_equal(b[:32, :32, :], a[:32, :32, :])  # the blocks it meets
    # the others: the spline upsampling of g / gain - offset, the solve's starting point
    start = upsample_spline(pair.lr, 2, float(np.sum(kernel.array)), kernel.offset)
    np.testing.assert_allclose(b[32:], start[32:], atol=1e-4 * np.abs(start).max())
    assert not np.allclose(a[32:], b[32:], atol=1e-2)
    with pytest.raises(InputError, match="mask has shape"):
        super_resolve_blockwise(g, kernel, block=16, mask=mask[:-1])
