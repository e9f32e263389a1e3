"""TV super-resolution: boneframe's ADMM before and after issue #22, and pyproximal's ADMML2.

All solvers minimise the objective boneframe solves after normalising and
padding the LR volume (periodic on the padded grid):

    J(f) = mu/2 ||U H f - g||² + TV(f),   TV isotropic, periodic differences.

Two cases: the paper's setting (``simulate_pair(2 * size)``, 1 % noise, the
default anisotropic 9³ kernel) and a pair made from a real micro-CT mask
(``--real``, default ``../shared/data/trabecular/P7_mask.nii.gz``: the mask with
a partial-volume edge as a two-grey-level volume, the same kernel and model,
1 % noise; skipped when absent).

"before" is a frozen copy of the iteration as it was when issue #22 was filed
(its compiled v/multiplier pass verbatim below, ``D^T w`` in a second pass, the
f-step as five numpy passes plus the data right-hand side, the residual from a
second fold, ``irfftn``, residual balancing by doubling; it shares today's
solver set-up, whose per-beta arrays it rebuilds lazily, a few ms less per change
of beta than then); "after" is the library's :class:`~boneframe.solvers.admm.ADMM`.
Both run from the spline start to the paper's rule ``||f+ - f|| / ||f+|| <= 1e-3``,
interleaved (``--repeat`` times each). Also a step-by-step cost of one iteration of
each. Reported: time per iteration against one float32 ``scipy.fft.rfftn`` of the HR
size (timed after every iteration, under the same load, and left out of the
iteration times; the padded grid's own rfftn too), iterations and time to the
objective "before" reaches (J*) and to the stopping rule, the final objective and
PSNR against the truth (medians over the repeats).

pyproximal's ``ADMML2`` (paper case) solves its x-step with LSQR on the same
operators (pylops operators over the same FFTs) with a fixed penalty equal to the
one "after" settled on; its clock stops while the objective is measured, and it
stops at J* or after ``budget`` times the time "before" took. Also: the float32
iterates against float64 ones, and "after" with the doubling rule (same iterates
as "before" up to rounding), the compiled pass against the plain numpy iteration.

    python benchmarks/bench_superres.py [--size 100] [--real PATH] [--repeat 3]
        [--budget 10.5] [--no-pyproximal] [--no-precision]

pyproximal and pylops are needed only here (``pip install pyproximal pylops``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from numba import njit

from boneframe.fourier_solve import circular_kernel
from boneframe.parallel import run_chunks
from boneframe.phantom import (
    DEFAULT_SHIFT,
    DEFAULT_SIGMA,
    gaussian_kernel,
    micro_ct,
    simulate_acquisition,
    simulate_pair,
)
from boneframe.regularizers.tv import TV
from boneframe.solvers.admm import ADMM
from boneframe.superres import SuperResolutionProblem

REAL_MASK = Path(__file__).resolve().parents[2] / "shared/data/trabecular/P7_mask.nii.gz"
MU, BETA, TOL = 10.0, 7.0, 1e-3


class _Stop(Exception):
    pass


# --- "before": the iteration when issue #22 was filed (frozen) ---------------------------
# the compiled v/multiplier pass and D^T, verbatim (cache off)


@njit(nogil=True, fastmath=True)
def _before_update(x, x_old, y, w, dv, t, aniso, adapt, sums, k0, k1):
    """The fused pass on slices ``k0:k1``; sums per row in float32, per slice in float64."""
    nz, ny, nx = x.shape
    zero = t - t  # 0 in the arrays' precision
    for k in range(k0, k1):
        kp = k + 1 if k + 1 < nz else 0
        acc = np.zeros(7)
        dlast = np.empty(nx, dtype=x.dtype)  # differences along the last axis, one row
        spare = np.empty((3, nx), dtype=x.dtype)  # v_old - v_new when it is not wanted
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            xr, xz, xy, xo = x[k, j], x[kp, j], x[k, jp], x_old[k, j]
            for i in range(nx - 1):
                dlast[i] = xr[i + 1] - xr[i]
            dlast[nx - 1] = xr[0] - xr[nx - 1]
            y0, y1, y2 = y[0, k, j], y[1, k, j], y[2, k, j]
            w0, w1, w2 = w[0, k, j], w[1, k, j], w[2, k, j]
            if adapt:
                e0, e1, e2 = dv[0, k, j], dv[1, k, j], dv[2, k, j]
            else:
                e0, e1, e2 = spare[0], spare[1], spare[2]
            step2 = size2 = phi_dx = dx2 = phi_v = gap2 = y_gap = zero
            for i in range(nx):  # branch-free, so that it vectorises
                xc = xr[i]
                dxo = xc - xo[i]
                step2 += dxo * dxo
                size2 += xc * xc
                d0 = xz[i] - xc
                d1 = xy[i] - xc
                d2 = dlast[i]
                a0, a1, a2 = y0[i], y1[i], y2[i]
                u0, u1, u2 = d0 + a0, d1 + a1, d2 + a2
                dd = d0 * d0 + d1 * d1 + d2 * d2
                dx2 += dd
                if aniso:
                    phi_dx += abs(d0) + abs(d1) + abs(d2)
                    m0 = max(abs(u0) - t, zero)
                    m1 = max(abs(u1) - t, zero)
                    m2 = max(abs(u2) - t, zero)
                    phi_v += m0 + m1 + m2
                    v0 = m0 if u0 >= zero else -m0
                    v1 = m1 if u1 >= zero else -m1
                    v2 = m2 if u2 >= zero else -m2
                else:
                    phi_dx += math.sqrt(dd)
                    nu = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
                    kept = max(nu - t, zero)
                    phi_v += kept
                    s = kept / nu if nu > zero else zero
                    v0, v1, v2 = u0 * s, u1 * s, u2 * s
                n0, n1, n2 = u0 - v0, u1 - v1, u2 - v2
                g0, g1, g2 = a0 - n0, a1 - n1, a2 - n2
                gap2 += g0 * g0 + g1 * g1 + g2 * g2
                y_gap += n0 * g0 + n1 * g1 + n2 * g2
                # v_old - v_new with v_old = w_old + y_old (into ``spare`` unless adapting)
                e0[i], e1[i], e2[i] = w0[i] + a0 - v0, w1[i] + a1 - v1, w2[i] + a2 - v2
                y0[i], y1[i], y2[i] = n0, n1, n2
                w0[i], w1[i], w2[i] = v0 - n0, v1 - n1, v2 - n2
            acc[0] += step2
            acc[1] += size2
            acc[2] += phi_dx
            acc[3] += dx2
            acc[4] += phi_v
            acc[5] += gap2
            acc[6] += y_gap
        sums[k] = acc


@njit(nogil=True)
def _before_adjoint_kernel(w, out, norm2, k0, k1):
    """``out = D^T w`` on slices ``k0:k1`` (periodic); ``norm2[k]`` = its squared norm."""
    nz, ny, nx = w.shape[1:]
    for k in range(k0, k1):
        km = k - 1 if k > 0 else nz - 1
        total = 0.0
        for j in range(ny):
            jm = j - 1 if j > 0 else ny - 1
            for i in range(nx):
                im = i - 1 if i > 0 else nx - 1
                s = (
                    w[0, km, j, i]
                    - w[0, k, j, i]
                    + w[1, k, jm, i]
                    - w[1, k, j, i]
                    + w[2, k, j, im]
                    - w[2, k, j, i]
                )
                total += s * s
                if out.size > 0:
                    out[k, j, i] = s
        norm2[k] = total



def _before_split_update(x, x_old, y, w, threshold, dv=None):  # type: ignore[no-untyped-def]
    sums = np.zeros((x.shape[0], 7))
    adapt = dv is not None
    dv_arr = dv if dv is not None else np.empty((3, 1, 1, 1), dtype=y.dtype)
    run_chunks(_before_update, x.shape[0], x, x_old, y, w, dv_arr, x.dtype.type(threshold),
               False, adapt, sums)  # fmt: skip
    return dict(zip(("step2", "size2", "phi_dx", "dx2", "phi_v", "gap2", "y_gap"),
                    sums.sum(axis=0).tolist(), strict=True))  # fmt: skip


def _before_adjoint(w: np.ndarray, out: np.ndarray) -> np.ndarray:
    run_chunks(_before_adjoint_kernel, w.shape[1], w, out, np.zeros(w.shape[1]))
    return out


def _before_adjoint_norm2(w: np.ndarray) -> float:
    norm2 = np.zeros(w.shape[1])
    run_chunks(_before_adjoint_kernel, w.shape[1], w, np.empty((0, 0, 0), w.dtype), norm2)
    return float(norm2.sum())


def _before_fstep(problem: SuperResolutionProblem, cache: dict, dtw: np.ndarray, beta: float):
    """The f-step then: rhs = beta F(D^T w) + F(mu H^T U^T g), five numpy passes of the
    Woodbury solve, the residual from a second fold, ``irfftn``."""
    s = problem._fourier(MU, beta)
    if "rhs_data" not in cache:
        cache["rhs_data"] = s.data_rhs(problem.g)
        cache["g_spec"] = s.lr_spectrum(problem.g)
    rhs = s.forward(dtw)
    rhs *= beta
    rhs += cache["rhs_data"]
    spec = s.solve_spectrum(rhs, overwrite=True)
    del rhs
    res = s.blurred_decimated(spec)
    res -= cache["g_spec"]
    r2 = s.lr_norm2(res)
    return s.inverse(spec), r2  # irfftn


def solve_before(problem: SuperResolutionProblem, x0: np.ndarray, callback: Callable) -> int:
    """The fused ADMM loop then (adapt 50 iterations, doubling rule); returns iterations."""
    beta = BETA
    x = np.ascontiguousarray(x0, dtype=np.float32)
    w = problem.gradient(x)
    y = np.zeros_like(w)
    dv = np.empty_like(w)
    dtw = np.empty_like(x)
    cache: dict = {}
    for it in range(1, 301):
        x_new, r2 = _before_fstep(problem, cache, _before_adjoint(w, dtw), beta)
        adapting = it <= 50
        sums = _before_split_update(x_new, x, y, w, 1.0 / beta, dv=dv if adapting else None)
        x = x_new
        change = math.sqrt(sums["step2"]) / math.sqrt(sums["size2"])
        objective = 0.5 * MU * r2 + sums["phi_dx"]
        callback(it, x, {"objective": objective, "relative_change": change, "beta": beta})
        if change <= TOL:
            return it
        if adapting:
            gap = math.sqrt(sums["gap2"])
            dual = beta * math.sqrt(_before_adjoint_norm2(dv))
            factor = 2.0 if gap > 10.0 * dual else 0.5 if dual > 10.0 * gap else 1.0
            if factor != 1.0:
                beta *= factor
                w += y * np.float32(1.0 - 1.0 / factor)
                y /= np.float32(factor)
    return 300


# --- cases ---------------------------------------------------------------------------------
class Case:
    """A truth ``f``, its scan ``g``, the kernel and offset: the normalised, padded problem."""

    def __init__(self, name: str, f: np.ndarray, g: np.ndarray, h: np.ndarray, offset: float):
        self.name, self.f, self.g, self.h, self.offset = name, f, g, h, offset
        probe = self.problem()
        self.padded = probe.shape
        self.fft_hr = np.random.default_rng(0).standard_normal(f.shape).astype(np.float32)
        self.fft_pad = np.random.default_rng(0).standard_normal(probe.shape).astype(np.float32)

    def problem(self, dtype: Any = np.float32) -> SuperResolutionProblem:
        p = SuperResolutionProblem.from_scan(self.g, self.h, offset=self.offset, regularizer=TV())
        if np.dtype(dtype) == p.dtype:
            return p
        q = SuperResolutionProblem(p.g, p.kernel, p.p, TV(), dtype=dtype)
        q.scale, q.padding, q.crop = p.scale, p.padding, p.crop
        return q

    def psnr(self, problem: SuperResolutionProblem, x: np.ndarray) -> float:
        f = self.f.astype(np.float64)
        e = problem.estimate(x).astype(np.float64)
        return float(-10 * np.log10(np.mean((f - e) ** 2) / (f.max() - f.min()) ** 2))


def paper_case(size: int, seed: int, noise: float) -> Case:
    pair = simulate_pair(2 * size, seed, noise=noise)
    return Case(f"paper {2 * size}^3", pair.hr, pair.lr, pair.kernel, pair.offset)


def real_case(path: Path, noise: float) -> Case | None:
    """The P7 mask (cropped to even sizes) with a partial-volume edge (Gaussian, 0.6
    voxel), grey levels 1 (bone) and 0.15, the phantom's kernel and model."""
    try:
        import nibabel
    except ImportError:
        return None
    if not path.is_file():
        return None
    import scipy.ndimage

    mask = np.asarray(nibabel.load(str(path)).dataobj) > 0.5
    mask = mask[tuple(slice(0, n - n % 2) for n in mask.shape)]
    occupancy = scipy.ndimage.gaussian_filter(mask.astype(np.float32), 0.6)
    h = gaussian_kernel(DEFAULT_SIGMA, 9, DEFAULT_SHIFT)
    f, g = simulate_acquisition(micro_ct(occupancy), h, noise=noise, p=2, margin=6, seed=0)
    return Case(f"real ({path.stem}) {'x'.join(map(str, f.shape))}", f, g, h, 0.0)


# --- the timed runs ------------------------------------------------------------------------
class Run:
    """One solve, timed: an rfftn of the HR size and one of the padded grid after every
    iteration, left out of the clock; the first iteration at or below ``target``."""

    def __init__(self, case: Case, target: float | None = None):
        self.case, self.target = case, target
        self.stamps: list[tuple[float, float]] = []  # (start of the pause, its end)
        self.fft: list[float] = []
        self.fft_pad: list[float] = []
        self.objective: list[float] = []
        self.hit: tuple[int, float] | None = None
        self.x: np.ndarray | None = None
        self.beta = math.nan

    def callback(self, it: int, x: np.ndarray, record: dict[str, float]) -> None:
        pause = time.perf_counter()
        self.objective.append(record["objective"])
        self.x, self.beta = x, record["beta"]
        if self.hit is None and self.target is not None and record["objective"] <= self.target:
            self.hit = (it, pause - self.t0 - self.paused())
        t = time.perf_counter()
        scipy.fft.rfftn(self.case.fft_hr, workers=-1)
        self.fft.append(time.perf_counter() - t)
        t = time.perf_counter()
        scipy.fft.rfftn(self.case.fft_pad, workers=-1)
        self.fft_pad.append(time.perf_counter() - t)
        self.stamps.append((pause, time.perf_counter()))

    def paused(self) -> float:
        return sum(b - a for a, b in self.stamps)

    def run(self, solve: Callable[[SuperResolutionProblem, np.ndarray, Callable], Any]) -> Run:
        problem = self.case.problem()
        x0 = problem.initial_estimate()
        self.t0 = time.perf_counter()
        solve(problem, x0, self.callback)
        self.total = time.perf_counter() - self.t0 - self.paused()
        s = self.stamps
        self.per_iter = float(np.median([s[k + 1][0] - s[k][1] for k in range(len(s) - 1)]))
        self.iterations = len(self.objective)
        self.final = self.objective[-1]
        assert self.x is not None
        self.psnr = self.case.psnr(problem, self.x)
        return self


def _after(**params: Any) -> Callable:
    def solve(problem: SuperResolutionProblem, x0: np.ndarray, callback: Callable) -> Any:
        return ADMM(mu=MU, beta=BETA, tol=TOL, **params).solve(problem, x0, callback)

    return solve


def _med(values: list[float]) -> float:
    return float(np.median(values))


def compare(case: Case, repeat: int) -> tuple[float, float, float, float]:
    """Before and after, interleaved; prints the table; returns (J*, t_before, t_after to
    J*, final beta after)."""
    print(f"\n== {case.name} (padded grid {'x'.join(map(str, case.padded))}) ==", flush=True)
    before: list[Run] = []
    after: list[Run] = []
    for _ in range(repeat):
        before.append(Run(case).run(solve_before))
        target = before[0].final
        after.append(Run(case, target).run(_after()))
    target = before[0].final
    fft = _med([t for r in before + after for t in r.fft])
    fft_pad = _med([t for r in before + after for t in r.fft_pad])
    print(f"one float32 rfftn: {fft * 1e3:.1f} ms at the HR size {case.f.shape}, "
          f"{fft_pad * 1e3:.1f} ms at the padded grid (medians over all iterations)")  # fmt: skip
    print(f"{'':8s} {'ms/it':>7s} {'x rfftn':>8s} {'x pad':>6s} {'its':>4s} {'time s':>7s} "
          f"{'its->J*':>8s} {'s->J*':>6s} {'final J':>12s} {'PSNR dB':>8s} {'beta':>7s}")
    rows = {}
    for label, runs in (("before", before), ("after", after)):
        per = _med([r.per_iter for r in runs])
        its = _med([r.iterations for r in runs])
        total = _med([r.total for r in runs])
        if label == "before":
            hit_it, hit_t = its, total
        else:
            hits = [r.hit for r in runs if r.hit is not None]
            hit_it = _med([h[0] for h in hits]) if hits else math.nan
            hit_t = _med([h[1] for h in hits]) if hits else math.nan
        rows[label] = (per, total, hit_t)
        print(f"{label:8s} {per * 1e3:7.1f} {per / fft:8.2f} {per / fft_pad:6.2f} {its:4.0f} "
              f"{total:7.2f} {hit_it:8.0f} {hit_t:6.2f} {_med([r.final for r in runs]):12.6g} "
              f"{_med([r.psnr for r in runs]):8.2f} {runs[0].beta:7.3g}")  # fmt: skip
    (pb, tb, _), (pa, ta, ha) = rows["before"], rows["after"]
    print(f"after / before: {pa / pb:.2f} x the time per iteration, {ha / tb:.2f} x the "
          f"time to J* = {target:.6g}, {ta / tb:.2f} x the time to the stopping rule")  # fmt: skip
    return target, tb, ha, after[0].beta


def breakdown(case: Case, reps: int = 7) -> None:
    """What one iteration costs, step by step, before and after (medians of ``reps``, each
    step followed by an rfftn of the HR size, in units of its median)."""
    from boneframe.solvers import admm_kernels as kern

    problem = case.problem()
    x = problem.initial_estimate()
    s = problem._fourier(MU, 0.2)
    g_spec = s.lr_spectrum(problem.g)
    rhs_data = s.data_rhs(problem.g)
    w = problem.gradient(x)
    y = 0.01 * w
    dv, dtw, dtv = np.empty_like(w), kern.adjoint(w), kern.adjoint(w)
    times: dict[str, list[float]] = {}

    def step(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        times.setdefault(name, []).append(time.perf_counter() - t)
        t = time.perf_counter()
        scipy.fft.rfftn(case.fft_hr, workers=-1)
        times.setdefault("rfftn", []).append(time.perf_counter() - t)
        return out

    def rhs_step(spec: np.ndarray) -> None:
        spec *= 0.2
        spec += rhs_data

    def residual(spec: np.ndarray) -> float:
        res = s.blurred_decimated(spec)
        res -= g_spec
        return s.lr_norm2(res)

    for _ in range(reps):
        # before
        step("before: D^T w", _before_adjoint, w, dtw)
        spec = step("before: forward rfftn", s.forward, dtw)
        step("before: rhs (x beta, + data)", rhs_step, spec)
        spec = step("before: Woodbury solve (numpy)", s.solve_spectrum, spec, True)
        step("before: residual (fold, Parseval)", residual, spec)
        x1 = step("before: inverse irfftn", s.inverse, spec)
        step("before: v/y pass", _before_split_update, x1, x, y.copy(), w.copy(), 5.0)
        step("before: v/y pass (adapting)", _before_split_update, x1, x, y.copy(), w.copy(), 5.0,
             dv)  # fmt: skip
        step("before: ||D^T dv|| (adapting)", _before_adjoint_norm2, dv)
        # after
        spec = step("after: forward rfftn", s.forward, dtw)
        step("after: spectral pass (+ residual)", s.solve_split_spectrum, spec, g_spec, 0.2)
        x2 = step("after: inverse (in place)", s.inverse, spec, overwrite=True)
        step("after: fused pass", kern.split_update, x2, x, y.copy(), dtw, 5.0)
        step("after: fused pass (adapting)", kern.split_update, x2, x, y.copy(), dtw, 5.0, dtv=dtv)
    unit = _med(times.pop("rfftn"))
    print(f"\n-- one iteration, step by step, {case.name} (rfftn {unit * 1e3:.1f} ms) --")
    med = {name: _med(values) for name, values in times.items()}
    for name, t in med.items():
        print(f"{name:40s} {t * 1e3:7.1f} ms {t / unit:6.2f} x rfftn")
    for label in ("before", "after"):
        plain = sum(t for n, t in med.items() if n.startswith(label) and "adapting" not in n)
        pass_ = med["before: v/y pass" if label == "before" else "after: fused pass"]
        extra = sum(t for n, t in med.items() if n.startswith(label) and "adapting" in n)
        for kind, t in (("", plain), (", adapting", plain - pass_ + extra)):
            print(f"{label + ': sum' + kind:40s} {t * 1e3:7.1f} ms {t / unit:6.2f} x rfftn")


def precision(case: Case, iterations: int) -> None:
    """float32 against float64 iterates (after, same iterations), and after with the doubling
    rule against before (float32 both: the kernels changed, not the iterates)."""
    print(f"\n-- precision, {case.name}, {iterations} iterations --", flush=True)
    xs, js = {}, {}
    for dtype in (np.float32, np.float64):
        problem = case.problem(dtype)
        result = ADMM(mu=MU, beta=BETA, tol=0.0, max_iter=iterations).solve(
            problem, problem.initial_estimate()
        )
        xs[dtype], js[dtype] = result.x.astype(np.float64), result.history[-1]["objective"]
        psnr = case.psnr(problem, result.x)
        print(f"after, {np.dtype(dtype).name}: objective {js[dtype]:.9g}, PSNR {psnr:.4f} dB")
    a, b = xs[np.float32], xs[np.float64]
    dx = np.linalg.norm(a - b) / np.linalg.norm(b)
    dj = abs(js[np.float32] - js[np.float64]) / js[np.float64]
    print(f"float32 vs float64: ||x32 - x64|| / ||x64|| = {dx:.2e}, objective {dj:.2e} apart")
    runs = {}
    for label, solve in (("before", solve_before), ("after, doubling", _after(balance="double"))):
        runs[label] = Run(case).run(solve)
    rb, ra = runs["before"], runs["after, doubling"]
    assert rb.x is not None and ra.x is not None
    xb = rb.x.astype(np.float64)
    rel = np.linalg.norm(ra.x - xb) / np.linalg.norm(xb)
    print(f"after with the doubling rule vs before (float32): {ra.iterations} vs {rb.iterations}"
          f" iterations, final iterates {rel:.2e} apart, objectives {ra.final:.9g} vs "
          f"{rb.final:.9g}")  # fmt: skip


def fused_vs_numpy(case: Case, iterations: int) -> None:
    per = {}
    for fused in (False, True):
        problem = case.problem()
        stamps: list[float] = []
        ADMM(max_iter=iterations + 1, tol=0.0, fused=fused).solve(
            problem, problem.initial_estimate(), lambda *_, s=stamps: s.append(time.perf_counter())
        )
        per[fused] = float(np.median(np.diff(stamps)))
    print(f"\nADMM iteration, {case.name}, {iterations} iterations each: numpy "
          f"{per[False] * 1e3:.0f} ms, fused {per[True] * 1e3:.0f} ms -> "
          f"{per[False] / per[True]:.2f} x")  # fmt: skip


def pyproximal_run(case: Case, target: float, t_before: float, t_after: float, beta: float,
                   budget: float, lsqr_iter: int) -> None:  # fmt: skip
    import pylops
    import pyproximal

    problem = case.problem()
    shape, g_n = problem.shape, problem.g

    def objective(f: np.ndarray) -> float:
        return 0.5 * MU * problem.residual_norm2(f) + TV().penalty(problem.gradient(f))

    lam = scipy.fft.rfftn(circular_kernel(problem.kernel, shape)).astype(np.complex64)
    n_hr = int(np.prod(shape))
    n_lr = int(np.prod(g_n.shape))
    root_mu = np.float32(np.sqrt(MU))

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
    clock: dict[str, Any] = {"paused": 0.0, "iters": 0, "best": np.inf, "hit": None}

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
        if elapsed > budget * t_before:
            raise _Stop

    clock["start"] = time.perf_counter()
    try:
        pyproximal.optimization.primal.ADMML2(
            pyproximal.L21(ndim=3), DataOp(), root_mu * g_n.ravel(), GradOp(), x0=x0,
            tau=1.0 / beta, niter=100000, callback=callback, iter_lim=lsqr_iter,
        )  # fmt: skip
    except _Stop:
        pass
    elapsed = time.perf_counter() - clock["start"] - clock["paused"]
    head = f"\npyproximal ADMML2, {case.name} (LSQR {lsqr_iter}/step, beta {beta:.3g}):"
    if clock["hit"] is not None:
        t = clock["hit"]
        print(f"{head} reached J* after {clock['iters']} iterations, {t:.1f} s -> "
              f"{t / t_before:.1f} x before's time, {t / t_after:.1f} x after's")  # fmt: skip
    else:
        print(f"{head} J* not reached in {elapsed:.0f} s ({clock['iters']} iterations, best "
              f"{clock['best']:.6g}) -> more than {elapsed / t_before:.1f} x before's time, "
              f"{elapsed / t_after:.1f} x after's")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="LR size per axis (HR: twice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--real", type=Path, default=REAL_MASK, help="a binary mask (NIfTI)")
    parser.add_argument("--repeat", type=int, default=3, help="before/after runs, interleaved")
    parser.add_argument(
        "--budget", type=float, default=10.5,
        help="pyproximal time cap, in multiples of before's time to convergence",
    )  # fmt: skip
    parser.add_argument("--lsqr-iter", type=int, default=10, help="LSQR iterations per x-step")
    parser.add_argument("--fused-iter", type=int, default=6, help="iterations, fused vs numpy")
    parser.add_argument("--no-pyproximal", action="store_true", help="skip the pyproximal run")
    parser.add_argument("--no-precision", action="store_true", help="skip the precision checks")
    args = parser.parse_args()

    cases = [paper_case(args.size, args.seed, args.noise)]
    real = real_case(args.real, args.noise)
    if real is None:
        print(f"(no real-structure case: {args.real} or nibabel missing)")
    else:
        cases.append(real)
    # compile the kernels (before's and after's) outside the clocks
    warm = paper_case(8, 0, 0.01)
    Run(warm).run(solve_before)
    Run(warm).run(_after())
    paper = cases[0]
    breakdown(paper)
    results = {case.name: compare(case, args.repeat) for case in cases}
    if not args.no_precision:
        precision(paper, 40)
    fused_vs_numpy(paper, args.fused_iter)
    if not args.no_pyproximal:
        target, t_before, t_after, beta = results[paper.name]
        pyproximal_run(paper, target, t_before, t_after, beta, args.budget, args.lsqr_iter)


if __name__ == "__main__":
    main()
