"""The headline: under a slowly varying grey-level gain across the field of view
(a scanner shading artefact), kernel estimation with ``local-mi`` recovers the
kernel better than with the global ``mi``, both through ``estimate_kernel``.

Measured on small volumes, where it holds (48³ and 64³ HR, and 96³); at 128³ HR
the global ``mi`` is level (see the package README): a gain field independent
of the structure acts like noise on the global histogram, which many samples
average out.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from boneframe.kernel import estimate_kernel
from boneframe.phantom import gaussian_kernel, simulate_pair

TRUE = gaussian_kernel((1.6, 1.3, 1.1), 9, (0.3, -0.2, 0.1), gain=0.9)

#: Gradient-descent iterations for both similarities: the global mi converges
#: within them (79 iterations, seed 0, error 0.198); local-mi is within 1e-3 of
#: its converged error (0.165 at 50, 0.166 at 80 and at its convergence after 167).
MAX_ITER = 80


def gain_field(shape: tuple[int, int, int], amplitude: float = 0.3) -> np.ndarray:
    """A gain ``1 + amplitude * x`` rising linearly across the last axis (x in [-1, 1])."""
    ramp = 1.0 + amplitude * np.linspace(-1.0, 1.0, shape[2])
    return np.broadcast_to(ramp[None, None, :], shape)


def relative_kernel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``||h/sum h - t/sum t|| / ||t/sum t||`` (same support)."""
    e, t = estimate / estimate.sum(), truth / truth.sum()
    return float(np.linalg.norm(e - t) / np.linalg.norm(t))


@pytest.fixture(scope="module")
def shaded_pair():
    pair = simulate_pair(48, 0, kernel=TRUE, offset=0.05, noise=0.01)
    lr = (pair.lr.astype(np.float64) * gain_field(pair.lr.shape)).astype(np.float32)
    return pair.hr, lr


def test_local_mi_recovers_the_kernel_under_a_gain_field(shaded_pair):
    hr, lr = shaded_pair
    errors, times = {}, {}
    for name in ("mi", "local-mi"):
        start = time.perf_counter()
        est = estimate_kernel(hr, lr, similarity=name, solver="gradient-descent", max_iter=MAX_ITER)
        times[name] = time.perf_counter() - start
        errors[name] = relative_kernel_error(est.array, TRUE)
        assert np.all(np.isfinite(est.array)) and est.array.min() >= 0
    print(
        f"\n48^3 HR, seed 0, gain 1 +/- 0.3 across x, noise 1 %, {MAX_ITER} iterations: "
        + ", ".join(f"{k} error {errors[k]:.3f} ({times[k]:.1f} s)" for k in errors)
    )
    # observed (seeds 0/1/2, 80 iterations, default alphas 7.9 and 1): mi
    # 0.198/0.152/0.286, local-mi 0.166/0.129/0.199 (ratios 0.84/0.85/0.70; with
    # the literal Gaussian sums and windows every sigma cut at 3 sigma, before,
    # 0.179/0.130/0.219; with u binned by its extremes 0.166/0.126/0.213)
    assert errors["local-mi"] < 0.19
    assert errors["local-mi"] < 0.95 * errors["mi"], errors
