"""The chunked forward model equals the in-memory one; its pieces have exact adjoints."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from boneframe import operators as mem
from boneframe.chunked import operators as chk
from boneframe.errors import InputError
from tests.conftest import dot_test


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(7).random((40, 36, 30))


@pytest.fixture(scope="module")
def kernel() -> np.ndarray:
    return np.random.default_rng(8).random((5, 7, 3))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("chunks", [(16, 12, 10), (8, 36, 6), 40])
def test_convolve_matches_in_memory(volume, kernel, mode, chunks) -> None:
    out = chk.convolve(da.from_array(volume, chunks=chunks), kernel, mode)
    assert isinstance(out, da.Array)
    expected = mem.convolve(volume, kernel, mode)
    assert out.shape == expected.shape
    assert _rel(out.compute(), expected) < 1e-12


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_convolve_adjoint_matches_in_memory(volume, kernel, mode) -> None:
    y = mem.convolve(volume, kernel, mode)
    out = chk.convolve_adjoint(da.from_array(y, chunks=(10, 8, 12)), kernel, mode).compute()
    assert _rel(out, mem.convolve_adjoint(y, kernel, mode)) < 1e-12


def test_chunks_smaller_than_the_halo(kernel) -> None:
    small = np.random.default_rng(3).random((10, 12, 8))
    out = chk.convolve(da.from_array(small, chunks=(2, 4, 2)), kernel).compute()
    assert _rel(out, mem.convolve(small, kernel)) < 1e-12


@pytest.mark.parametrize("shape", [(40, 36, 30), (41, 35, 30)])
@pytest.mark.parametrize("c", [0.0, 0.3])
def test_forward_model_matches_in_memory(kernel, shape, c) -> None:
    f = np.random.default_rng(9).random(shape)
    out = chk.forward_model(da.from_array(f, chunks=(16, 12, 10)), kernel, c, p=2)
    expected = mem.forward_model(f, kernel, c, p=2, mode="same")
    assert out.shape == expected.shape
    assert out.chunks[0][0] == 8  # low-resolution chunks are the HR chunks / p
    assert _rel(out.compute(), expected) < 1e-12


def test_forward_model_anisotropic_factor(volume, kernel) -> None:
    out = chk.forward_model(da.from_array(volume, chunks=(12, 12, 10)), kernel, 0.1, p=(3, 2, 1))
    assert _rel(out.compute(), mem.forward_model(volume, kernel, 0.1, p=(3, 2, 1))) < 1e-12


def test_decimate_and_its_adjoint_match_in_memory(volume) -> None:
    x = da.from_array(volume, chunks=(16, 12, 10))
    y = chk.decimate(x, 2)
    np.testing.assert_array_equal(y.compute(), mem.decimate(volume, 2))
    back = chk.decimate_adjoint(y, 2, volume.shape)
    assert back.chunks == x.chunks
    np.testing.assert_array_equal(
        back.compute(), mem.decimate_adjoint(mem.decimate(volume, 2), 2, volume.shape)
    )


def test_misaligned_chunks_are_refused_or_rechunked(volume, kernel) -> None:
    x = da.from_array(volume, chunks=(15, 12, 10))
    with pytest.raises(InputError, match="multiples of the decimation factor"):
        chk.decimate(x, 2)
    with pytest.raises(InputError, match="multiples of the decimation factor"):
        chk.forward_model(x, kernel)
    out = chk.forward_model(x, kernel, 0.2, rechunk=True).compute()
    assert _rel(out, mem.forward_model(volume, kernel, 0.2)) < 1e-12
    with pytest.raises(InputError, match="decimated shape"):
        chk.decimate_adjoint(da.zeros((3, 3, 3), chunks=2), 2, (8, 8, 8))


def test_refuses_bad_kernels_and_shapes(volume) -> None:
    x = da.from_array(volume, chunks=16)
    with pytest.raises(InputError, match="odd"):
        chk.convolve(x, np.ones((4, 3, 3)))
    with pytest.raises(InputError, match="larger than the volume"):
        chk.convolve(da.zeros((4, 4, 4), chunks=2), np.ones((5, 5, 5)), "valid")
    with pytest.raises(InputError, match="3D"):
        chk.convolve(da.zeros((4, 4), chunks=2), np.ones((3, 3, 3)))


def _chunked(fn):
    return lambda v: fn(da.from_array(v, chunks=(10, 8, 6))).compute()


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_convolution_dot_test(rng, kernel, mode) -> None:
    x = rng.standard_normal((20, 16, 18))
    y = rng.standard_normal(mem.convolve(x, kernel, mode).shape)
    dot_test(
        _chunked(lambda a: chk.convolve(a, kernel, mode)),
        _chunked(lambda b: chk.convolve_adjoint(b, kernel, mode)),
        x,
        y,
        rtol=1e-12,
    )


def test_decimation_dot_test(rng) -> None:
    x = rng.standard_normal((20, 16, 17))
    y = rng.standard_normal(mem.decimated_shape(x.shape, 2))
    dot_test(
        _chunked(lambda a: chk.decimate(a, 2)),
        _chunked(lambda b: chk.decimate_adjoint(b, 2, x.shape)),
        x,
        y,
        rtol=1e-12,
    )


def test_forward_model_dot_test(rng, kernel) -> None:
    # U H and its adjoint H^T U^T, chunked, against each other and in memory
    x = rng.standard_normal((20, 16, 18))
    y = rng.standard_normal(mem.decimated_shape(x.shape, 2))

    def adjoint(b: np.ndarray) -> np.ndarray:
        up = chk.decimate_adjoint(da.from_array(b, chunks=(5, 4, 3)), 2, x.shape)
        return chk.convolve_adjoint(up, kernel).compute()

    dot_test(_chunked(lambda a: chk.forward_model(a, kernel)), adjoint, x, y, rtol=1e-12)
    expected = mem.convolve_adjoint(mem.decimate_adjoint(y, 2, x.shape), kernel)
    assert _rel(adjoint(y), expected) < 1e-12
