"""Device selection and the array-API (GPU) code paths.

The generic paths (the exact Fourier f-step, the periodic differences, TV's
shrinkage, ADMM's generic iteration, the kernel design's FFT correlations) are
the code that runs on CuPy arrays. Here they run on ``array_api_strict``, the
standard's strict CPU namespace, against numpy: this is how the GPU code is
exercised without a GPU. Tests that need CuPy and a CUDA device skip cleanly
without one.
"""

from __future__ import annotations

import inspect
import sys
import types

import numpy as np
import pytest

from boneframe.device import (
    GPU_HINT,
    array_namespace,
    array_namespace_for,
    check_device,
    cuda_available,
    fft_functions,
    real_dot,
    to_device,
    to_numpy,
)
from boneframe.errors import InputError
from boneframe.fourier_solve import FourierNormalSolver
from boneframe.kernel.design import ValidDesign
from boneframe.operators import Blur, ForwardModel, Gradient
from boneframe.operators.blur import blur_block
from boneframe.regularizers.tv import TV
from boneframe.solvers.admm import ADMM
from boneframe.superres import SuperResolutionProblem, super_resolve

xs = pytest.importorskip("array_api_strict")

needs_gpu = pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA device")
no_gpu = pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")


def _kernel(sigma=1.0, support=5):
    r = np.arange(support) - support // 2
    k = np.exp(-0.5 * (r / sigma) ** 2)
    h = k[:, None, None] * k[None, :, None] * k[None, None, :]
    return h / h.sum()


def _lr(n=12, seed=0):
    rng = np.random.default_rng(seed)
    g = np.where(rng.random((n, n, n)) > 0.7, 300.0, 45.0)
    return g + rng.normal(0, 3.0, g.shape)


def _rel(a, b):
    a, b = to_numpy(a).astype(np.complex128), to_numpy(b).astype(np.complex128)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


TOL = {np.float32: 1e-5, np.float64: 1e-10}


# -- device selection -------------------------------------------------------------------
def test_devices_are_checked_and_cpu_is_numpy():
    assert check_device("cpu") == "cpu" and check_device("cuda") == "cuda"
    with pytest.raises(InputError, match="device must be one of"):
        check_device("tpu")
    xp = array_namespace_for("cpu")
    assert isinstance(xp.zeros(3), np.ndarray)
    assert isinstance(cuda_available(), bool)


@no_gpu
def test_cuda_without_cupy_or_a_device_is_refused_with_the_install_hint(monkeypatch):
    with pytest.raises(InputError) as err:
        array_namespace_for("cuda")
    assert GPU_HINT in str(err.value) and "pip install 'boneframe[gpu]'" in str(err.value)
    # CuPy installed but no device, or a broken driver: the same hint, never a crash
    for count in (lambda: 0, lambda: (_ for _ in ()).throw(RuntimeError("no driver"))):
        fake = types.ModuleType("cupy")
        fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
        monkeypatch.setitem(sys.modules, "cupy", fake)
        with pytest.raises(InputError, match="needs CuPy and an NVIDIA GPU"):
            array_namespace_for("cuda")
        assert cuda_available() is False


@no_gpu
def test_super_resolve_on_cuda_without_a_gpu_says_how_to_get_one():
    with pytest.raises(InputError, match=r"pip install 'boneframe\[gpu\]'"):
        super_resolve(_lr(8), _kernel(), max_iter=2, device="cuda")
    with pytest.raises(InputError, match="device must be one of"):
        super_resolve(_lr(8), _kernel(), max_iter=2, device="gpu")


def test_cpu_is_the_default_and_unchanged():
    assert inspect.signature(super_resolve).parameters["device"].default == "cpu"
    g, h = _lr(8), _kernel()
    default = super_resolve(g, h, max_iter=4)
    cpu = super_resolve(g, h, max_iter=4, device="cpu")
    assert isinstance(cpu.array, np.ndarray) and cpu.array.dtype == np.float32
    np.testing.assert_array_equal(default.array, cpu.array)
    assert default.history == cpu.history


def test_conversions_and_helpers_on_the_strict_namespace():
    a = np.arange(24.0).reshape(2, 3, 4)
    s = to_device(a, xs, np.float32)
    assert array_namespace(s) is xs and s.dtype == xs.float32
    np.testing.assert_array_equal(to_numpy(s), a.astype(np.float32))
    assert to_numpy(a) is a
    assert real_dot(s, s) == pytest.approx(float(np.sum(a * a)))
    assert real_dot(a, a) == pytest.approx(float(np.sum(a * a)))
    for x in (a, s):  # numpy runs scipy.fft (threads), others their fft extension
        fft = fft_functions(array_namespace(x))
        spec = fft.rfftn(x)
        back = fft.irfftn(spec, s=a.shape, axes=(0, 1, 2))
        np.testing.assert_allclose(to_numpy(back), a, atol=1e-4)
        full = fft.fftn(x)  # real input is made complex for the standard's fftn
        np.testing.assert_allclose(to_numpy(full)[..., :3], to_numpy(spec), atol=1e-3)


# -- the generic code on array_api_strict against numpy -------------------------------------
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_differences_on_the_strict_namespace(boundary):
    x = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(np.float32)
    op = Gradient(x.shape, boundary)
    dx, dxs = op.matvec(x), op.matvec(xs.asarray(x))
    assert array_namespace(dxs) is xs and dxs.dtype == xs.float32
    np.testing.assert_array_equal(to_numpy(dxs), dx)
    np.testing.assert_array_equal(to_numpy(op.rmatvec(dxs)), op.rmatvec(dx))


def test_blur_block_is_fftconvolve():
    # the array-API convolution gives scipy's numbers exactly on numpy
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(5)
    for dtype, kdtype in ((np.float32, np.float32), (np.float32, np.float64)):
        x = rng.standard_normal((17, 20, 9)).astype(dtype)
        h = rng.random((5, 3, 7)).astype(kdtype)
        out_dtype = np.result_type(dtype, kdtype)
        expected = fftconvolve(x, h, mode="same").astype(out_dtype)
        out = blur_block(x, h, out_dtype)
        assert out.dtype == out_dtype
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
@pytest.mark.parametrize("mode", ["same", "valid"])
def test_forward_model_on_the_strict_namespace(boundary, mode):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 20, 10))
    h = _kernel(1.2, 5)
    model = ForwardModel(h, 2, x.shape, boundary=boundary, mode=mode)
    ux, ux_s = model.matvec(x), model.matvec(xs.asarray(x))
    assert array_namespace(ux_s) is xs and ux_s.dtype == xs.float64
    np.testing.assert_allclose(to_numpy(ux_s), ux, atol=1e-13)
    np.testing.assert_allclose(to_numpy(model.rmatvec(ux_s)), model.rmatvec(ux), atol=1e-13)
    blur = Blur(h, x.shape, boundary=boundary, dtype=np.float32)
    out = blur.matvec(xs.asarray(x.astype(np.float32)))
    assert out.dtype == xs.float32
    np.testing.assert_allclose(to_numpy(out), blur.matvec(x.astype(np.float32)), atol=1e-5)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_tv_shrinkage_on_the_strict_namespace(anisotropic):
    v = np.random.default_rng(2).standard_normal((3, 6, 5, 4)).astype(np.float32)
    v[:, 0, 0, 0] = 0.0  # |v| = 0: finite
    tv = TV(anisotropic=anisotropic, weight=0.7)
    out, out_s = tv.prox_penalty(v, 0.8), tv.prox_penalty(xs.asarray(v), 0.8)
    assert array_namespace(out_s) is xs
    np.testing.assert_allclose(to_numpy(out_s), out, rtol=1e-6, atol=1e-7)
    assert tv.penalty(out_s) == pytest.approx(tv.penalty(out), rel=1e-6)
    assert tv.penalty(xs.asarray(v)) == pytest.approx(tv.penalty(v), rel=1e-6)


SOLVER_CASES = [
    (2, (12, 10, 14)),  # half spectra, p = 2 on the half axis (conjugate partners)
    ((2, 2, 1), (10, 12, 7)),  # half spectra, p = 1 on the half axis
    ((3, 2, 3), (9, 10, 9)),  # full spectra
]


@pytest.mark.parametrize("p, shape", SOLVER_CASES, ids=[str(c[0]) for c in SOLVER_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fourier_solver_on_the_strict_namespace(p, shape, dtype):
    h = _kernel(0.9, 3)
    rng = np.random.default_rng(3)
    ref = FourierNormalSolver(h, shape, p, mu=10.0, beta=0.7, dtype=dtype)
    gen = FourierNormalSolver(h, shape, p, mu=10.0, beta=0.7, dtype=dtype, xp=xs)
    b = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(ref.lr_shape).astype(dtype)
    tol = TOL[dtype]
    # the plain solve, the data terms, the forward model and Parseval
    np.testing.assert_allclose(to_numpy(gen.solve(b)), ref.solve(b), atol=tol * 50)
    assert _rel(gen.data_rhs(g), ref.data_rhs(g)) <= tol
    spec, spec_s = ref.forward(b), gen.forward(xs.asarray(b))
    assert _rel(gen.blurred_decimated(spec_s), ref.blurred_decimated(spec)) <= tol
    assert gen.lr_norm2(gen.lr_spectrum(xs.asarray(g))) == pytest.approx(
        float(np.sum(g.astype(np.float64) ** 2)), rel=tol
    )
    # the ADMM f-step (numpy half spectra: the compiled pass; strict: the array formula)
    r2 = ref.solve_split_spectrum(spec, ref.lr_spectrum(g), 2.5)
    r2_s = gen.solve_split_spectrum(spec_s, gen.lr_spectrum(xs.asarray(g)), 2.5)
    assert _rel(spec_s, spec) <= 2 * tol
    assert r2_s == pytest.approx(r2, rel=20 * tol)
    x = gen.inverse(spec_s, overwrite=True)
    assert array_namespace(x) is xs and x.dtype == getattr(xs, np.dtype(dtype).name)
    assert _rel(x, ref.inverse(spec)) <= 2 * tol


@pytest.mark.parametrize("anisotropic", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_admm_on_the_strict_namespace_gives_the_numpy_iterates(dtype, anisotropic):
    # a 12³ LR problem: the generic iteration on strict arrays against numpy's compiled
    # (fused) path and its generic path, with beta adapted
    g = _lr(12)
    runs = {}
    for name, data, fused in (("fused", g, True), ("numpy", g, False), ("strict", g, None)):
        problem = SuperResolutionProblem(
            xs.asarray(data) if name == "strict" else data, _kernel(), 2,
            TV(anisotropic=anisotropic), dtype=dtype,
        )  # fmt: skip
        x0 = problem.initial_estimate()
        assert array_namespace(x0) is (xs if name == "strict" else array_namespace(g))
        admm = ADMM(max_iter=25, tol=0, adapt_iter=10, fused=bool(fused))
        runs[name] = admm.solve(problem, x0)
    assert array_namespace(runs["strict"].x) is xs
    tol = TOL[dtype]
    for name in ("numpy", "fused"):
        assert _rel(runs["strict"].x, runs[name].x) <= tol, name
        betas = [r["beta"] for r in runs[name].history]
        assert len(set(betas)) > 2
        for ra, rb in zip(runs[name].history, runs["strict"].history, strict=True):
            for key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=100 * tol, abs=1e-9), key


def test_the_problem_keeps_its_namespace_and_returns_numpy_estimates():
    problem = SuperResolutionProblem.from_scan(
        _lr(8), _kernel(), p=2, regularizer=TV(), device="cpu"
    )
    assert problem.device == "cpu" and isinstance(problem.g, np.ndarray)
    strict = SuperResolutionProblem(xs.asarray(problem.g), problem.kernel, 2, TV())
    assert strict.device == "array_api_strict"
    x = strict.initial_estimate()
    assert array_namespace(x) is xs and x.dtype == xs.float32
    est = strict.estimate(x)
    assert isinstance(est, np.ndarray) and est.dtype == np.float32
    np.testing.assert_allclose(est, problem.initial_estimate(), rtol=1e-6)
    dx = strict.gradient(x)
    assert strict.residual_norm2(x) == pytest.approx(
        problem.residual_norm2(problem.initial_estimate()), rel=1e-5
    )
    assert array_namespace(strict.gradient_adjoint(dx)) is xs


@pytest.mark.parametrize("p", [(2, 2, 2), (1, 2, 3)])
def test_kernel_design_correlations_on_the_strict_namespace(p):
    rng = np.random.default_rng(4)
    crop = rng.standard_normal((21, 19, 23))
    ref, gen = ValidDesign(crop, (5, 3, 7), p), ValidDesign(crop, (5, 3, 7), p, xp=xs)
    assert array_namespace(gen.f_hat) is xs
    w, h = rng.standard_normal(ref.lr_shape), rng.standard_normal((5, 3, 7))
    corr = gen.correlate(xs.asarray(w))
    assert array_namespace(corr) is xs
    np.testing.assert_allclose(to_numpy(corr), ref.correlate(w), atol=1e-12)
    out = gen.correlate(w)  # numpy in, numpy out (the kernel boxes' sums stay on the host)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, ref.correlate(w), atol=1e-12)
    np.testing.assert_allclose(to_numpy(gen.blur(xs.asarray(h))), ref.blur(h), atol=1e-12)
    np.testing.assert_allclose(gen.blur(h), ref.blur(h), atol=1e-12)


# -- a real GPU ----------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_fourier_solver_and_admm_against_numpy(dtype):
    import cupy

    xp = array_namespace_for("cuda")
    g = _lr(12)
    runs = {}
    for device in ("cpu", "cuda"):
        problem = SuperResolutionProblem(g, _kernel(), 2, TV(), dtype=dtype, device=device)
        x0 = problem.initial_estimate()
        runs[device] = ADMM(max_iter=25, tol=0, adapt_iter=10).solve(problem, x0)
    assert isinstance(runs["cuda"].x, cupy.ndarray)
    assert _rel(runs["cuda"].x, runs["cpu"].x) <= 10 * TOL[dtype]
    shape = (12, 10, 14)
    ref = FourierNormalSolver(_kernel(0.9, 3), shape, 2, mu=10.0, beta=0.7, dtype=dtype)
    gpu = FourierNormalSolver(_kernel(0.9, 3), shape, 2, mu=10.0, beta=0.7, dtype=dtype, xp=xp)
    b = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    assert _rel(gpu.solve(b), ref.solve(b)) <= 10 * TOL[dtype]


@needs_gpu
def test_super_resolve_on_cuda_matches_cpu():
    g, h = _lr(16), _kernel()
    cpu = super_resolve(g, h, max_iter=20, tol=0.0)
    gpu = super_resolve(g, h, max_iter=20, tol=0.0, device="cuda")
    assert isinstance(gpu.array, np.ndarray) and gpu.array.dtype == np.float32
    assert gpu.iterations == cpu.iterations
    assert _rel(gpu.array, cpu.array) <= 1e-4


@needs_gpu
def test_kernel_design_on_cupy():
    xp = array_namespace_for("cuda")
    rng = np.random.default_rng(6)
    crop = rng.standard_normal((21, 19, 23))
    ref = ValidDesign(crop, (5, 3, 7), (2, 2, 2))
    gpu = ValidDesign(crop, (5, 3, 7), (2, 2, 2), xp=xp)
    w = rng.standard_normal(ref.lr_shape)
    np.testing.assert_allclose(gpu.correlate(w), ref.correlate(w), atol=1e-10)
