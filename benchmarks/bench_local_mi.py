"""local-mi against the core mi: issue 22, "local-mi within 5 x global mi".

Prints, in one run:

* one value + gradient of this plugin's ``LocalMutualInformation()``, of the
  previous local-mi (kept below verbatim as the baseline ``local-mi-old``: literal
  Gaussian Parzen sums cut at 1e-18, one window every sigma) and of the core
  ``MutualInformation()``, each with its defaults, on the same pair: ``u`` the
  forward model of ``simulate_pair(n)`` with the true kernel on the valid region,
  ``g`` the LR scan there (the fixture ``phantom`` of ``tests/test_mi.py``), for
  n = 48 ... 256 HR. Each time is the median over rounds of the best of three calls,
  the similarities taking turns (wall clock; the ratio of the process's CPU times
  beside it), and the ratios new / mi and old / new;
* whole kernel estimations ``estimate_kernel(hr, lr, similarity=...)`` (gradient
  descent, defaults) at 48³ and 96³ HR on the shaded pair of the plugin's
  gain-field test: time, iterations, evaluations of the similarity, kernel error;
* with ``--errors [MAX_HR]``: the kernel-error rows of the plugin README up to that
  HR size (default 64: 48³ seeds 0 / 1 / 2 at 80 iterations and seed 0 at <= 500,
  64³ seeds 0 / 1 at <= 300, the sinusoidal gain and no gain; 128: all rows), mi
  and local-mi.

Run: ``python benchmarks/bench_local_mi.py [--sizes 48 96 128 192 256]
[--kernel-sizes 48 96] [--repeat 5] [--threads N] [--no-old-kernel]
[--errors [MAX_HR]]``; ``--threads 1`` runs everything (mi's BLAS too) on one
thread, the fair comparison of work done on a shared machine;
only the error rows: ``--sizes --kernel-sizes --errors 128``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and "--threads" in sys.argv:
    # before numpy is imported: BLAS reads its thread count once
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import numba
import numpy as np
from _timing import machine
from boneframe_localmi import LocalMutualInformation
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import boneframe.parallel
import boneframe.registry
from boneframe.additive import AdditiveSimilarity
from boneframe.errors import InputError
from boneframe.interfaces import Similarity
from boneframe.kernel import estimate_kernel
from boneframe.operators import forward_model, valid_lr_slices
from boneframe.parzen import (
    GreyStatistics,
    bin_coordinates,
    chain_moments,
    information,
    moments,
)
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.similarity.mi import MutualInformation

#: Registered name of the baseline below.
OLD = "local-mi-old"

#: The kernel of the plugin's gain-field test (tests/test_kernel_gain_field.py).
TRUE = gaussian_kernel((1.6, 1.3, 1.1), 9, (0.3, -0.2, 0.1), gain=0.9)


# =============================================================================
# Baseline: the previous boneframe_localmi.local_mi, verbatim but for the names
# and the class docstring (git history has the original).
# =============================================================================

#: Parzen weights below this are skipped (relative to the peak 1): far below
#: float64 rounding of the sums they would enter.
PARZEN_CUT = 1e-18


class OldParams(BaseModel):
    """Parameters of :class:`LocalMutualInformation`."""

    model_config = ConfigDict(extra="forbid")
    bins: int = Field(
        32,
        ge=4,
        le=256,
        description=(
            "Number of intensity bins B for each of u and g, as in the core 'mi' and "
            "shared by all windows: g's GLOBAL range [min, max] is mapped onto bin "
            "centres 0 ... B-1, and u is matched to g's global mean and standard "
            "deviation and binned over the same range (clipped to the grid ends)."
        ),
    )
    parzen_width: float = Field(
        1.0,
        gt=0,
        le=64,
        description=(
            "Width beta of the Gaussian Parzen window exp(-t^2/beta^2), in bins "
            "(its standard deviation is beta/sqrt(2)); as the core 'mi'."
        ),
    )
    window: float | None = Field(
        4.0,
        gt=0,
        description=(
            "Standard deviation of the Gaussian spatial window, in voxels of u "
            "(low-resolution voxels in kernel estimation); null or .inf: one window "
            "covering the whole volume (then local-mi equals the global mi)."
        ),
    )
    spacing: float | None = Field(
        None,
        gt=0,
        description=(
            "Distance between window centres, in voxels (centres on a regular grid "
            "spanning each axis, ends included); null: equal to window."
        ),
    )
    truncate: float = Field(
        3.0,
        ge=1.0,
        le=10.0,
        description="The spatial window is cut to zero beyond truncate * window voxels.",
    )

    @field_validator("window")
    @classmethod
    def _infinite_is_global(cls, v: float | None) -> float | None:
        if v is None or math.isinf(v):
            return None
        if not math.isfinite(v):
            raise ValueError("window must be a positive number, null or inf")
        return v

    @field_validator("spacing")
    @classmethod
    def _finite_spacing(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("spacing must be a finite positive number or null")
        return v

    @model_validator(mode="after")
    def _spacing_needs_window(self) -> OldParams:
        if self.spacing is not None and self.window is None:
            raise ValueError("spacing is meaningless for a whole-volume window (window: null)")
        return self


class OldLocalMutualInformation(Similarity):
    """The previous ``local-mi`` (literal Gaussian Parzen sums, windows every sigma), verbatim."""

    name: ClassVar[str] = OLD
    description: ClassVar[str] = "-local mutual information in Gaussian windows (Hermosillo 2002)"
    Params: ClassVar[type[BaseModel]] = OldParams
    params: OldParams
    quadratic: ClassVar[bool] = False
    scale_sensitive: ClassVar[bool] = False
    default_alpha: ClassVar[float | None] = 1.0

    def __call__(self, u: np.ndarray, g: np.ndarray) -> float:
        return self._evaluate(u, g, gradient=False)[0]

    def grad(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self._evaluate(u, g, gradient=True)[1])

    def value_and_grad(self, u: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = self._evaluate(u, g, gradient=True)
        return value, cast(np.ndarray, grad)

    def window_weights(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """The spatial window matrices, one ``(m_d, n_d)`` array per axis.

        Row ``k`` of axis ``d`` is :math:`\\omega(x_d - y_{k,d})` for every voxel
        index ``x_d``; with ``window = None`` a single row of ones.
        """
        prm = self.params
        return [window_matrix(n, prm.window, prm.spacing, prm.truncate) for n in shape]

    def local_values(self, u: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-window MI and weights :math:`\\pi_k`, shaped like the centre grid.

        Returns
        -------
        mi, weight : ndarray
            ``mi[k0, k1, k2]`` is :math:`\\mathrm{MI}_k` and ``weight`` its share
            :math:`\\pi_k` (``-(mi * weight).sum()`` is the loss).
        """
        u3, g3 = _check(u, g)
        a, b, _, _, _ = _placement(u3, g3, self.params.bins)
        windows = self.window_weights(u3.shape)
        q = _joint_histograms(a, b, windows, self.params.bins, self.params.parzen_width)
        mi, _, _ = information(q)
        weight = _window_shares(windows)
        return mi, weight

    def _evaluate(
        self, u: np.ndarray, g: np.ndarray, gradient: bool
    ) -> tuple[float, np.ndarray | None]:
        shape = np.shape(u)
        u3, g3 = _check(u, g)
        nb, beta = self.params.bins, self.params.parzen_width
        a, b, slope, z_u, inside = _placement(u3, g3, nb)
        windows = self.window_weights(u3.shape)
        q = _joint_histograms(a, b, windows, nb, beta)
        mi, centred, z = information(q)
        share = _window_shares(windows)
        lmi = float(np.sum(share * mi))
        if not gradient:
            return -lmi, None
        tables = centred * (share / z)[..., None, None]
        dlmi = _table_gradient(a, b, windows, tables, nb, beta)
        gamma = -dlmi.ravel()  # D = -LMI
        gamma[~inside] = 0.0
        total, along_z = float(gamma.sum()), float(np.dot(gamma, z_u))
        out = chain_moments(gamma, z_u, slope, total, along_z, gamma.size)
        return -lmi, out.reshape(shape)


# -- helpers specific to local windows (the Parzen/MI pieces are in boneframe.parzen)


# -- helpers


def _check(u: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the pair; return 3D float64 views (lower-dimensional input padded)."""
    u = np.asarray(u)
    g = np.asarray(g)
    if u.shape != g.shape:
        raise InputError(f"u and g must have the same shape, got {u.shape} and {g.shape}")
    if u.ndim > 3:
        raise InputError(f"local-mi works on volumes of at most 3 axes, got shape {u.shape}")
    if u.size < 2:
        raise InputError("local mutual information needs at least two voxels")
    shape3 = (1,) * (3 - u.ndim) + u.shape
    return (
        np.asarray(u, dtype=np.float64).reshape(shape3),
        np.asarray(g, dtype=np.float64).reshape(shape3),
    )


def window_matrix(
    n: int, sigma: float | None, spacing: float | None, truncate: float
) -> np.ndarray:
    """Gaussian window weights along one axis of ``n`` voxels, one row per centre.

    Parameters
    ----------
    n : int
        Number of voxels along the axis.
    sigma : float or None
        Window standard deviation in voxels; ``None`` gives one row of ones.
    spacing : float or None
        Largest distance between centres (default ``sigma``); centres are evenly
        spread over ``[0, n - 1]``, both ends included.
    truncate : float
        Weights beyond ``truncate * sigma`` are zero.

    Returns
    -------
    ndarray
        ``(m, n)`` float64 weights (peak 1 at each centre).
    """
    if sigma is None:
        return np.ones((1, n))
    step = sigma if spacing is None else spacing
    m = int(math.ceil((n - 1) / step)) + 1 if n > 1 else 1
    centres = np.linspace(0.0, n - 1.0, m)
    dist = np.arange(n, dtype=np.float64)[None, :] - centres[:, None]
    w = np.exp(-0.5 * (dist / sigma) ** 2)
    w[np.abs(dist) > truncate * sigma] = 0.0
    return w


def _window_shares(windows: list[np.ndarray]) -> np.ndarray:
    """:math:`\\pi_k = M_k / \\sum M`, with the separable masses :math:`M_k`."""
    m0, m1, m2 = (w.sum(axis=1) for w in windows)
    mass = m0[:, None, None] * m1[None, :, None] * m2[None, None, :]
    return mass / mass.sum()


def _placement(
    u: np.ndarray, g: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Global bin coordinates of ``u`` and ``g``, placed as in the core ``mi``.

    Parameters
    ----------
    u, g : ndarray
        The pair, 3D float64 (see :func:`_check`).
    bins : int
        Number of bins ``B``.

    Returns
    -------
    a, b : ndarray
        Bin coordinates in ``[0, B - 1]``, shaped as ``u``: ``u`` matched to the
        mean and standard deviation of ``g``, both binned over ``g``'s range.
    slope : float
        ``da/du`` at fixed moments of ``u``.
    z : ndarray
        The standardised ``(u - mean u) / std u``, flat.
    inside : ndarray
        Flat mask of the voxels of ``u`` not clipped to the grid ends.
    """
    mean, std = moments(u, "u")
    grey = GreyStatistics.of(g)
    a, slope, z, inside = grey.place(u, bins, mean, std)
    b = bin_coordinates(g, bins, grey.lo, grey.hi)[0]
    return a.reshape(u.shape), b.reshape(g.shape), slope, z, inside


def parzen_radius(beta: float) -> int:
    """Bins on each side of a sample beyond which its Parzen weight is below ``PARZEN_CUT``."""
    return int(math.ceil(beta * math.sqrt(-math.log(PARZEN_CUT))))


def _band(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last row with a non-zero weight, for every column of ``w``."""
    nz = w != 0
    first = np.argmax(nz, axis=0).astype(np.int64)
    last = (w.shape[0] - np.argmax(nz[::-1], axis=0)).astype(np.int64)
    return first, last


@numba.njit(cache=True, nogil=True)
def _axpy(out, alpha, x):  # pragma: no cover
    """``out += alpha * x`` on flat contiguous arrays (numba, no temporary)."""
    for n in range(out.size):
        out[n] += alpha * x[n]


@numba.njit(cache=True, nogil=True)
def _sample_weights(value, bins, inv, radius, weights, derivative):  # pragma: no cover
    """Parzen weights ``phi(value - i)`` (or ``phi'``) for bins ``i0 ... i0 + count - 1``.

    Returns ``(i0, count)``; the weights are written to ``weights[:count]``.
    """
    i0 = max(int(value) - radius, 0)
    count = min(int(value) + radius + 2, bins) - i0
    for i in range(count):
        t = (value - (i0 + i)) * inv
        e = math.exp(-t * t)
        weights[i] = -2.0 * inv * t * e if derivative else e
    return i0, count


@numba.njit(cache=True, nogil=True)
def _histograms_kernel(a, b, w0, w1, w2, bands, bins, beta, radius, q):  # pragma: no cover
    """``q[k0, k1, k2, i, j] += sum_x w0[k0, x0] w1[k1, x1] w2[k2, x2] phi(a_x - i) phi(b_x - j)``.

    ``bands[d]`` holds, per index along axis ``d``, the first and one-past-last
    window with a non-zero weight. Separable: a row's histograms over axis 2, then
    added into the plane's over axis 1, then into ``q`` over axis 0.
    """
    n0, n1, n2 = a.shape
    m0, m1, m2 = w0.shape[0], w1.shape[0], w2.shape[0]
    cells = bins * bins
    pa = np.empty(2 * radius + 2)
    pb = np.empty(2 * radius + 2)
    inv = 1.0 / beta
    row = np.zeros((m2, bins, bins))
    plane = np.zeros((m1, m2 * cells))
    row_flat = row.reshape(m2 * cells)
    q_flat = q.reshape(m0, m1 * m2 * cells)
    plane_flat = plane.reshape(m1 * m2 * cells)
    b0f, b0l, b1f, b1l, b2f, b2l = bands
    for x0 in range(n0):
        plane[:] = 0.0
        for x1 in range(n1):
            row[:] = 0.0
            for x2 in range(n2):
                ia, na = _sample_weights(a[x0, x1, x2], bins, inv, radius, pa, False)
                jb, nb = _sample_weights(b[x0, x1, x2], bins, inv, radius, pb, False)
                for k in range(b2f[x2], b2l[x2]):
                    wk = w2[k, x2]
                    for i in range(na):
                        c = wk * pa[i]
                        dest = row[k, ia + i]
                        for j in range(nb):
                            dest[jb + j] += c * pb[j]
            for k in range(b1f[x1], b1l[x1]):
                _axpy(plane[k], w1[k, x1], row_flat)
        for k in range(b0f[x0], b0l[x0]):
            _axpy(q_flat[k], w0[k, x0], plane_flat)


@numba.njit(cache=True, nogil=True)
def _gradient_kernel(a, b, w0, w1, w2, bands, bins, beta, radius, tables, out):  # pragma: no cover
    """``out[x] = sum_k w_k(x) sum_ij phi'(a_x - i) phi(b_x - j) tables[k, i, j]`` (separable)."""
    n0, n1, n2 = a.shape
    m0, m1, m2 = w0.shape[0], w1.shape[0], w2.shape[0]
    cells = bins * bins
    da = np.empty(2 * radius + 2)
    pb = np.empty(2 * radius + 2)
    inv = 1.0 / beta
    row = np.zeros((m2, bins, bins))
    plane = np.zeros((m1, m2 * cells))
    row_flat = row.reshape(m2 * cells)
    t_flat = tables.reshape(m0, m1 * m2 * cells)
    plane_flat = plane.reshape(m1 * m2 * cells)
    b0f, b0l, b1f, b1l, b2f, b2l = bands
    for x0 in range(n0):
        plane[:] = 0.0
        for k in range(b0f[x0], b0l[x0]):
            _axpy(plane_flat, w0[k, x0], t_flat[k])
        for x1 in range(n1):
            row[:] = 0.0
            for k in range(b1f[x1], b1l[x1]):
                _axpy(row_flat, w1[k, x1], plane[k])
            for x2 in range(n2):
                ia, na = _sample_weights(a[x0, x1, x2], bins, inv, radius, da, True)
                jb, nb = _sample_weights(b[x0, x1, x2], bins, inv, radius, pb, False)
                total = 0.0
                for k in range(b2f[x2], b2l[x2]):
                    acc = 0.0
                    for i in range(na):
                        src = row[k, ia + i]
                        s = 0.0
                        for j in range(nb):
                            s += src[jb + j] * pb[j]
                        acc += da[i] * s
                    total += w2[k, x2] * acc
                out[x0, x1, x2] = total


def _bands(windows: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(v for w in windows for v in _band(w))


def _joint_histograms(
    a: np.ndarray, b: np.ndarray, windows: list[np.ndarray], bins: int, beta: float
) -> np.ndarray:
    """``Q[k0, k1, k2, i, j]``: every window's Parzen joint histogram."""
    w0, w1, w2 = (np.ascontiguousarray(w) for w in windows)
    q = np.zeros((w0.shape[0], w1.shape[0], w2.shape[0], bins, bins))
    _histograms_kernel(
        np.ascontiguousarray(a), np.ascontiguousarray(b), w0, w1, w2, _bands(windows),
        bins, float(beta), parzen_radius(beta), q,
    )  # fmt: skip
    return q


def _table_gradient(
    a: np.ndarray,
    b: np.ndarray,
    windows: list[np.ndarray],
    tables: np.ndarray,
    bins: int,
    beta: float,
) -> np.ndarray:
    """:math:`\\partial\\,\\mathrm{LMI} / \\partial a_x = \\sum_{ij} \\varphi'(a_x - i)
    \\varphi(b_x - j) \\sum_k w_k(x) C^k_{ij}`, with ``tables[k0, k1, k2] = C^k``."""
    w0, w1, w2 = (np.ascontiguousarray(w) for w in windows)
    out = np.empty(a.shape)
    _gradient_kernel(
        np.ascontiguousarray(a), np.ascontiguousarray(b), w0, w1, w2, _bands(windows),
        bins, float(beta), parzen_radius(beta), np.ascontiguousarray(tables), out,
    )  # fmt: skip
    return out


# =============================================================================
# The benchmark
# =============================================================================


class _WithOld:
    """The installed registry plus the baseline, as ``OLD``."""

    def __init__(self, base: Any, extra: dict[str, type[Similarity]]):
        self.base, self.extra = base, extra

    def get(self, kind: str, name: str) -> Any:
        if kind == "similarity" and name in self.extra:
            return self.extra[name]
        return self.base.get(kind, name)

    def create(self, kind: str, name: str, params: Any = None, **overrides: Any) -> Any:
        return self.get(kind, name)(params, **overrides)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.base, attr)


def counted(cls: type[Similarity], counts: dict[str, int]) -> type[Similarity]:
    """``cls`` counting its evaluations: ``counts["value"]`` (value only) and
    ``counts["gradient"]`` (value and gradient)."""

    def tally(gradient: bool) -> None:
        counts["gradient" if gradient else "value"] += 1

    if issubclass(cls, AdditiveSimilarity):

        def evaluate(self: Any, blocks: Any, gradient: bool) -> Any:
            tally(gradient)
            return cls.evaluate(self, blocks, gradient)  # type: ignore[attr-defined]

        return type(cls.__name__, (cls,), {"evaluate": evaluate})

    def _evaluate(self: Any, u: np.ndarray, g: np.ndarray, gradient: bool) -> Any:
        tally(gradient)
        return cls._evaluate(self, u, g, gradient)  # type: ignore[attr-defined]

    return type(cls.__name__, (cls,), {"_evaluate": _evaluate})


def phantom(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``u`` (true kernel, valid region) and ``g`` (LR scan there), as tests/test_mi.py."""
    pair = simulate_pair(size=n, seed=0, noise=0.01)
    g = pair.lr[valid_lr_slices(pair.hr.shape, pair.kernel.shape, 2)].astype(np.float64)
    return forward_model(pair.hr, pair.kernel, 0.0, 2, "valid"), g


def interleaved(
    fns: dict[str, Callable[[], Any]], rounds: dict[str, int], best_of: int = 3
) -> dict[str, tuple[float, float]]:
    """Per function, the median over ``rounds`` of the best of ``best_of`` calls, wall
    and CPU seconds (all threads of the process); the functions take turns round by
    round, so that a shared machine's load weighs on all of them alike."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(max(rounds.values())):
        for k, fn in fns.items():
            if r >= rounds[k]:
                continue
            best_wall = best_cpu = math.inf
            for _ in range(best_of):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best_wall = min(best_wall, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            wall[k].append(best_wall)
            cpu[k].append(best_cpu)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def evaluations(sizes: list[int], repeat: int, old_max: int) -> None:
    print("\n== one value + gradient (defaults): median over rounds of the best of 3 calls ==")
    print(
        "| HR | LR (valid) | windows new / old | mi | local-mi | local-mi-old | new / mi "
        "| old / new | (CPU: new / mi) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        u, g = phantom(n)
        sims: dict[str, Similarity] = {"mi": MutualInformation(), "new": LocalMutualInformation()}
        if n <= old_max:
            sims["old"] = OldLocalMutualInformation()
        values = {k: s.value_and_grad(u, g) for k, s in sims.items()}  # compiles, warms up
        fns: dict[str, Callable[[], Any]] = {
            k: (lambda s=s, u=u, g=g: s.value_and_grad(u, g)) for k, s in sims.items()
        }
        reps = {k: repeat for k in fns}
        if "old" in fns and n > 96:
            reps["old"] = min(repeat, 3)
        t = interleaved(fns, reps, best_of=3 if n <= 192 else 2)
        new_w = LocalMutualInformation().window_weights(u.shape)
        old_w = OldLocalMutualInformation().window_weights(u.shape)
        windows = f"{math.prod(w.shape[0] for w in new_w)} / {math.prod(w.shape[0] for w in old_w)}"
        old = f"{t['old'][0]:.4f} s" if "old" in t else "-"
        ratio_old = f"{t['old'][0] / t['new'][0]:.1f}" if "old" in t else "-"
        print(
            f"| {n}³ | {u.shape[0]}³ | {windows} | {t['mi'][0]:.4f} s | {t['new'][0]:.4f} s "
            f"| {old} | **{t['new'][0] / t['mi'][0]:.1f}** | {ratio_old} "
            f"| {t['new'][1] / t['mi'][1]:.1f} |",
            flush=True,
        )
        if "old" in values:
            dv = abs(values["new"][0] - values["old"][0]) / abs(values["old"][0])
            print(f"|   | values: new {values['new'][0]:.6f}, old {values['old'][0]:.6f} "
                  f"(relative difference {dv:.1e}) | | | | | | | |")  # fmt: skip


def gain_pair(size: int, seed: int, gain: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """The shaded pair of tests/test_kernel_gain_field.py: the LR volume times
    ``1 + 0.3 x`` (``"linear"``) or ``1 + 0.3 sin(pi x)`` (``"sin"``) across x, x in
    [-1, 1], or not at all (``"none"``)."""
    pair = simulate_pair(size, seed, kernel=TRUE, offset=0.05, noise=0.01)
    x = np.linspace(-1.0, 1.0, pair.lr.shape[2])
    ramp = {"linear": 1.0 + 0.3 * x, "sin": 1.0 + 0.3 * np.sin(np.pi * x), "none": 1.0 + 0 * x}
    return pair.hr, (pair.lr.astype(np.float64) * ramp[gain]).astype(np.float32)


def kernel_error(estimate: np.ndarray) -> float:
    e, t = estimate / estimate.sum(), TRUE / TRUE.sum()
    return float(np.linalg.norm(e - t) / np.linalg.norm(t))


def estimation(
    size: int, seed: int, name: str, max_iter: int | None, gain: str = "linear"
) -> dict[str, Any]:
    counts = {"value": 0, "gradient": 0}
    base = boneframe.registry.get_registry()
    registry = base if isinstance(base, _WithOld) else _WithOld(base, {})
    cls = registry.get("similarity", name)
    registry.extra[name] = counted(cls, counts)
    original = boneframe.registry.get_registry
    boneframe.registry.get_registry = lambda: registry  # type: ignore[assignment]
    try:
        hr, lr = gain_pair(size, seed, gain)
        t0 = time.perf_counter()
        est = estimate_kernel(hr, lr, similarity=name, solver="gradient-descent", max_iter=max_iter)
        seconds = time.perf_counter() - t0
    finally:
        boneframe.registry.get_registry = original  # type: ignore[assignment]
        registry.extra[name] = cls
    return {"seconds": seconds, "iterations": est.iterations, "error": kernel_error(est.array),
            **counts}  # fmt: skip


def estimations(sizes: list[int], old: bool) -> None:
    print("\n== kernel estimation, shaded pair (gain 1 + 0.3 x), seed 0, defaults ==")
    print("| HR (valid LR) | similarity | time | iterations | evaluations (value+grad / value) "
          "| time per evaluation | kernel error | time / mi |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    names = ["mi", "local-mi"] + ([OLD] if old else [])
    for size in sizes:
        out = {name: estimation(size, 0, name, None) for name in names}
        for name, r in out.items():
            ev = r["gradient"] + r["value"]
            print(
                f"| {size}³ | {name} | {r['seconds']:.1f} s | {r['iterations']} "
                f"| {r['gradient']} / {r['value']} | {r['seconds'] / ev * 1000:.0f} ms "
                f"| {r['error']:.3f} | {r['seconds'] / out['mi']['seconds']:.1f} |",
                flush=True,
            )


#: The rows of the plugin README's table: HR size, seed, max_iter, gain field.
README_ROWS = [(48, 0, 80, "linear"), (48, 1, 80, "linear"), (48, 2, 80, "linear"),
               (48, 0, 500, "linear"), (64, 0, 300, "linear"), (64, 1, 300, "linear"),
               (96, 0, 300, "linear"), (128, 0, 300, "linear"), (64, 0, 300, "sin"),
               (48, 0, 150, "sin"), (48, 0, 200, "none")]  # fmt: skip


def errors(max_size: int) -> None:
    print("\n== kernel error, the README's rows (iterations run mi / local-mi) ==")
    print("| HR | gain | seed | max_iter | mi | local-mi | iterations | time mi / local-mi |")
    print("|---|---|---|---|---|---|---|---|")
    for size, seed, max_iter, gain in README_ROWS:
        if size > max_size:
            continue
        r = {name: estimation(size, seed, name, max_iter, gain) for name in ("mi", "local-mi")}
        print(
            f"| {size}³ | {gain} | {seed} | {max_iter} | {r['mi']['error']:.3f} "
            f"| {r['local-mi']['error']:.3f} "
            f"| {r['mi']['iterations']} / {r['local-mi']['iterations']} "
            f"| {r['mi']['seconds']:.1f} / {r['local-mi']['seconds']:.1f} s |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[48, 96, 128, 192, 256])
    parser.add_argument("--kernel-sizes", type=int, nargs="*", default=[48, 96])
    parser.add_argument("--repeat", type=int, default=5, help="rounds of best-of-3 timings")
    parser.add_argument("--old-max", type=int, default=256,
                        help="largest HR size at which to time the baseline")  # fmt: skip
    parser.add_argument("--no-old-kernel", action="store_true",
                        help="skip the baseline's kernel estimations (minutes at 96³)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for the compiled loops and BLAS (default: all)")  # fmt: skip
    parser.add_argument("--errors", type=int, nargs="?", const=64, default=0, metavar="MAX_HR",
                        help="the README kernel-error rows up to this HR size")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        boneframe.parallel.num_threads = lambda: args.threads  # type: ignore[assignment]
    boneframe.registry.get_registry = _patched_registry()  # type: ignore[assignment]
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    threads = boneframe.parallel.num_threads()
    print(f"machine: {machine()}, {threads} threads for the compiled loops (BLAS: {blas}), "
          f"numba {numba.__version__}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if args.sizes:
        evaluations(args.sizes, args.repeat, args.old_max)
    if args.kernel_sizes:
        estimations(args.kernel_sizes, not args.no_old_kernel)
    if args.errors:
        errors(args.errors)


def _patched_registry() -> Callable[[], _WithOld]:
    registry = _WithOld(boneframe.registry.get_registry(), {OLD: OldLocalMutualInformation})
    return lambda: registry


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
