"""The exact f-step of TV super-resolution against the literal normal equations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
from scipy.sparse.linalg import LinearOperator, cg

from boneframe.errors import InputError
from boneframe.fourier_solve import (
    FourierNormalSolver,
    circular_convolve,
    circular_kernel,
    laplacian_symbol,
    normal_operator,
)
from boneframe.operators import Blur, Decimate, ForwardModel, Gradient, dottest


def _gaussian(sigma, support=(5, 5, 5), shift=(0.0, 0.0, 0.0), gain=1.0):
    axes = [np.arange(k) - k // 2 - s for k, s in zip(support, shift, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (3,))
    h = np.exp(-0.5 * ((z / sig[0]) ** 2 + (y / sig[1]) ** 2 + (x / sig[2]) ** 2))
    return gain * h / h.sum()


KERNELS = {
    "isotropic": _gaussian(1.0),
    "anisotropic": _gaussian((0.6, 1.2, 2.0), support=(3, 5, 7)),
    "off-centre": _gaussian(0.8, shift=(1.0, -0.5, 0.7)),
    "gain-2.5": _gaussian(1.3, gain=2.5),
    "random": np.random.default_rng(3).random((3, 5, 3)) + 0.05,
}


def test_circular_kernel_puts_the_centre_at_the_origin():
    h = np.zeros((3, 5, 3))
    h[1, 2, 1] = 1.0  # a centred delta is the identity
    h[2, 2, 1] = 0.5  # one voxel further along axis 0 shifts by +1
    c = circular_kernel(h, (6, 6, 6))
    assert c[0, 0, 0] == 1.0 and c[1, 0, 0] == 0.5 and c.sum() == 1.5


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_periodic_blur_is_the_circular_kernel_spectrum(name):
    # the solver's Lambda = F(circular_kernel) diagonalises Blur(boundary="periodic")
    h, shape = KERNELS[name], (10, 12, 9)
    x = np.random.default_rng(0).standard_normal(shape)
    spec = scipy.fft.rfftn(x) * scipy.fft.rfftn(circular_kernel(h, shape))
    spectral = scipy.fft.irfftn(spec, s=shape)
    np.testing.assert_allclose(Blur(h, shape, boundary="periodic") @ x, spectral, atol=1e-12)
    np.testing.assert_allclose(circular_convolve(x, h), spectral, atol=1e-12)
    assert circular_convolve(x.astype(np.float32), h).dtype == np.float32
    np.testing.assert_allclose(
        circular_convolve(x, h), scipy.ndimage.convolve(x, h, mode="wrap"), atol=1e-12
    )


@pytest.mark.parametrize("half", [False, True])
def test_laplacian_symbol_is_the_spectrum_of_dtd(half):
    shape = (6, 8, 10)
    delta = np.zeros(shape)
    delta[0, 0, 0] = 1.0
    d = Gradient(shape, "periodic")
    column = d.rmatvec(d.matvec(delta))
    spectrum = np.fft.rfftn(column) if half else np.fft.fftn(column)
    np.testing.assert_allclose(laplacian_symbol(shape, half), spectrum.real, atol=1e-12)
    assert np.abs(spectrum.imag).max() < 1e-12


def _cg_solution(h, shape, p, mu, beta, b):
    n = int(np.prod(shape))
    normal = normal_operator(h, shape, p, mu, beta)
    op = LinearOperator((n, n), matvec=lambda v: normal.matvec(v.reshape(shape)).ravel())
    x, info = cg(op, b.ravel(), rtol=1e-12, maxiter=5000)
    assert info == 0
    return x.reshape(shape)


CASES = [
    (2, (12, 10, 14)),
    ((2, 2, 1), (10, 12, 7)),
    ((1, 2, 2), (7, 10, 12)),  # p = 1 on a full axis, 2 on the half axis
    ((3, 2, 3), (9, 10, 9)),  # p = 3 on the last axis: full complex spectra
]


@pytest.mark.parametrize("p, shape", CASES, ids=[str(c[0]) for c in CASES])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_exact_solve_matches_cg_on_the_normal_equations(name, p, shape):
    h = KERNELS[name]
    mu, beta = 10.0, 0.7
    b = np.random.default_rng(4).standard_normal(shape)
    solver = FourierNormalSolver(h, shape, p, mu=mu, beta=beta, dtype=np.float64)
    x = solver.solve(b)
    residual = solver.operator() @ x - b
    assert np.linalg.norm(residual) <= 1e-6 * np.linalg.norm(b)
    x_cg = _cg_solution(h, shape, p, mu, beta, b)
    assert np.linalg.norm(x - x_cg) <= 1e-6 * np.linalg.norm(x_cg)


def test_float32_solve_is_accurate_to_single_precision():
    h, shape = KERNELS["anisotropic"], (16, 16, 16)
    b = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    x = FourierNormalSolver(h, shape, 2, mu=10.0, beta=7.0).solve(b)
    assert x.dtype == np.float32
    residual = normal_operator(h, shape, 2, 10.0, 7.0) @ x.astype(np.float64) - b
    assert np.linalg.norm(residual) <= 1e-4 * np.linalg.norm(b)


@pytest.mark.parametrize("p, shape", CASES, ids=[str(c[0]) for c in CASES])
def test_data_terms_in_fourier_match_the_spatial_operators(p, shape):
    h = KERNELS["off-centre"]
    solver = FourierNormalSolver(h, shape, p, mu=3.0, beta=1.0, dtype=np.float64)
    model = ForwardModel(h, p, shape, boundary="periodic")
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(solver.lr_shape)
    # U H x: Fourier (aliasing fold) against the spatial composition Decimate @ Blur
    ux = solver.lr_inverse(solver.blurred_decimated(solver.forward(x)))
    np.testing.assert_allclose(ux, model.matvec(x), atol=1e-12)
    np.testing.assert_allclose(ux, solver.forward_model @ x, atol=1e-12)
    # mu H^T U^T g
    expected = 3.0 * model.rmatvec(g)
    np.testing.assert_allclose(solver.inverse(solver.data_rhs(g)), expected, atol=1e-10)
    # ||U H x - g||² through Parseval
    r = model.matvec(x) - g
    spec = solver.blurred_decimated(solver.forward(x)) - solver.lr_spectrum(g)
    assert solver.lr_norm2(spec) == pytest.approx(float(np.sum(r**2)), rel=1e-10)


def test_the_solved_matrix_is_composed_from_the_operator_family():
    h, shape, p = KERNELS["anisotropic"], (8, 10, 8), 2
    normal = normal_operator(h, shape, p, mu=2.0, beta=0.5)
    dottest(normal, rng=0)  # symmetric: its own adjoint
    x = np.random.default_rng(7).standard_normal(shape)
    blur, dec, grad = (
        Blur(h, shape, boundary="periodic"),
        Decimate(shape, p),
        Gradient(shape, "periodic"),
    )
    literal = 2.0 * blur.rmatvec(dec.rmatvec(dec.matvec(blur.matvec(x))))
    literal += 0.5 * grad.rmatvec(grad.matvec(x))
    np.testing.assert_allclose(normal @ x, literal, rtol=1e-12)
    np.testing.assert_allclose(normal @ x, normal.T @ x, rtol=1e-12)
    solver = FourierNormalSolver(h, shape, p, mu=2.0, beta=0.5, dtype=np.float64)
    np.testing.assert_allclose(solver.solve(normal @ x), x, atol=1e-9)


def test_invalid_problems_are_refused():
    h = KERNELS["isotropic"]
    with pytest.raises(InputError, match="multiple"):
        FourierNormalSolver(h, (10, 11, 10), 2, mu=1.0, beta=1.0)
    with pytest.raises(InputError, match="sums to zero"):
        FourierNormalSolver(h - h.mean(), (10, 10, 10), 2, mu=1.0, beta=1.0)
    with pytest.raises(InputError, match="larger"):
        FourierNormalSolver(h, (4, 4, 4), 2, mu=1.0, beta=1.0)
    with pytest.raises(InputError, match="positive"):
        FourierNormalSolver(h, (10, 10, 10), 2, mu=0.0, beta=1.0)


SPLIT_CASES = CASES + [
    ((2, 2, 2), (14, 6, 10)),  # odd LR sizes 7, 3, 5: (0, 0) the only self-conjugate LR row
    ((2, 1, 2), (8, 5, 10)),  # p = 1 on an odd axis
]


@pytest.mark.parametrize("p, shape", SPLIT_CASES, ids=[str(c) for c in SPLIT_CASES])
@pytest.mark.parametrize("name", ["anisotropic", "off-centre", "random"])
def test_split_solve_is_the_exact_solve_and_its_residual_the_direct_one(name, p, shape):
    # the compiled f-step: (mu H^T U^T U H + beta D^T D) x = s b + mu H^T U^T g in one pass
    # over the spectrum, ||U H x - g||² by Parseval from its LR quantities
    h = KERNELS[name]
    rng = np.random.default_rng(8)
    exact = FourierNormalSolver(h, shape, p, mu=10.0, beta=0.7, dtype=np.float64)
    b = rng.standard_normal(shape)
    g = rng.standard_normal(exact.lr_shape)
    expected = exact.solve_spectrum(2.5 * exact.forward(b) + exact.data_rhs(g))
    # float32 to 2e-5 even for the random kernel, where the Woodbury step cancels
    # ~5000-fold near the zero frequency (the numpy float32 solve_spectrum: 9e-5)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-5)):
        solver = FourierNormalSolver(h, shape, p, mu=10.0, beta=0.7, dtype=dtype)
        b, g = b.astype(dtype), g.astype(dtype)
        spec = solver.forward(b)
        r2 = solver.solve_split_spectrum(spec, solver.lr_spectrum(g), 2.5)
        assert np.abs(spec - expected).max() <= tol * np.abs(expected).max()
        x = solver.inverse(spec, overwrite=True)
        assert x.dtype == dtype and x.shape == tuple(shape)
        # the solution of the normal equations, and its residual, in the spatial domain
        rhs = 2.5 * b.astype(np.float64) + solver.forward_model.rmatvec(10.0 * g.astype(np.float64))
        lhs = normal_operator(h, shape, p, 10.0, 0.7) @ x.astype(np.float64)
        assert np.linalg.norm(lhs - rhs) <= 20 * tol * np.linalg.norm(rhs)
        r = ForwardModel(h, p, shape, boundary="periodic").matvec(x.astype(np.float64)) - g
        assert r2 == pytest.approx(float(np.sum(r**2)), rel=20 * tol)


def test_split_solve_follows_new_weights_and_refuses_other_spectra():
    h, shape = KERNELS["isotropic"], (12, 10, 14)
    rng = np.random.default_rng(9)
    b = rng.standard_normal(shape)
    g = rng.standard_normal((6, 5, 7))
    solver = FourierNormalSolver(h, shape, 2, mu=10.0, beta=7.0, dtype=np.float64)
    solver.solve_split_spectrum(solver.forward(b), solver.lr_spectrum(g), 7.0)
    solver.set_weights(4.0, 0.3)  # beta and mu changed: the same as a new solver
    fresh = FourierNormalSolver(h, shape, 2, mu=4.0, beta=0.3, dtype=np.float64)
    for s in (solver, fresh):
        spec = s.forward(b)
        r2 = s.solve_split_spectrum(spec, s.lr_spectrum(g), 0.3)
        np.testing.assert_allclose(s.inverse(spec), fresh.solve(0.3 * b + fresh.inverse(
            fresh.data_rhs(g))), atol=1e-10)  # fmt: skip
        assert r2 > 0
    with pytest.raises(InputError, match="spectrum should be"):
        solver.solve_split_spectrum(solver.forward(b).astype(np.complex64), solver.lr_spectrum(g))


@pytest.mark.parametrize("p, shape", CASES, ids=[str(c[0]) for c in CASES])
def test_inverse_in_place_is_irfftn(p, shape):
    solver = FourierNormalSolver(KERNELS["isotropic"], shape, p, mu=1.0, beta=1.0, dtype=np.float32)
    x = np.random.default_rng(10).standard_normal(shape).astype(np.float32)
    spec = solver.forward(x)
    kept = spec.copy()
    np.testing.assert_allclose(solver.inverse(spec), x, atol=1e-5)
    np.testing.assert_array_equal(spec, kept)  # not overwritten by default
    np.testing.assert_allclose(solver.inverse(spec, overwrite=True), x, atol=1e-5)
