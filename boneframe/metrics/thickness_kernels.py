r"""Compiled (numba) loops behind local thickness and mean intercept length.

Imported only by the functions that need them, since numba costs about 90 MiB.
The loops are plain serial ``nogil`` functions over a range of slices (or of
directions); :func:`run_chunks` runs them on a few Python threads at once.
That keeps the first compile short (numba's ``parallel=True`` and sorting
cost many seconds each to compile), and ``cache=True`` keeps the machine code
between runs. Everything here works on plain arrays in voxel units; the public
functions, checks and units live in :mod:`boneframe.metrics.thickness` and
:mod:`boneframe.metrics.anisotropy`.

Squared distances are whole numbers (sums of three squares) held exactly in
``float32`` up to :math:`2^{24}`, i.e. for distances below 4096 voxels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from boneframe.parallel import num_threads, run_chunks  # noqa: F401 (re-exported)

# The 26 neighbour offsets (dz, dy, dx): faces, then edges, then corners (the
# faces' balls are the likeliest to cover a voxel's ball, so they go first).
_OFFSETS = np.array([o for o in np.ndindex(3, 3, 3) if o != (1, 1, 1)], dtype=np.int64) - 1
_OFFSETS = _OFFSETS[np.argsort(np.abs(_OFFSETS).sum(axis=1), kind="stable")]
_NONZERO = np.abs(_OFFSETS).sum(axis=1).astype(np.int64)

#: Ball rows narrower than this half-width are painted outright, not skipped through.
_SHORT_ROW = 8


def _run(kernel: Callable[..., Any], n: int, threads: int | None, *args: Any) -> None:
    """``kernel(*args, 0, n)`` here when ``threads`` is 1, else :func:`run_chunks` (on
    :func:`num_threads` threads)."""
    if threads == 1:
        kernel(*args, 0, n)
    else:
        run_chunks(kernel, n, *args)


@njit(cache=True, nogil=True, inline="always")
def _isqrt(x: int) -> int:
    """``floor(sqrt(x))`` exactly, for a non-negative integer."""
    s = int(math.sqrt(x))
    while s * s > x:
        s -= 1
    while (s + 1) * (s + 1) <= x:
        s += 1
    return s


# -- distance ridge ---------------------------------------------------------------
@njit(cache=True, nogil=True)
def _occurring(d2: np.ndarray) -> np.ndarray:
    """Which squared distances ``0..max`` occur in ``d2`` (a boolean table)."""
    flat = d2.ravel()
    top = 0
    for v in flat:
        top = max(top, int(v + 0.5))
    seen = np.zeros(top + 1, dtype=np.bool_)
    for v in flat:
        seen[int(v + 0.5)] = True
    return seen


@njit(cache=True, nogil=True)
def _cover_row(q: int, oz: int, oy: int, a: int) -> int:
    rest = q - a * a
    best = 0
    for b in range(_isqrt(rest) + 1):
        c = _isqrt(rest - b * b) + 1
        best = max(best, (a + oz) * (a + oz) + (b + oy) * (b + oy) + c * c)
    return best


@njit(cache=True, nogil=True)
def _cover_one(q: int, oz: int, oy: int) -> int:
    r"""One entry of :func:`cover_template`, for the offset :math:`(o_z, o_y, 1)`.

    The maximum over :math:`a, b \ge 0` of
    :math:`(a + o_z)^2 + (b + o_y)^2 + (\lfloor\sqrt{q - a^2 - b^2}\rfloor + 1)^2`.
    Row :math:`a`'s values are at most its continuous maximum
    :math:`B(a) = (a + o_z)^2 + (\sqrt{q - a^2} + \sqrt{o_y^2 + 1})^2`, which
    rises then falls with :math:`a`. Rows are visited outwards from the peak
    of :math:`B`, on each side until :math:`B` drops below the best value + 1
    (the values are whole numbers): a few rows instead of all of them.
    """
    r = _isqrt(q)
    rho = math.sqrt(oy * oy + 1.0)
    peak = int(round(oz * math.sqrt(q) / math.sqrt(oz * oz + rho * rho)))
    peak = min(max(peak, 0), r)
    best = _cover_row(q, oz, oy, peak)
    for direction in (-1, 1):
        a = peak + direction
        while 0 <= a <= r:
            bound = (a + oz) ** 2 + (math.sqrt(q - a * a) + rho) ** 2
            if bound * (1.0 + 1e-12) + 1e-9 < best + 1:
                break
            best = max(best, _cover_row(q, oz, oy, a))
            a += direction
    return best


@njit(cache=True, nogil=True)
def cover_template(seen: np.ndarray) -> np.ndarray:
    r"""Smallest squared radius a neighbour's ball needs to cover a voxel's ball.

    Row ``n - 1`` is for a neighbour at an offset with ``n`` non-zero unit
    components, column ``q`` for a ball of squared radius ``q`` (computed only
    where ``seen[q]``). The ball is the set of grid points :math:`p` with
    :math:`|p|^2 \le q`; its point farthest from the neighbour lies in the
    octant facing away from it, on the ball's outer rim along the third axis,
    so the cover radius is

    .. math:: \max_{a^2 + b^2 \le q} (a + o_z)^2 + (b + o_y)^2
              + (\lfloor\sqrt{q - a^2 - b^2}\rfloor + o_x)^2

    over :math:`a, b \ge 0`, with :math:`o` = (0, 0, 1), (0, 1, 1), (1, 1, 1).
    """
    n = seen.size
    out = np.zeros((3, n), dtype=np.int64)
    for q in range(n):
        if seen[q]:
            out[0, q] = _cover_one(q, 0, 0)
            out[1, q] = _cover_one(q, 0, 1)
            out[2, q] = _cover_one(q, 1, 1)
    return out


@njit(cache=True, nogil=True)
def _ridge(d2, cover, offsets, nonzero, ridge, counts, k0, k1):
    """Mark the ridge in slices ``k0:k1``; ``cover[q, n - 1]`` is the template."""
    nz, ny, nx = d2.shape
    flat = d2.ravel()
    step = offsets[:, 0] * (ny * nx) + offsets[:, 1] * nx + offsets[:, 2]
    for k in range(k0, k1):
        n_ridge = 0
        for j in range(ny):
            inner_kj = 0 < k < nz - 1 and 0 < j < ny - 1
            for i in range(nx):
                v = d2[k, j, i]
                if v <= 0:
                    continue
                q = int(v + 0.5)
                on_ridge = True
                if inner_kj and 0 < i < nx - 1:
                    base = (k * ny + j) * nx + i
                    for t in range(26):
                        if flat[base + step[t]] >= cover[q, nonzero[t] - 1]:
                            on_ridge = False
                            break
                else:
                    for t in range(26):
                        ka = k + offsets[t, 0]
                        ja = j + offsets[t, 1]
                        ia = i + offsets[t, 2]
                        if ka < 0 or ka >= nz or ja < 0 or ja >= ny or ia < 0 or ia >= nx:
                            continue
                        if d2[ka, ja, ia] >= cover[q, nonzero[t] - 1]:
                            on_ridge = False
                            break
                if on_ridge:
                    ridge[k, j, i] = True
                    n_ridge += 1
        counts[k] = n_ridge


@njit(cache=True, nogil=True)
def _collect(ridge, d2, slice_start, top, cj, ci, q, k0, k1):
    """Ridge points of slices ``k0:k1``, each slice's largest ``q`` first (counting sort)."""
    nz, ny, nx = ridge.shape
    for k in range(k0, k1):
        lo = slice_start[k]
        n = slice_start[k + 1] - lo
        if n == 0:
            continue
        sj = np.empty(n, dtype=np.int32)
        si = np.empty(n, dtype=np.int32)
        sq = np.empty(n, dtype=np.int64)
        p = 0
        for j in range(ny):
            for i in range(nx):
                if ridge[k, j, i]:
                    sj[p] = j
                    si[p] = i
                    sq[p] = int(d2[k, j, i] + 0.5)
                    p += 1
        first = np.zeros(top + 2, dtype=np.int64)
        for p in range(n):
            first[top - sq[p] + 1] += 1
        for t in range(top + 1):
            first[t + 1] += first[t]
        for p in range(n):
            slot = lo + first[top - sq[p]]
            first[top - sq[p]] += 1
            cj[slot] = sj[p]
            ci[slot] = si[p]
            q[slot] = sq[p]


def distance_ridge(d2: np.ndarray, threads: int | None = None):
    """Ridge points of a squared distance map, grouped by slice (Hildebrand 1997).

    A voxel is on the ridge when no 26-neighbour's ball covers its ball
    (:func:`cover_template`). Returns ``slice_start`` (``n_slices + 1``
    offsets) and, for each ridge point, its row ``cj``, column ``ci`` and
    squared radius ``q``; the points of slice ``k`` are
    ``slice_start[k]:slice_start[k + 1]``, largest ``q`` first.
    """
    d2 = np.ascontiguousarray(d2)
    seen = _occurring(d2)
    cover = np.ascontiguousarray(cover_template(seen).T.astype(np.float32))
    nz = d2.shape[0]
    ridge = np.zeros(d2.shape, dtype=np.bool_)
    counts = np.zeros(nz, dtype=np.int64)
    _run(_ridge, nz, threads, d2, cover, _OFFSETS, _NONZERO, ridge, counts)
    slice_start = np.zeros(nz + 1, dtype=np.int64)
    np.cumsum(counts, out=slice_start[1:])
    n = int(slice_start[-1])
    cj = np.empty(n, dtype=np.int32)
    ci = np.empty(n, dtype=np.int32)
    q = np.empty(n, dtype=np.int64)
    _run(_collect, nz, threads, ridge, d2, slice_start, seen.size - 1, cj, ci, q)
    return slice_start, cj, ci, q


# -- sphere painting ---------------------------------------------------------------
@njit(cache=True, nogil=True)
def isqrt_table(top: int) -> np.ndarray:
    """``floor(sqrt(x))`` for ``x = 0..top``."""
    table = np.empty(top + 1, dtype=np.int32)
    s = 0
    for x in range(top + 1):
        while (s + 1) * (s + 1) <= x:
            s += 1
        table[x] = s
    return table


@njit(cache=True, nogil=True, inline="always")
def _first_free(row: np.ndarray, i: int) -> int:
    """The first unwritten index ``>= i`` of a row (union-find with path halving)."""
    while row[i] != i:
        row[i] = row[row[i]]
        i = row[i]
    return i


@njit(cache=True, nogil=True)
def _paint(out, slice_start, cj, ci, q, top, roots, reach, origin, nz, k0, k1):
    """Paint the output slices ``k0:k1``; ``out`` is the box of the window at ``origin``,
    whose balls are centred in the window's ``nz`` slices."""
    _, ny, nx = out.shape
    z0, y0, x0 = origin[0], origin[1], origin[2]
    for kk in range(k0, k1):
        plane = out[kk]
        k1_ = z0 + kk  # the slice painted, in the window
        lo_k = max(0, k1_ - reach)
        hi_k = min(nz, k1_ + reach + 1)
        # the balls that reach this slice, largest first (counting sort on q)
        first = np.zeros(top + 2, dtype=np.int64)
        n_cand = 0
        for k in range(lo_k, hi_k):
            dk2 = (k - k1_) * (k - k1_)
            for p in range(slice_start[k], slice_start[k + 1]):
                if q[p] < dk2:
                    break  # the rest of the slice's balls are smaller
                first[top - q[p] + 1] += 1
                n_cand += 1
        for t in range(top + 1):
            first[t + 1] += first[t]
        ball_j = np.empty(n_cand, dtype=np.int32)
        ball_i = np.empty(n_cand, dtype=np.int32)
        ball_q = np.empty(n_cand, dtype=np.int64)
        rest = np.empty(n_cand, dtype=np.int64)
        for k in range(lo_k, hi_k):
            dk2 = (k - k1_) * (k - k1_)
            for p in range(slice_start[k], slice_start[k + 1]):
                if q[p] < dk2:
                    break
                slot = first[top - q[p]]
                first[top - q[p]] += 1
                ball_j[slot] = cj[p] - y0
                ball_i[slot] = ci[p] - x0
                ball_q[slot] = q[p]
                rest[slot] = q[p] - dk2
        free = np.empty((ny, nx + 1), dtype=np.int32)
        for j in range(ny):
            for i in range(nx + 1):
                free[j, i] = i
        for c in range(n_cand):
            value = np.float32(ball_q[c])
            r2 = rest[c]
            j0 = ball_j[c]
            i0 = ball_i[c]
            rj = roots[r2]
            for j1 in range(max(0, j0 - rj), min(ny, j0 + rj + 1)):
                ri = roots[r2 - (j1 - j0) * (j1 - j0)]
                lo = max(0, i0 - ri)
                hi = min(nx - 1, i0 + ri)
                line = plane[j1]
                if ri < _SHORT_ROW:  # cheaper to write than to skip
                    for i in range(lo, hi + 1):
                        line[i] = max(line[i], value)
                    continue
                row = free[j1]
                i = _first_free(row, lo)
                while i <= hi:
                    line[i] = max(line[i], value)
                    row[i] = i + 1
                    i = _first_free(row, i + 1)


def _meeting(
    box: tuple[slice, ...],
    slice_start: np.ndarray,
    cj: np.ndarray,
    ci: np.ndarray,
    q: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ridge points whose balls meet ``box``, grouped by slice in the same order."""
    nz = slice_start.size - 1
    ck = np.repeat(np.arange(nz), np.diff(slice_start))
    gap2 = np.zeros(q.size, dtype=np.int64)
    for c, b in zip((ck, cj, ci), box, strict=True):
        gap = np.maximum(np.maximum(b.start - c, c - (b.stop - 1)), 0).astype(np.int64)
        gap2 += gap * gap
    keep = gap2 <= q
    counts = np.bincount(ck[keep], minlength=nz)
    start = np.zeros(nz + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    return start, cj[keep], ci[keep], q[keep]


def paint_spheres(
    shape: tuple[int, int, int],
    slice_start: np.ndarray,
    cj: np.ndarray,
    ci: np.ndarray,
    q: np.ndarray,
    box: tuple[slice, ...] | None = None,
    threads: int | None = None,
) -> np.ndarray:
    r"""Largest squared radius of the ridge balls that contain each voxel.

    Ridge points as returned by :func:`distance_ridge` for a window of
    ``shape``. Ball membership is inclusive, :math:`|x - c|^2 \le q`. Only the
    voxels of ``box`` (slices of the window; default all of it) are painted
    and returned: a voxel's value does not depend on the others.

    Each output slice is written by one thread (no two threads write one
    voxel). Its balls are visited largest first, so a voxel written by a ball
    already holds its final value: for long rows (half-width at least
    ``_SHORT_ROW``) each row keeps, union-find style, pointers past the runs
    so written, and a ball's row costs its unwritten voxels plus a few pointer
    hops instead of its whole length. Short rows are cheaper to write
    outright (taking the max, so both kinds of write mix safely).
    """
    if box is None:
        box = tuple(slice(0, n) for n in shape)
    out = np.zeros(tuple(b.stop - b.start for b in box), dtype=np.float32)
    if box != tuple(slice(0, n) for n in shape):
        slice_start, cj, ci, q = _meeting(box, slice_start, cj, ci, q)
    if q.size == 0:
        return out
    top = int(q.max())
    roots = isqrt_table(top)
    origin = np.array([b.start for b in box], dtype=np.int64)
    reach = int(roots[top])
    args = (out, slice_start, cj, ci, q, top, roots, reach, origin, shape[0])
    _run(_paint, out.shape[0], threads, *args)
    return out


# -- clean-up, masking and statistics ----------------------------------------------
@njit(cache=True, nogil=True)
def _near_unpainted(painted, near, k0, k1):
    """``near``: unpainted within one step along the last axis."""
    nz, ny, nx = painted.shape
    for k in range(k0, k1):
        for j in range(ny):
            for i in range(nx):
                if painted[k, j, i] <= 0:
                    near[k, j, i] = 1
                    if i > 0:
                        near[k, j, i - 1] = 1
                    if i < nx - 1:
                        near[k, j, i + 1] = 1


@njit(cache=True, nogil=True)
def _flags(painted, near, flags, k0, k1):
    """0 unpainted, 1 surface (an unpainted 26-neighbour), 2 interior."""
    nz, ny, nx = painted.shape
    for k in range(k0, k1):
        for j in range(ny):
            for i in range(nx):
                if painted[k, j, i] <= 0:
                    continue
                hit = False
                for ka in range(max(0, k - 1), min(nz, k + 2)):
                    for ja in range(max(0, j - 1), min(ny, j + 2)):
                        if near[ka, ja, i]:
                            hit = True
                flags[k, j, i] = 1 if hit else 2


@njit(cache=True, nogil=True)
def _clean_mask(painted, flags, phase, scale, offsets, out, stats, k0, k1):
    nz, ny, nx = painted.shape
    for k in range(k0, k1):
        total = 0.0
        total_sq = 0.0
        largest = 0.0
        count = 0
        for j in range(ny):
            for i in range(nx):
                flag = flags[k, j, i]
                if not phase[k, j, i] or flag == 0:
                    out[k, j, i] = np.nan
                    continue
                value = 2.0 * math.sqrt(painted[k, j, i])
                if flag == 1:
                    n = 0
                    s = 0.0
                    for t in range(26):
                        ka = k + offsets[t, 0]
                        ja = j + offsets[t, 1]
                        ia = i + offsets[t, 2]
                        if ka < 0 or ka >= nz or ja < 0 or ja >= ny or ia < 0 or ia >= nx:
                            continue
                        if flags[ka, ja, ia] == 2:
                            s += 2.0 * math.sqrt(painted[ka, ja, ia])
                            n += 1
                    if n > 0:
                        value = s / n
                stored = np.float32(value * scale)
                out[k, j, i] = stored
                v = float(stored)
                total += v
                total_sq += v * v
                largest = max(largest, v)
                count += 1
        stats[k, 0] = total
        stats[k, 1] = total_sq
        stats[k, 2] = largest
        stats[k, 3] = count


def clean_and_mask(
    painted: np.ndarray, phase: np.ndarray, scale: float, threads: int | None = None
):
    """BoneJ's surface clean-up, masking to ``phase`` and scaling by ``scale``.

    A painted voxel with an unpainted 26-neighbour (beyond the border counts
    as painted) is a surface voxel and takes the mean of its interior painted
    26-neighbours (its own value when it has none). Returns the map
    (``float32``, NaN outside the phase and where no ball reached) and
    ``(sum, sum of squares, max, count)`` of its finite values.
    """
    nz = painted.shape[0]
    near = np.zeros(painted.shape, dtype=np.uint8)
    _run(_near_unpainted, nz, threads, painted, near)
    flags = np.zeros(painted.shape, dtype=np.uint8)
    _run(_flags, nz, threads, painted, near, flags)
    del near
    out = np.empty(painted.shape, dtype=np.float32)
    stats = np.zeros((nz, 4))
    _run(_clean_mask, nz, threads, painted, flags, phase, float(scale), _OFFSETS, out, stats)
    return out, stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].max(), int(stats[:, 3].sum())


# -- mean intercept length ---------------------------------------------------------
#: Sample states of :func:`_intercepts`: marrow, bone, and outside the region measured.
MARROW, BONE, OUTSIDE = 0, 1, 2


@njit(cache=True, nogil=True)
def _intercepts(
    state, masked, directions, grid_offsets, spacing, increment, changes, lengths, t0, t1
):
    """Changes and lengths along the lines of the directions ``t0:t1`` (see
    :func:`intercept_counts`). A sample whose ``state`` is ``OUTSIDE`` ends the run
    of samples (no change counts across it); with ``masked`` the length is the
    samples not outside times ``increment``, otherwise the lines' lengths in the box."""
    n0, n1, n2 = state.shape
    size = np.array([n0, n1, n2], dtype=np.float64)
    centre = size / 2.0
    half = 0.5 * math.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
    steps = int(math.ceil(half / spacing)) + 1
    for t in range(t0, t1):
        d = directions[t]
        # u: a unit vector normal to d; w = d x u
        if abs(d[0]) < 0.9:
            u = np.array([0.0, -d[2], d[1]])
        else:
            u = np.array([d[2], 0.0, -d[0]])
        u /= math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        w = np.array(
            [d[1] * u[2] - d[2] * u[1], d[2] * u[0] - d[0] * u[2], d[0] * u[1] - d[1] * u[0]]
        )
        n_changes = 0
        inside = 0
        length = 0.0
        for a in range(-steps, steps):
            for b in range(-steps, steps):
                sa = (a + grid_offsets[t, 0]) * spacing
                sb = (b + grid_offsets[t, 1]) * spacing
                p = centre + sa * u + sb * w
                # entry and exit parameters of the line p + s d through the box
                lo = -1e300
                hi = 1e300
                for ax in range(3):
                    if abs(d[ax]) < 1e-12:
                        if p[ax] < 0.0 or p[ax] >= size[ax]:
                            lo = 1.0
                            hi = 0.0
                        continue
                    s0 = (0.0 - p[ax]) / d[ax]
                    s1 = (size[ax] - p[ax]) / d[ax]
                    lo = max(lo, min(s0, s1))
                    hi = min(hi, max(s0, s1))
                if hi <= lo:
                    continue
                s = lo + grid_offsets[t, 2] * increment
                previous = -1
                while s < hi:
                    x0 = min(max(int(math.floor(p[0] + s * d[0])), 0), n0 - 1)
                    x1 = min(max(int(math.floor(p[1] + s * d[1])), 0), n1 - 1)
                    x2 = min(max(int(math.floor(p[2] + s * d[2])), 0), n2 - 1)
                    current = state[x0, x1, x2]
                    if current == OUTSIDE:
                        previous = -1
                    else:
                        inside += 1
                        if previous >= 0 and current != previous:
                            n_changes += 1
                        previous = current
                    s += increment
                length += hi - lo
        changes[t] = n_changes
        lengths[t] = inside * increment if masked else length


def intercept_counts(
    binary: np.ndarray,
    directions: np.ndarray,
    grid_offsets: np.ndarray,
    spacing: float,
    increment: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Phase changes and sampled length along parallel lines, per direction.

    For direction :math:`d` the lines pass through the points
    :math:`c + (a + o_a) s\,u + (b + o_b) s\,w` of a square grid of spacing
    :math:`s` in the plane through the volume's centre :math:`c` normal to
    :math:`d` (:math:`u, w` complete an orthonormal basis; ``grid_offsets``
    gives :math:`o_a, o_b` and the offset of the first sample along the line,
    all in [0, 1)). Voxel ``(i0, i1, i2)`` fills the cube
    :math:`[i_0, i_0 + 1) \times \ldots`; each line is sampled every
    ``increment`` between where it enters and leaves the volume, and a change
    between consecutive samples counts one intercept.
    """
    state = np.ascontiguousarray(binary, dtype=bool).view(np.uint8)  # MARROW, BONE
    return run_intercepts(state, False, directions, grid_offsets, spacing, increment)


def run_intercepts(
    state: np.ndarray,
    masked: bool,
    directions: np.ndarray,
    grid_offsets: np.ndarray,
    spacing: float,
    increment: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_intercepts` over all directions (``state``: uint8 :data:`MARROW`,
    :data:`BONE` or :data:`OUTSIDE` per voxel), on threads."""
    n = directions.shape[0]
    changes = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n)
    run_chunks(
        _intercepts,
        n,
        np.ascontiguousarray(state, dtype=np.uint8),
        bool(masked),
        np.ascontiguousarray(directions, dtype=np.float64),
        np.ascontiguousarray(grid_offsets, dtype=np.float64),
        float(spacing),
        float(increment),
        changes,
        lengths,
    )
    return changes, lengths
