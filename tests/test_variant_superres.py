"""Super-resolution with a spatially variant (regional) kernel: the Fourier form of the
variant model against the spatial operators, the conjugate-gradient f-step against the
normal equations, and the stationary case against the exact solve."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.kernel import Kernel
from boneframe.kernel.regional import RegionalKernel
from boneframe.operators import Decimate, Gradient, dottest
from boneframe.operators.base import LinearOperator
from boneframe.operators.partition import hat_weights, region_weight
from boneframe.operators.variant import VariantBlur
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.regularizers.tv import TV
from boneframe.superres import super_resolve
from boneframe.superres.problem import SuperResolutionProblem
from boneframe.superres.variant import VariantSuperResolutionProblem
from boneframe.volume import Volume

LR = (6, 8, 10)
HR = tuple(2 * n for n in LR)
KERNELS = [gaussian_kernel(s, 5, (0.2, 0.0, -0.1)) for s in (0.7, 1.0, 1.4, 1.9)]
CENTRES = ([0.0], [1.0, 6.0], [2.0, 8.0])  # LR voxel units


def _problem(rng, dtype=np.float64) -> VariantSuperResolutionProblem:
    lr_w = [hat_weights(c, np.arange(n)) for c, n in zip(CENTRES, LR, strict=True)]
    weights = [region_weight(lr_w, i) for i in np.ndindex(1, 2, 2)]
    g = rng.random(LR)
    return VariantSuperResolutionProblem(g, KERNELS, weights, 2, TV(), dtype=dtype, cg_tol=1e-11)


def _spatial() -> LinearOperator:
    # the same model in the spatial domain: HR voxel 2i carries LR voxel i's weight
    hr_w = [hat_weights(c, np.arange(n) / 2) for c, n in zip(CENTRES, HR, strict=True)]
    return Decimate(HR, 2) @ VariantBlur(KERNELS, hr_w, HR, boundary="periodic", dtype=np.float64)


def test_fourier_variant_model_is_the_spatial_one(rng):
    prob, op = _problem(rng), _spatial()
    x, y = rng.random(HR), rng.random(LR)
    np.testing.assert_allclose(prob.forward_lr(x), op.matvec(x), atol=1e-12)
    np.testing.assert_allclose(prob.adjoint_lr(y), op.rmatvec(y), atol=1e-12)
    assert dottest(op, rng=0) < 1e-12


def test_cg_f_step_solves_the_variant_normal_equations(rng):
    prob, op = _problem(rng), _spatial()
    mu, beta = 10.0, 7.0
    dtw = rng.random(HR)
    x = prob.solve_split_adjoint(dtw, mu, beta)
    grad = Gradient(HR, "periodic", dtype=np.float64)
    lhs = mu * op.rmatvec(op.matvec(x)) + beta * grad.rmatvec(grad.matvec(x))
    rhs = mu * op.rmatvec(prob.g) + beta * dtw
    assert np.linalg.norm(lhs - rhs) <= 1e-9 * np.linalg.norm(rhs)
    # the residual ADMM records is carried along the iteration
    assert prob.residual_norm2(x) == pytest.approx(float(np.sum((op.matvec(x) - prob.g) ** 2)))
    # warm-started from it, the next f-step needs fewer iterations
    prob.solve_split_adjoint(dtw * (1 + 1e-6), mu, beta)
    assert prob.cg_iterations[1] < prob.cg_iterations[0]


def test_one_kernel_everywhere_is_the_stationary_f_step(rng):
    h = KERNELS[1]
    lr_w = [hat_weights(c, np.arange(n)) for c, n in zip(CENTRES, LR, strict=True)]
    weights = [region_weight(lr_w, i) for i in np.ndindex(1, 2, 2)]
    g = rng.random(LR)
    var = VariantSuperResolutionProblem(
        g, [h] * 4, weights, 2, TV(), dtype=np.float64, cg_tol=1e-12
    )
    exact = SuperResolutionProblem(g, h, 2, TV(), dtype=np.float64)
    dtw = rng.random(HR)
    np.testing.assert_allclose(
        var.solve_split_adjoint(dtw, 10.0, 7.0), exact.solve_split_adjoint(dtw, 10.0, 7.0),
        atol=1e-10,
    )  # fmt: skip
    assert var.cg_iterations == [0]  # the preconditioner is the exact inverse


def _regional(kernels, lr_shape, vs=41.0, offsets=None) -> RegionalKernel:
    n = len(kernels)
    step = lr_shape[2] / n
    boxes = [
        ((0, lr_shape[0]), (0, lr_shape[1]), (round(i * step), round((i + 1) * step)))
        for i in range(n)
    ]
    centres = [(0.0, 0.0, 2 * vs * (b[2][0] + b[2][1] - 1) / 2) for b in boxes]
    offs = offsets or [0.0] * n
    ks = [Kernel(h, offset=o, voxel_size=(vs,) * 3) for h, o in zip(kernels, offs, strict=True)]
    return RegionalKernel(ks, (1, 1, n), boxes, centres, tuple(lr_shape))


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(32, 4, noise=0.01, offset=0.05)


def test_regional_kernel_of_one_kernel_is_the_stationary_super_resolution(pair):
    reg = _regional([pair.kernel] * 3, pair.lr.shape, offsets=[0.05] * 3)
    k = Kernel(pair.kernel, offset=0.05, voxel_size=(41.0,) * 3)
    a = super_resolve(pair.lr, reg, max_iter=5).array
    b = super_resolve(pair.lr, k, max_iter=5).array
    np.testing.assert_allclose(a, b, atol=2e-3 * float(np.ptp(b)))


def test_regional_offsets_are_removed_where_they_apply(pair):
    # a scan whose offset differs by region: its regional kernel recovers the same f
    reg = _regional([pair.kernel] * 2, pair.lr.shape, offsets=[0.0, 0.2])
    field = reg.blend([np.arange(n) * 82.0 for n in pair.lr.shape], reg.gains * reg.offsets)
    shifted = pair.lr + field.astype(np.float32)
    a = super_resolve(shifted, reg, max_iter=5, scale=300.0).array
    b = super_resolve(pair.lr, reg.with_offset(0.0), max_iter=5, scale=300.0).array
    np.testing.assert_allclose(a, b, atol=1e-3 * float(np.ptp(b)))


def test_blocks_place_the_regional_kernel_where_they_lie(pair):
    narrow, wide = gaussian_kernel(0.8, 9), gaussian_kernel(1.8, 9)
    reg = _regional([narrow, wide], pair.lr.shape)
    whole = super_resolve(pair.lr, reg, max_iter=6, workers=1)
    lazy = da.from_array(pair.lr, chunks=(16, 16, 8))
    one = super_resolve(da.from_array(pair.lr, chunks=16), reg, max_iter=6, block=16, halo=4)
    np.testing.assert_array_equal(np.asarray(one.array), whole.array)  # a single block
    blocks = super_resolve(lazy, reg, max_iter=6, block=(16, 16, 8), halo=4, scale=whole.scale)
    # block by block, each block at its place: close to the whole solve, and far from
    # the solve that would put the narrow kernel everywhere
    err = np.abs(np.asarray(blocks.array) - whole.array)
    narrow_only = super_resolve(pair.lr, _regional([narrow, narrow], pair.lr.shape), max_iter=6)
    assert np.median(err) < 0.2 * np.median(np.abs(narrow_only.array - whole.array))


def test_regional_geometry_follows_the_volume(pair):
    narrow, wide = gaussian_kernel(0.8, 9), gaussian_kernel(1.8, 9)
    reg = _regional([narrow, wide], pair.lr.shape)
    vol = Volume(pair.lr, voxel_size=(82.0,) * 3, origin=(500.0, 0.0, 0.0))  # x moved by 500 µm
    moved = super_resolve(vol, reg.relative_to((0.0, 0.0, -500.0)), max_iter=4)
    there = super_resolve(pair.lr, reg, max_iter=4)
    np.testing.assert_allclose(moved.array, there.array, atol=1e-5 * float(np.ptp(there.array)))


def test_regional_refusals(pair):
    reg = _regional([pair.kernel] * 2, pair.lr.shape)
    with pytest.raises(InputError, match="p=.* differs"):
        super_resolve(pair.lr, reg, p=3)
    with pytest.raises(InputError, match="zarr"):
        super_resolve(pair.lr, reg, mask=np.ones(pair.lr.shape, bool))
