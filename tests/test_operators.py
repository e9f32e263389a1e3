"""Forward-model operators: adjoint (dot) tests and the centring convention."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dot_test
from scipy import ndimage

from boneframe.differences import gradient, gradient_adjoint, laplacian
from boneframe.errors import InputError
from boneframe.operators import (
    Convolution,
    Decimation,
    convolve,
    decimate,
    forward_model,
    valid_lr_slices,
)

KERNEL_SHAPES = [(3, 3, 3), (5, 3, 7), (9, 9, 9)]


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("kshape", KERNEL_SHAPES)
def test_convolution_adjoint(rng, mode, kshape):
    h = rng.standard_normal(kshape)
    op = Convolution(h, (12, 11, 10), mode)
    x = rng.standard_normal(op.shape_in)
    y = rng.standard_normal(op.shape_out)
    dot_test(op.matvec, op.rmatvec, x, y)


@pytest.mark.parametrize("p", [2, (2, 2, 1), 3])
@pytest.mark.parametrize("shape", [(12, 10, 8), (11, 9, 7)])
def test_decimation_adjoint(rng, p, shape):
    op = Decimation(shape, p)
    dot_test(op.matvec, op.rmatvec, rng.standard_normal(shape), rng.standard_normal(op.shape_out))


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_gradient_adjoint(rng, boundary):
    x = rng.standard_normal((7, 6, 5))
    v = rng.standard_normal((3, 7, 6, 5))
    dot_test(lambda a: gradient(a, boundary), lambda b: gradient_adjoint(b, boundary), x, v)


def test_laplacian_of_quadratic_is_constant_inside():
    z, y, x = np.meshgrid(*[np.arange(8.0)] * 3, indexing="ij")
    lap = laplacian(x**2 + 2 * y**2 + 3 * z**2)
    assert np.allclose(lap[1:-1, 1:-1, 1:-1], 2 + 4 + 6)


def test_convolution_centring_matches_definition(rng):
    # (h*F)[y] = sum_k h[k] F[y - (k - K//2)]: a delta at index k0 shifts by k0 - K//2
    h = np.zeros((5, 3, 7))
    h[3, 0, 6] = 2.0  # offsets (+1, -1, +3)
    f = np.zeros((9, 9, 9))
    f[4, 4, 4] = 1.0
    out = convolve(f, h)
    assert out[5, 3, 7] == pytest.approx(2.0)
    assert np.sum(np.abs(out)) == pytest.approx(2.0)


def test_convolution_matches_scipy_ndimage(rng):
    f = rng.standard_normal((20, 18, 16))
    h = rng.standard_normal((5, 3, 7))
    ours = convolve(f, h, "same")
    ref = ndimage.convolve(f, h, mode="constant", cval=0.0)
    assert np.allclose(ours, ref, atol=1e-10)
    valid = convolve(f, h, "valid")
    assert valid.shape == (16, 16, 10)
    assert np.allclose(valid, ref[2:-2, 1:-1, 3:-3], atol=1e-10)


def test_forward_model_valid_matches_same_inside(rng):
    f = rng.standard_normal((20, 20, 20))
    h = rng.standard_normal((5, 5, 5))
    same = forward_model(f, h, c=0.3, p=2)
    valid = forward_model(f, h, c=0.3, p=2, mode="valid")
    sl = valid_lr_slices(f.shape, h.shape, 2)
    assert [(s.start, s.stop) for s in sl] == [(1, 9)] * 3  # LR i with 2 <= 2i <= 17
    assert np.allclose(valid, same[sl])
    # the valid voxels see no zero padding: equal to convolving a larger volume
    big = np.pad(f, 4, mode="reflect")
    ref = decimate(convolve(big + 0.3, h)[4:-4, 4:-4, 4:-4], 2)[sl]
    assert np.allclose(valid, ref)


@pytest.mark.parametrize("bad", [np.ones((4, 3, 3)), np.ones((3, 3)), np.full((3, 3, 3), np.nan)])
def test_bad_kernels_are_refused(bad):
    with pytest.raises(InputError):
        convolve(np.ones((8, 8, 8)), bad)


def test_kernel_larger_than_volume_is_refused():
    with pytest.raises(InputError, match="larger than the volume"):
        convolve(np.ones((4, 8, 8)), np.ones((5, 5, 5)), "valid")
