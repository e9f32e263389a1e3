"""TV super-resolution: boneframe's ADMM (exact Fourier f-step) against pyproximal's ADMML2.

Both minimise the same objective, the one boneframe solves after normalising
and padding the LR volume (periodic on the padded grid):

    J(f) = mu/2 ||U H f - g||² + TV(f),   TV isotropic, periodic differences.

pyproximal's ``ADMML2`` solves its x-step with LSQR on the same operators
(wrapped as pylops operators, so the operator cost is identical) and runs with
a fixed penalty equal to the one boneframe's ADMM settled on. The clock of the
pyproximal run stops while the objective is being measured. Also reported:
time per boneframe iteration against one ``scipy.fft.rfftn`` of the HR size, and
ADMM's compiled (fused) v/multiplier pass against the plain numpy iteration.

    python benchmarks/bench_superres.py [--size 100] [--budget 10.5] [--no-pyproximal]

pyproximal is stopped once it has run ``budget`` times as long as boneframe
took to converge: "not reached" then means boneframe is more than that much
faster.

pyproximal and pylops are needed only here (``pip install pyproximal pylops``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.fft

from boneframe.fourier_solve import circular_kernel
from boneframe.phantom import simulate_pair
from boneframe.regularizers.tv import TV
from boneframe.solvers.admm import ADMM
from boneframe.superres import SuperResolutionProblem, super_resolve


class _Stop(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="LR size per axis (HR: twice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument(
        "--budget",
        type=float,
        default=10.5,
        help="pyproximal time cap, in multiples of boneframe's time to convergence",
    )
    parser.add_argument("--lsqr-iter", type=int, default=10, help="LSQR iterations per x-step")
    parser.add_argument(
        "--fused-iter", type=int, default=10, help="iterations timed for fused vs numpy"
    )
    parser.add_argument("--no-pyproximal", action="store_true", help="skip the pyproximal run")
    args = parser.parse_args()

    pair = simulate_pair(2 * args.size, args.seed, noise=args.noise)
    g, h, mu = pair.lr, pair.kernel, 10.0
    hr = 2 * args.size
    x_fft = np.random.default_rng(0).standard_normal((hr, hr, hr)).astype(np.float32)
    scipy.fft.rfftn(x_fft, workers=-1)
    print(f"phantom {hr}^3 -> {args.size}^3, noise {args.noise}")

    # one rfftn is timed after every iteration, under the same machine load, and
    # left out of the iteration times
    pauses: list[tuple[float, float]] = []
    fft_times: list[float] = []

    def on_iteration(*_: object) -> None:
        t = time.perf_counter()
        scipy.fft.rfftn(x_fft, workers=-1)
        fft_times.append(time.perf_counter() - t)
        pauses.append((t, time.perf_counter()))

    t0 = time.perf_counter()
    res = super_resolve(g, h, offset=pair.offset, callback=on_iteration)
    t_total = time.perf_counter() - t0 - sum(b - a for a, b in pauses)
    iter_times = [pauses[k + 1][0] - pauses[k][1] for k in range(len(pauses) - 1)]
    per_iter = float(np.median(iter_times))
    t_fft = float(np.median(fft_times))
    setup = pauses[0][0] - t0 - per_iter
    beta_final = res.history[-1]["beta"]
    print(
        f"boneframe ADMM: {res.iterations} iterations to tol 1e-3 in {t_total:.1f} s "
        f"(setup {setup:.1f} s); {per_iter * 1e3:.0f} ms per iteration (median) "
        f"= {per_iter / t_fft:.1f} x rfftn({hr}^3) ({t_fft * 1e3:.0f} ms, median of the "
        f"interleaved runs); final beta {beta_final:g}"
    )

    # the compiled v/multiplier pass against the plain numpy iteration, same problem
    per = {}
    for fused in (False, True):
        prob = SuperResolutionProblem.from_scan(g, h, offset=pair.offset, regularizer=TV())
        stamps: list[float] = []
        ADMM(max_iter=args.fused_iter + 1, tol=0.0, fused=fused).solve(
            prob, prob.initial_estimate(), lambda *_, s=stamps: s.append(time.perf_counter())
        )
        per[fused] = float(np.median(np.diff(stamps)))
    print(
        f"ADMM iteration, {args.fused_iter} iterations each: numpy {per[False] * 1e3:.0f} ms, "
        f"fused {per[True] * 1e3:.0f} ms -> {per[False] / per[True]:.2f} x"
    )
    if args.no_pyproximal:
        return

    # the same normalised, padded problem, for the objective and for pyproximal
    import pylops
    import pyproximal

    problem = SuperResolutionProblem.from_scan(g, h, offset=pair.offset, regularizer=TV())
    shape, g_n = problem.shape, problem.g

    def objective(f: np.ndarray) -> float:
        return 0.5 * mu * problem.residual_norm2(f) + TV().penalty(problem.gradient(f))

    target = res.history[-1]["objective"]  # the same J, recorded by boneframe's ADMM
    print(f"objective reached by boneframe: {target:.6g}")

    lam = scipy.fft.rfftn(circular_kernel(problem.kernel, shape)).astype(np.complex64)
    n_hr = int(np.prod(shape))
    n_lr = int(np.prod(g_n.shape))
    root_mu = np.float32(np.sqrt(mu))

    class DataOp(pylops.LinearOperator):
        """sqrt(mu) U H (periodic), with its adjoint."""

        def __init__(self) -> None:
            super().__init__(dtype=np.float32, shape=(n_lr, n_hr))

        def _matvec(self, x: np.ndarray) -> np.ndarray:
            y = scipy.fft.irfftn(
                scipy.fft.rfftn(x.reshape(shape), workers=-1) * lam, s=shape, workers=-1
            )
            return (root_mu * y[::2, ::2, ::2]).astype(np.float32).ravel()

        def _rmatvec(self, y: np.ndarray) -> np.ndarray:
            z = np.zeros(shape, np.float32)
            z[::2, ::2, ::2] = y.reshape(g_n.shape)
            x = scipy.fft.irfftn(scipy.fft.rfftn(z, workers=-1) * np.conj(lam), s=shape, workers=-1)
            return (root_mu * x).astype(np.float32).ravel()

    class GradOp(pylops.LinearOperator):
        """Periodic forward differences, stacked (3, N)."""

        def __init__(self) -> None:
            super().__init__(dtype=np.float32, shape=(3 * n_hr, n_hr))

        def _matvec(self, x: np.ndarray) -> np.ndarray:
            return problem.gradient(x.reshape(shape).astype(np.float32)).ravel()

        def _rmatvec(self, v: np.ndarray) -> np.ndarray:
            return problem.gradient_adjoint(v.reshape((3, *shape)).astype(np.float32)).ravel()

    x0 = problem.initial_estimate().ravel()
    clock = {"start": time.perf_counter(), "paused": 0.0, "iters": 0, "best": np.inf, "hit": None}

    def callback(x: np.ndarray) -> None:
        pause = time.perf_counter()
        clock["iters"] += 1
        value = objective(x.reshape(shape).astype(np.float32))
        clock["best"] = min(clock["best"], value)
        clock["paused"] += time.perf_counter() - pause
        elapsed = time.perf_counter() - clock["start"] - clock["paused"]
        if value <= target:
            clock["hit"] = elapsed
            raise _Stop
        if elapsed > args.budget * t_total:
            raise _Stop

    clock["start"] = time.perf_counter()
    try:
        pyproximal.optimization.primal.ADMML2(
            pyproximal.L21(ndim=3),
            DataOp(),
            root_mu * g_n.ravel(),
            GradOp(),
            x0=x0,
            tau=1.0 / beta_final,
            niter=100000,
            callback=callback,
            iter_lim=args.lsqr_iter,
        )
    except _Stop:
        pass
    elapsed = time.perf_counter() - clock["start"] - clock["paused"]
    if clock["hit"] is not None:
        print(
            f"pyproximal ADMML2 (LSQR {args.lsqr_iter}/step, beta {beta_final:g}): reached after "
            f"{clock['iters']} iterations, {clock['hit']:.1f} s -> boneframe is "
            f"{clock['hit'] / t_total:.1f} x faster"
        )
    else:
        print(
            f"pyproximal ADMML2 (LSQR {args.lsqr_iter}/step, beta {beta_final:g}): not reached in "
            f"{elapsed:.0f} s ({clock['iters']} iterations, best {clock['best']:.6g}) -> "
            f"boneframe is more than {elapsed / t_total:.1f} x faster"
        )


if __name__ == "__main__":
    main()
