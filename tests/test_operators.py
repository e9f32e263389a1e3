"""The operator family in memory: adjoints (dot tests), conventions, composition.

The same operators on dask arrays: tests/test_operators_dask.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from boneframe.errors import InputError
from boneframe.operators import (
    AdjointMismatch,
    Blur,
    Composition,
    Crop,
    Decimate,
    ForwardModel,
    Gradient,
    LinearOperator,
    convolve,
    convolve_adjoint,
    decimate,
    decimate_adjoint,
    dottest,
    forward_model,
    gradient,
    gradient_adjoint,
    laplacian,
    valid_lr_slices,
)

KERNEL_SHAPES = [(3, 3, 3), (5, 3, 7), (9, 9, 9)]
DTYPES = [np.float32, np.float64]


# -- dot tests -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
@pytest.mark.parametrize("kshape", KERNEL_SHAPES)
def test_blur_dot_test(rng, kshape, boundary, dtype):
    h = rng.standard_normal(kshape).astype(dtype)
    op = Blur(h, (12, 11, 10), boundary=boundary)
    assert op.dtype == dtype
    assert dottest(op, rng=rng, dtype=dtype) < (1e-5 if dtype == np.float32 else 1e-11)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2, (2, 2, 1), 3, (1, 3, 2)])
@pytest.mark.parametrize("shape", [(12, 10, 8), (11, 9, 7)])
def test_decimate_dot_test(rng, p, shape, dtype):
    op = Decimate(shape, p)
    assert op.shape_out == tuple(-(-n // q) for n, q in zip(shape, op.p, strict=True))
    dottest(op, rng=rng, dtype=dtype, rtol=1e-14 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("shape", [(7, 6, 5), (9, 4), (1, 5, 3)])
def test_gradient_dot_test(rng, shape, boundary, dtype):
    op = Gradient(shape, boundary)
    assert op.shape_out == (len(shape), *shape)
    dottest(op, rng=rng, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("p", [2, (3, 2, 1)])
def test_forward_model_dot_test(rng, p, mode, boundary, dtype):
    h = rng.random((5, 3, 7)).astype(dtype)
    op = ForwardModel(h, p, (13, 12, 14), boundary=boundary, mode=mode)
    dottest(op, rng=rng, dtype=dtype)


def test_crop_dot_test(rng):
    op = Crop((6, 7, 8), (slice(1, 5), slice(None), slice(2, -1)))
    assert op.shape_out == (4, 7, 5)
    dottest(op, rng=rng)
    with pytest.raises(InputError, match="empty or strided"):
        Crop((6, 6, 6), (slice(0, 6, 2), slice(None), slice(None)))


class _Scale(LinearOperator):
    """``x -> a x`` with an adjoint that may be wrong (``b`` instead of ``a``)."""

    def __init__(self, shape, a=2.0, b=2.0, promote=False):
        super().__init__(shape, shape, np.float32)
        self.a, self.b, self.promote = a, b, promote

    def _matvec(self, x):
        return (x.astype(np.float64) if self.promote else x) * self.a

    def _rmatvec(self, y):
        return y * self.b


def test_dottest_names_a_wrong_adjoint_and_a_lost_precision(rng):
    assert dottest(_Scale((3, 4, 5)), rng=rng, dtype=np.float32) == 0.0
    with pytest.raises(AdjointMismatch, match=r"_Scale.*fails the dot test"):
        dottest(_Scale((3, 4, 5), b=2.001), rng=rng)
    with pytest.raises(AdjointMismatch, match="float32 gave float64"):
        dottest(_Scale((3, 4, 5), promote=True), rng=rng, dtype=np.float32)
    # a subtle error passes a loose tolerance and fails the default one
    dottest(_Scale((3, 4, 5), b=2 + 1e-9), rng=rng, rtol=1e-6)
    with pytest.raises(AdjointMismatch):
        dottest(_Scale((3, 4, 5), b=2 + 1e-9), rng=rng)


# -- composition -----------------------------------------------------------------
def test_composition_applies_right_to_left_and_its_adjoint_in_reverse(rng):
    h = rng.random((3, 5, 3))
    blur, dec = Blur(h, (10, 8, 6)), Decimate((10, 8, 6), 2)
    model = dec @ blur
    assert isinstance(model, Composition) and model.ops == (dec, blur)
    assert (model.shape_in, model.shape_out) == ((10, 8, 6), (5, 4, 3))
    x, y = rng.standard_normal((10, 8, 6)), rng.standard_normal((5, 4, 3))
    np.testing.assert_array_equal(model @ x, dec.matvec(blur.matvec(x)))
    np.testing.assert_array_equal(model.rmatvec(y), blur.rmatvec(dec.rmatvec(y)))
    np.testing.assert_array_equal(model.T @ y, model.rmatvec(y))
    assert model.T.T is model
    assert (model.T @ model).shape_in == (10, 8, 6)
    with pytest.raises(InputError, match="cannot compose"):
        blur @ dec
    np.testing.assert_array_equal(ForwardModel(h, 2, (10, 8, 6)) @ x, model @ x)


def test_sums_and_scalings_of_operators(rng):
    shape = (6, 5, 4)
    grad = Gradient(shape, "periodic")
    blur = Blur(rng.random((3, 3, 3)), shape, boundary="periodic")
    op = 2.0 * (blur.T @ blur) + np.float64(0.5) * (grad.T @ grad) - blur
    x = rng.standard_normal(shape)
    expected = (
        2.0 * blur.rmatvec(blur.matvec(x)) + 0.5 * grad.rmatvec(grad.matvec(x)) - blur.matvec(x)
    )
    np.testing.assert_allclose(op @ x, expected, rtol=1e-12)
    dottest(op, rng=rng)
    with pytest.raises(InputError, match="cannot add"):
        grad + blur
    with pytest.raises(InputError, match="finite real"):
        float("nan") * blur


def test_wrong_input_shape_names_the_operator():
    op = Decimate((8, 8, 8), 2)
    with pytest.raises(InputError, match=r"Decimate\(\(8, 8, 8\) -> \(4, 4, 4\).*\(4, 4, 5\)"):
        op.rmatvec(np.zeros((4, 4, 5)))
    with pytest.raises(InputError, match="should have shape"):
        op @ np.zeros((8, 8))


def test_float32_stays_float32_and_a_float64_kernel_promotes(rng):
    x = rng.random((8, 8, 8), dtype=np.float32)
    h = rng.random((3, 3, 3))
    assert ForwardModel(h.astype(np.float32), 2, x.shape).predict(x, 0.1).dtype == np.float32
    assert ForwardModel(h, 2, x.shape).predict(x, 0.1).dtype == np.float64
    assert Blur(h, x.shape, dtype=np.float32).matvec(x).dtype == np.float32
    assert Gradient(x.shape).matvec(x).dtype == np.float32
    assert Decimate(x.shape).matvec(x).flags.c_contiguous  # a copy, not a strided view


# -- conventions -----------------------------------------------------------------
def test_convolution_centring_matches_definition():
    # (h*F)[y] = sum_k h[k] F[y - (k - K//2)]: a delta at index k0 shifts by k0 - K//2
    h = np.zeros((5, 3, 7))
    h[3, 0, 6] = 2.0  # offsets (+1, -1, +3)
    f = np.zeros((9, 9, 9))
    f[4, 4, 4] = 1.0
    out = convolve(f, h)
    assert out[5, 3, 7] == pytest.approx(2.0)
    assert np.sum(np.abs(out)) == pytest.approx(2.0)
    # the adjoint shifts back; the periodic blur wraps the shift around
    back = convolve_adjoint(out, h)
    assert back[4, 4, 4] == pytest.approx(4.0) and np.sum(np.abs(back)) == pytest.approx(4.0)
    f[4, 4, 4], f[8, 0, 6] = 0.0, 1.0
    wrapped = Blur(h, f.shape, boundary="periodic").matvec(f)
    assert wrapped[0, 8, 0] == pytest.approx(2.0)
    assert np.sum(np.abs(wrapped)) == pytest.approx(2.0)


def test_convolution_matches_scipy_ndimage(rng):
    f = rng.standard_normal((20, 18, 16))
    h = rng.standard_normal((5, 3, 7))
    ref = ndimage.convolve(f, h, mode="constant", cval=0.0)
    np.testing.assert_allclose(convolve(f, h, "same"), ref, atol=1e-10)
    valid = convolve(f, h, "valid")
    assert valid.shape == (16, 16, 10)
    np.testing.assert_allclose(valid, ref[2:-2, 1:-1, 3:-3], atol=1e-10)
    y = rng.standard_normal(valid.shape)
    assert convolve_adjoint(y, h, "valid").shape == f.shape
    assert np.vdot(valid, y) == pytest.approx(np.vdot(f, convolve_adjoint(y, h, "valid")))
    wrap = ndimage.convolve(f, h, mode="wrap")
    np.testing.assert_allclose(Blur(h, f.shape, boundary="periodic") @ f, wrap, atol=1e-10)


def test_decimation_keeps_every_pth_voxel_from_zero():
    x = np.arange(5 * 4 * 3.0).reshape(5, 4, 3)
    np.testing.assert_array_equal(decimate(x, (2, 3, 1)), x[::2, ::3, :])
    assert decimate(x, (2, 3, 1)).shape == (3, 2, 3)
    up = decimate_adjoint(np.ones((3, 2, 3)), (2, 3, 1), x.shape)
    assert up.sum() == 18 and up[4, 3, 2] == 1 and up[1, 0, 0] == 0


def test_forward_model_valid_matches_same_inside(rng):
    f = rng.standard_normal((20, 20, 20))
    h = rng.standard_normal((5, 5, 5))
    same = forward_model(f, h, c=0.3, p=2)
    valid = forward_model(f, h, c=0.3, p=2, mode="valid")
    sl = valid_lr_slices(f.shape, h.shape, 2)
    assert [(s.start, s.stop) for s in sl] == [(1, 9)] * 3  # LR i with 2 <= 2i <= 17
    np.testing.assert_allclose(valid, same[sl], rtol=1e-12)
    # the valid voxels see no zero padding: equal to convolving a larger volume
    big = np.pad(f, 4, mode="reflect")
    ref = decimate(convolve(big + 0.3, h)[4:-4, 4:-4, 4:-4], 2)[sl]
    np.testing.assert_allclose(valid, ref, rtol=1e-10, atol=1e-10)
    model = ForwardModel(h, 2, f.shape, mode="valid")
    np.testing.assert_array_equal(model.predict(f, 0.3), valid)
    assert model.p == (2, 2, 2) and model.kernel.shape == (5, 5, 5)


def test_periodic_forward_model_of_a_constant_is_the_kernel_sum(rng):
    h = rng.random((3, 5, 3))
    lr = ForwardModel(h, 2, (8, 10, 6), boundary="periodic").predict(np.zeros((8, 10, 6)), 0.5)
    np.testing.assert_allclose(lr, 0.5 * h.sum(), rtol=1e-12)
    zero = ForwardModel(h, 2, (8, 10, 6)).predict(np.zeros((8, 10, 6)), 0.5)
    assert zero[0, 0, 0] < 0.5 * h.sum() and zero[2, 2, 1] == pytest.approx(0.5 * h.sum())


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_gradient_functions_are_the_operator(rng, boundary):
    x = rng.standard_normal((7, 6, 5))
    v = rng.standard_normal((3, 7, 6, 5))
    op = Gradient(x.shape, boundary)
    np.testing.assert_array_equal(gradient(x, boundary), op @ x)
    np.testing.assert_array_equal(gradient_adjoint(v, boundary), op.T @ v)
    d = gradient(x, boundary)
    np.testing.assert_array_equal(d[1][:, :-1], x[:, 1:] - x[:, :-1])
    assert np.all(d[1][:, -1] == (x[:, 0] - x[:, -1] if boundary == "periodic" else 0.0))


def test_laplacian_of_quadratic_is_constant_inside():
    z, y, x = np.meshgrid(*[np.arange(8.0)] * 3, indexing="ij")
    lap = laplacian(x**2 + 2 * y**2 + 3 * z**2)
    assert np.allclose(lap[1:-1, 1:-1, 1:-1], 2 + 4 + 6)


# -- refusals --------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.ones((4, 3, 3)), np.ones((3, 3)), np.full((3, 3, 3), np.nan)])
def test_bad_kernels_are_refused(bad):
    with pytest.raises(InputError):
        convolve(np.ones((8, 8, 8)), bad)


def test_bad_shapes_and_options_are_refused():
    with pytest.raises(InputError, match="larger than the volume"):
        convolve(np.ones((4, 8, 8)), np.ones((5, 5, 5)), "valid")
    with pytest.raises(InputError, match="larger than the periodic grid"):
        Blur(np.ones((5, 5, 5)), (4, 8, 8), boundary="periodic")
    with pytest.raises(InputError, match="boundary"):
        Blur(np.ones((3, 3, 3)), (4, 8, 8), boundary="reflect")
    with pytest.raises(InputError, match="boundary"):
        Gradient((4, 4), "zero")
    with pytest.raises(InputError, match="mode"):
        ForwardModel(np.ones((3, 3, 3)), 2, (8, 8, 8), mode="full")
    with pytest.raises(InputError, match="3D"):
        Blur(np.ones((3, 3, 3)), (8, 8))
    with pytest.raises(InputError, match="decimation factor"):
        Decimate((8, 8, 8), 0)


@pytest.mark.parametrize(
    "module", ["boneframe.operators", "boneframe.operators.blur", "boneframe.operators.dottest"]
)
def test_docstring_examples_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_importing_the_operators_does_not_import_dask():
    code = "import sys, boneframe.operators; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
