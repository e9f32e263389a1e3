"""The operator family on dask arrays: lazy, chunk by chunk, the in-memory numbers.

Dot tests over several chunkings (multiples of p, uneven last chunks, chunks
thinner than the kernel's halo), float32 and float64; equality with the numpy
path; the chunk-alignment rules of the decimation.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.operators import (
    Blur,
    Crop,
    Decimate,
    ForwardModel,
    Gradient,
    check_chunks,
    convolve,
    convolve_adjoint,
    decimate,
    decimate_adjoint,
    dottest,
    forward_model,
)

SHAPE = (14, 12, 10)
# uneven last chunks, odd sizes, chunks thinner than the halo (2, 3, 1), a single chunk
CHUNKINGS = [(8, 6, 4), (5, 5, 3), (2, 12, 5), 14]
ALIGNED = [(8, 6, 4), (4, 4, 6), (2, 12, 4), 14]  # multiples of p = 2 but the last
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(7).random((40, 36, 30))


@pytest.fixture(scope="module")
def kernel() -> np.ndarray:
    return np.random.default_rng(8).random((5, 7, 3))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- dot tests over chunkings ------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_blur_dot_test(rng, kernel, boundary, chunks, dtype):
    op = Blur(kernel.astype(dtype), SHAPE, boundary=boundary)
    dottest(op, rng=rng, dtype=dtype, chunks=chunks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", ALIGNED)
def test_decimate_dot_test(rng, chunks, dtype):
    dottest(Decimate((14, 12, 11), 2), rng=rng, dtype=dtype, chunks=chunks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_gradient_dot_test(rng, boundary, chunks, dtype):
    dottest(Gradient(SHAPE, boundary), rng=rng, dtype=dtype, chunks=chunks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", ALIGNED)
@pytest.mark.parametrize("mode", ["same", "valid"])
def test_forward_model_dot_test(rng, kernel, mode, chunks, dtype):
    op = ForwardModel(kernel.astype(dtype), 2, SHAPE, mode=mode)
    dottest(op, rng=rng, dtype=dtype, chunks=chunks)


def test_crop_dot_test(rng):
    dottest(Crop(SHAPE, (slice(2, 13), slice(0, 9), slice(3, -3))), rng=rng, chunks=(6, 5, 4))


# -- the numpy numbers -------------------------------------------------------------
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
@pytest.mark.parametrize("chunks", [(16, 12, 10), (8, 36, 6), (2, 4, 1), 40])
def test_blur_matches_in_memory_and_keeps_the_chunks(volume, kernel, boundary, chunks):
    if chunks == (2, 4, 1):  # thinner than the halo (2, 3, 1): dask merges them, we split back
        volume = volume[:6, :8, :4]
    op = Blur(kernel, volume.shape, boundary=boundary)
    x = da.from_array(volume, chunks=chunks)
    out = op.matvec(x)
    assert isinstance(out, da.Array) and out.chunks == x.chunks
    assert _rel(out.compute(), op.matvec(volume)) < 1e-12
    back = op.rmatvec(x)
    assert back.chunks == x.chunks and _rel(back.compute(), op.rmatvec(volume)) < 1e-12


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_convolve_functions_match_in_memory(volume, kernel, mode) -> None:
    out = convolve(da.from_array(volume, chunks=(16, 12, 10)), kernel, mode)
    expected = convolve(volume, kernel, mode)
    assert isinstance(out, da.Array) and out.shape == expected.shape
    assert _rel(out.compute(), expected) < 1e-12
    back = convolve_adjoint(da.from_array(expected, chunks=(20, 16, 12)), kernel, mode)
    assert _rel(back.compute(), convolve_adjoint(expected, kernel, mode)) < 1e-12


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_gradient_matches_in_memory(volume, boundary) -> None:
    op = Gradient(volume.shape, boundary)
    out = op.matvec(da.from_array(volume, chunks=(16, 12, 7)))
    np.testing.assert_array_equal(out.compute(), op.matvec(volume))
    v = np.random.default_rng(2).standard_normal(op.shape_out)
    back = op.rmatvec(da.from_array(v, chunks=(1, 9, 12, 10))).compute()
    np.testing.assert_allclose(back, op.rmatvec(v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(40, 36, 30), (41, 35, 30)])
@pytest.mark.parametrize("c", [0.0, 0.3])
def test_forward_model_matches_in_memory(kernel, shape, c) -> None:
    f = np.random.default_rng(9).random(shape)
    out = forward_model(da.from_array(f, chunks=(16, 12, 10)), kernel, c, p=2)
    expected = forward_model(f, kernel, c, p=2, mode="same")
    assert out.shape == expected.shape
    assert out.chunks[0][0] == 8  # low-resolution chunks are the HR chunks / p
    assert _rel(out.compute(), expected) < 1e-12


def test_forward_model_anisotropic_factor_and_valid_mode(volume, kernel) -> None:
    x = da.from_array(volume, chunks=(12, 12, 10))
    out = forward_model(x, kernel, 0.1, p=(3, 2, 1))
    assert _rel(out.compute(), forward_model(volume, kernel, 0.1, p=(3, 2, 1))) < 1e-12
    valid = ForwardModel(kernel, 2, volume.shape, mode="valid")
    assert _rel(valid.predict(x, 0.1).compute(), valid.predict(volume, 0.1)) < 1e-12


def test_periodic_forward_model_on_dask(volume, kernel) -> None:
    volume = volume[:24, :24, :20]
    model = ForwardModel(kernel, 2, volume.shape, boundary="periodic")
    out = model.predict(da.from_array(volume, chunks=(8, 12, 10)), 0.2)
    assert _rel(out.compute(), model.predict(volume, 0.2)) < 1e-12


def test_decimate_and_its_adjoint_match_in_memory(volume) -> None:
    x = da.from_array(volume, chunks=(16, 12, 10))
    y = decimate(x, 2)
    assert y.chunks == ((8, 8, 4), (6, 6, 6), (5, 5, 5))
    np.testing.assert_array_equal(y.compute(), decimate(volume, 2))
    back = decimate_adjoint(y, 2, volume.shape)
    assert back.chunks == x.chunks
    np.testing.assert_array_equal(
        back.compute(), decimate_adjoint(decimate(volume, 2), 2, volume.shape)
    )
    odd = decimate_adjoint(da.ones((3, 3, 3), chunks=2), 2, (5, 6, 5))  # uneven last chunks
    assert odd.chunks == ((4, 1), (4, 2), (4, 1)) and float(odd.sum().compute()) == 27


# -- chunk rules -------------------------------------------------------------------
def test_misaligned_chunks_are_refused_or_rechunked(volume, kernel) -> None:
    x = da.from_array(volume, chunks=(15, 12, 10))
    with pytest.raises(InputError, match="multiples of the decimation factor"):
        decimate(x, 2)
    with pytest.raises(InputError, match="multiples of the decimation factor"):
        forward_model(x, kernel)
    out = forward_model(x, kernel, 0.2, rechunk=True)
    assert out.chunks[0] == (8, 8, 4)  # HR chunks rounded up to (16, 16, 8)
    assert _rel(out.compute(), forward_model(volume, kernel, 0.2)) < 1e-12
    assert check_chunks(x, (1, 2, 2)) is x  # 15 is a multiple of 1
    assert check_chunks(x, 2, rechunk=True).chunks[0] == (16, 16, 8)
    with pytest.raises(InputError, match="should have shape"):
        decimate_adjoint(da.zeros((3, 3, 3), chunks=2), 2, (8, 8, 8))


def test_refuses_bad_kernels_and_shapes(volume) -> None:
    x = da.from_array(volume, chunks=16)
    with pytest.raises(InputError, match="odd"):
        convolve(x, np.ones((4, 3, 3)))
    with pytest.raises(InputError, match="larger than the volume"):
        convolve(da.zeros((4, 4, 4), chunks=2), np.ones((5, 5, 5)), "valid")
    with pytest.raises(InputError, match="3D"):
        convolve(da.zeros((4, 4), chunks=2), np.ones((3, 3, 3)))
    unknown = x[x[:, 0, 0] > 0.5]  # unknown chunk sizes
    with pytest.raises(InputError, match="unknown chunk sizes"):
        Decimate((40, 36, 30)).matvec(unknown)


def test_dask_in_dask_out_nothing_computed(kernel) -> None:
    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    x = da.from_array(np.ones((12, 12, 12)), chunks=6)
    x = x.map_blocks(counted, dtype=float, meta=np.empty((0, 0, 0)))
    out = ForwardModel(kernel, 2, x.shape).T @ (ForwardModel(kernel, 2, x.shape) @ x)
    assert isinstance(out, da.Array) and calls == []
    out.compute()
    assert calls
