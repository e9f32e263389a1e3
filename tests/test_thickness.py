"""Local thickness (Tb.Th, Tb.Sp) and Tb.N, against hand cases, BoneJ's tests and brute force.

Geometry of the hand cases: voxel centres sit on integer coordinates; a rod's
axis or a sphere's centre sits on a voxel *corner* (half-integer coordinates),
and a voxel is inside when its centre is within D/2 of the axis or centre.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.interfaces import MetricInput
from boneframe.metrics import (
    DegreeOfAnisotropy,
    MilRatio,
    TrabecularNumber,
    TrabecularSeparation,
    TrabecularThickness,
    measure,
)
from boneframe.metrics.thickness import local_thickness, thickness_map, trabecular_number

THICKNESS = ["tb_th", "tb_th_sd", "tb_th_max", "tb_sp", "tb_sp_sd", "tb_sp_max", "tb_n"]


# -- shapes --------------------------------------------------------------------------
def slab(t: int, pad: int = 4, side: int = 8) -> np.ndarray:
    """A slab ``t`` voxels thick across the whole array, marrow above and below."""
    vol = np.zeros((t + 2 * pad, side, side), dtype=bool)
    vol[pad : pad + t] = True
    return vol


def corner_grid(diameter: float, pad: int = 3) -> tuple[np.ndarray, int]:
    """Voxel-centre coordinates relative to a corner at the middle of the array."""
    n = 2 * (math.ceil(diameter / 2) + pad)
    return np.arange(n) - (n / 2 - 0.5), n


def rod(diameter: float, length: int = 5) -> np.ndarray:
    """A rod along axis 0 through the whole array, its axis on a voxel corner."""
    y, _ = corner_grid(diameter)
    disc = y[:, None] ** 2 + y[None, :] ** 2 <= (diameter / 2) ** 2
    return np.broadcast_to(disc, (length, *disc.shape)).copy()


def ball(diameter: float) -> np.ndarray:
    """A solid sphere centred on a voxel corner, with marrow all round."""
    y, _ = corner_grid(diameter)
    r2 = y[:, None, None] ** 2 + y[None, :, None] ** 2 + y[None, None, :] ** 2
    return r2 <= (diameter / 2) ** 2


def plates(thickness: int = 4, period: int = 16, periods: int = 4, side: int = 8) -> np.ndarray:
    """Parallel plates; the array's border along axis 0 lies mid-way through marrow."""
    vol = np.zeros((period * periods, side, side), dtype=bool)
    first = (period - thickness) // 2
    for start in range(first, vol.shape[0], period):
        vol[start : start + thickness] = True
    return vol


# -- hand cases, exact ----------------------------------------------------------------
@pytest.mark.parametrize("t", [4, 6, 10])
def test_even_slab_measures_its_thickness_everywhere(t):
    # every bone voxel's local thickness is t: min, mean and max of the map
    lt = local_thickness(slab(t))
    values = lt.map[np.isfinite(lt.map)]
    assert values.size == t * 64
    assert values.min() == pytest.approx(t, abs=1e-6)
    assert values.max() == pytest.approx(t, abs=1e-6)
    assert lt.mean == pytest.approx(t, abs=1e-6)
    assert lt.sd == pytest.approx(0, abs=1e-6)


def test_odd_slab_measures_one_more_like_bonej():
    # 5 voxels: the middle plane is 3 voxel-centre steps from the marrow, so its
    # ball (radius 3, inclusive) covers the slab and the diameter is 6 everywhere
    lt = local_thickness(slab(5))
    assert lt.mean == pytest.approx(6, abs=1e-6)
    assert lt.max == pytest.approx(6, abs=1e-6)
    assert np.nanmin(lt.map) == pytest.approx(6, abs=1e-6)


@pytest.mark.parametrize(("diameter", "q"), [(6, 8), (10, 20)])
def test_rod_centre_and_max(diameter, q):
    # the 4 voxels round the axis are sqrt(q) from the nearest marrow centre
    # (D=6: marrow voxel (2.5, 2.5) from (0.5, 0.5)); their value is the map's max
    vol = rod(diameter)
    lt = local_thickness(vol)
    c = vol.shape[1] // 2
    centre = lt.map[:, c - 1 : c + 1, c - 1 : c + 1]
    assert np.allclose(centre, 2 * math.sqrt(q), rtol=0, atol=1e-6)
    assert lt.max == pytest.approx(2 * math.sqrt(q), abs=1e-6)


def test_sphere_max():
    # D=12: nearest marrow centre to the 8 central voxels is (3, 3, 3) away
    vol = ball(12)
    lt = local_thickness(vol)
    c = vol.shape[0] // 2
    assert np.allclose(lt.map[c - 1 : c + 1, c - 1 : c + 1, c - 1 : c + 1], 2 * math.sqrt(27))
    assert lt.max == pytest.approx(2 * math.sqrt(27), abs=1e-6)


def test_plates_thickness_separation_number():
    # means over each phase (every voxel is exact): Tb.Th 4, Tb.Sp 12 (the half
    # marrow layers at the border measure 12 too: the border is not bone),
    # Tb.N = 1/16 per voxel; 1 mm voxels: 4000 and 12000 µm, 1/16 per mm
    m = measure(plates(), voxel_size=1000.0, names=THICKNESS)
    assert m["tb_th"] == pytest.approx(4000, abs=1e-3)
    assert m["tb_th_max"] == pytest.approx(4000, abs=1e-3)
    assert m["tb_sp"] == pytest.approx(12000, abs=1e-3)
    assert m["tb_sp_max"] == pytest.approx(12000, abs=1e-3)
    assert m["tb_th_sd"] == pytest.approx(0, abs=1e-3)
    assert m["tb_n"] == pytest.approx(1 / 16, abs=1e-9)
    marrow = thickness_map(plates(), 1000.0, phase="marrow")
    assert np.isnan(marrow[plates()]).all() and np.isfinite(marrow[~plates()]).all()


def test_plate_model_of_tb_n():
    # BV/TV / Tb.Th = (4/16) / 4 mm = 1/16 mm⁻¹: the models agree on plates
    m = measure(plates(), voxel_size=1000.0, names=[TrabecularNumber(model="plate")])
    assert m["tb_n"] == pytest.approx(1 / 16, abs=1e-9)
    assert trabecular_number(0.1, 0.4, 0.2, "plate") == pytest.approx(2.0)
    assert trabecular_number(0.1, 0.4, 0.2, "inverse_sum") == pytest.approx(2.0)
    with pytest.raises(InputError):
        trabecular_number(0.1, 0.4, 0.2, "rods")  # type: ignore[arg-type]


def test_units_follow_the_voxel_size():
    lt = local_thickness(slab(4), 41.0)
    assert lt.mean == pytest.approx(164.0, rel=1e-6)
    m = measure(slab(4), voxel_size=41.0, names=["tb_th"])
    assert m["tb_th"] == pytest.approx(164.0, rel=1e-6) and m["units"]["tb_th"] == "µm"


def test_map_is_nan_outside_the_phase():
    vol = slab(4)
    bone = thickness_map(vol)
    assert bone.dtype == np.float32
    assert np.isfinite(bone[vol]).all() and np.isnan(bone[~vol]).all()


def test_empty_or_full_phase_gives_nan():
    empty = np.zeros((6, 6, 6), dtype=bool)
    assert math.isnan(local_thickness(empty).mean)
    full = local_thickness(~empty)  # no marrow to measure a distance to
    assert math.isnan(full.mean) and full.count == 0
    assert np.isnan(full.map).all()


# -- BoneJ's own unit tests (ThicknessHelperTest), within its tolerances ---------------
def fill_oval(side: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """ImageJ's ``fillOval`` approximated: pixels whose centre is in the ellipse."""
    y, x = np.mgrid[0:side, 0:side] + 0.5
    if w <= 0 or h <= 0:
        return np.zeros((side, side), dtype=bool)
    return ((x - x0 - w / 2) / (w / 2)) ** 2 + ((y - y0 - h / 2) / (h / 2)) ** 2 <= 1


def test_bonej_rods():
    # BoneJ: rod(100 d, d) in a 2d x 2d stack, mean within 1.5 of d. The rod runs
    # through the stack's ends, which are not marrow, so every slice is alike
    # and the length does not change the map: 4 slices stand for 100 d.
    for d in range(1, 25):
        disc = fill_oval(2 * d, d // 2, d // 2, d, d)
        mean = local_thickness(np.broadcast_to(disc, (4, 2 * d, 2 * d)).copy()).mean
        assert mean == pytest.approx(d, abs=1.5), d


def test_rod_length_does_not_matter():
    disc = fill_oval(14, 3, 3, 7, 7)
    short = local_thickness(np.broadcast_to(disc, (4, 14, 14)).copy())
    long = local_thickness(np.broadcast_to(disc, (700, 14, 14)).copy())
    assert short.mean == pytest.approx(long.mean, abs=1e-5)
    assert short.max == long.max


def test_bonej_spheres():
    # BoneJ: sphere(r) drawn slice by slice with round(sqrt(r² - z²)) radii and
    # one slice of padding; mean within 10 % of 1.9441872882 r - 1.218936
    for r in range(2, 25):
        side = 2 * r + 2
        slices = [np.zeros((side, side), dtype=bool)]
        for z in range(-r, r + 1):
            rc = round(math.sqrt(r * r - z * z))
            slices.append(fill_oval(side, r + 1 - rc, r + 1 - rc, 2 * rc, 2 * rc))
        slices.append(np.zeros((side, side), dtype=bool))
        expected = r * 1.9441872882 - 1.218936
        mean = local_thickness(np.stack(slices)).mean
        assert mean == pytest.approx(expected, rel=0.1), r


def test_bonej_bricks():
    # BoneJ: a 128 x 128 x t brick padded by one marrow voxel all round; mean
    # within 5 % of t, or of t + 1 for odd t
    for t in range(1, 21):
        vol = np.zeros((t + 2, 130, 130), dtype=bool)
        vol[1:-1, 1:-1, 1:-1] = True
        expected = t + 1 if t % 2 else t
        assert local_thickness(vol).mean == pytest.approx(expected, rel=0.05), t


# -- brute force: the definition, without the ridge ------------------------------------
def brute_force_map(vol: np.ndarray) -> np.ndarray:
    """Max inscribed-ball diameter over *all* phase voxels, then BoneJ's clean-up and mask."""
    shape = vol.shape
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 3)
    inside = vol.ravel()
    other = grid[~inside]
    d2 = np.zeros(grid.shape[0])
    for n, p in enumerate(grid):
        if inside[n]:
            d2[n] = ((other - p) ** 2).sum(1).min()
    painted = np.zeros(grid.shape[0])
    for n in np.flatnonzero(inside):
        covered = ((grid - grid[n]) ** 2).sum(1) <= d2[n]
        painted[covered] = np.maximum(painted[covered], d2[n])
    painted = painted.reshape(shape)
    thick = 2 * np.sqrt(painted)
    padded = np.pad(painted, 1, constant_values=1.0)  # beyond the border counts as painted
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]
    surface = np.zeros(shape, dtype=bool)
    for o in offsets:
        window = padded[tuple(slice(1 + a, 1 + a + s) for a, s in zip(o, shape, strict=True))]
        surface |= window == 0
    surface &= painted > 0
    interior = (painted > 0) & ~surface
    out = np.full(shape, np.nan)
    for idx in zip(*np.nonzero(vol & (painted > 0)), strict=True):
        if not surface[idx]:
            out[idx] = thick[idx]
            continue
        values = [
            thick[n]
            for o in offsets
            for n in [tuple(i + a for i, a in zip(idx, o, strict=True))]
            if all(0 <= c < s for c, s in zip(n, shape, strict=True)) and interior[n]
        ]
        out[idx] = np.mean(values) if values else thick[idx]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_structures(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.standard_normal((14, 13, 12)), 1.5) > 0
    for phase, mask in (("bone", vol), ("marrow", ~vol)):
        ours = thickness_map(vol, phase=phase)
        expected = brute_force_map(mask)
        assert np.array_equal(np.isnan(ours), np.isnan(expected)), phase
        assert np.allclose(ours[mask], expected[mask], rtol=0, atol=1e-5), phase


def test_cover_template_is_exact():
    from boneframe.metrics.thickness_kernels import cover_template

    top = 40
    template = cover_template(np.ones(top + 1, dtype=bool))
    grid = np.array(list(itertools.product(range(-7, 8), repeat=3)))
    norm = (grid**2).sum(1)
    for q in range(1, top + 1):
        points = grid[norm <= q]
        for row, o in enumerate([(0, 0, 1), (0, 1, 1), (1, 1, 1)]):
            assert template[row, q] == ((points - np.array(o)) ** 2).sum(1).max(), (q, o)


def test_cover_template_search_matches_exhaustive_formula_for_large_balls():
    # the pruned row search against every (a, b) of the template's formula
    from boneframe.metrics.thickness_kernels import cover_template

    qs = np.random.default_rng(0).integers(41, 6000, 25)
    seen = np.zeros(6001, dtype=bool)
    seen[qs] = True
    template = cover_template(seen)
    for q in qs:
        a, b = np.mgrid[0 : math.isqrt(q) + 1, 0 : math.isqrt(q) + 1]
        ok = a * a + b * b <= q
        rest = np.where(ok, q - a * a - b * b, 0)
        c = np.array([math.isqrt(int(x)) for x in rest.ravel()]).reshape(rest.shape)
        for row, (oz, oy) in enumerate([(0, 0), (0, 1), (1, 1)]):
            values = (a + oz) ** 2 + (b + oy) ** 2 + (c + 1) ** 2
            assert template[row, q] == values[ok].max(), (q, row)


def test_threads_do_not_change_the_map(monkeypatch):
    from scipy import ndimage

    from boneframe.metrics import thickness_kernels

    vol = ndimage.gaussian_filter(np.random.default_rng(5).standard_normal((40, 36, 30)), 2) > 0
    many = thickness_map(vol, phase="marrow")
    monkeypatch.setattr(thickness_kernels, "num_threads", lambda: 1)
    one = thickness_map(vol, phase="marrow")
    assert np.array_equal(many, one, equal_nan=True)


# -- errors and the Metric strategies ---------------------------------------------------
def test_anisotropic_voxels_are_refused():
    vol = slab(4)
    with pytest.raises(InputError, match="isotropic"):
        local_thickness(vol, (41.0, 41.0, 82.0))
    m = measure(vol, voxel_size=(82.0, 41.0, 41.0), names=["tb_th", "bv_tv"])
    assert m["tb_th"] is None and "isotropic" in m["skipped"]["tb_th"] and m["bv_tv"] > 0
    with pytest.raises(InputError, match="isotropic"):
        TrabecularThickness()(MetricInput(vol, voxel_size=(41.0, 41.0, 82.0), threshold=0.5))


def test_bad_inputs():
    with pytest.raises(InputError):
        local_thickness(np.zeros((4, 4)))
    with pytest.raises(InputError):
        local_thickness(slab(4), phase="air")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="voxel size"):
        TrabecularThickness()(MetricInput(slab(4), threshold=0.5))
    with pytest.raises(InputError):
        local_thickness(slab(4), 0.0)


def test_metric_strategies_share_one_map_per_phase(monkeypatch):
    import boneframe.metrics.trabecular as trabecular

    calls = []
    real = trabecular.thickness_of_block

    def counting(inside, *args, **kwargs):
        calls.append(int(np.count_nonzero(inside)))
        return real(inside, *args, **kwargs)

    monkeypatch.setattr(trabecular, "thickness_of_block", counting)
    # a grey volume: binarised by Otsu's threshold
    grey = np.where(plates(), 900.0, 100.0)  # two grey levels, not 0/1
    names = ["tb_th", "tb_th_sd", "tb_sp", "tb_sp_max", TrabecularNumber(model="plate")]
    m = measure(grey, voxel_size=1000.0, names=names)
    assert m["tb_th"] == pytest.approx(4000, abs=1e-3) and m["tb_sp"] == pytest.approx(
        12000, abs=1e-3
    )
    assert m["tb_n"] == pytest.approx(1 / 16, abs=1e-9)
    assert sorted(calls) == sorted([np.count_nonzero(plates()), np.count_nonzero(~plates())])
    # a given threshold is used instead of Otsu's: everything above -inf is bone
    m = measure(grey, voxel_size=1000.0, threshold=float(grey.min()) - 1, names=["tb_th"])
    assert m["tb_th"] is None and "fills the volume" in m["skipped"]["tb_th"]


def test_strategy_metadata():
    for cls in (TrabecularThickness, TrabecularSeparation, TrabecularNumber):
        assert cls.name and cls.description and cls.unit
        assert "\n" not in cls.description
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrabecularNumber(model="rods")
    with pytest.raises(ValidationError):
        TrabecularNumber(unknown=1)


# -- real data ----------------------------------------------------------------------------
def test_real_trabecular_crop(real_mask):
    crop = real_mask[40:120, 40:120, 40:120]
    fast = {"directions": 64, "lines": 900}
    names = [*THICKNESS, DegreeOfAnisotropy(**fast), MilRatio(**fast)]
    m = measure(crop, voxel_size=1000.0, names=names)
    assert 2000 < m["tb_th"] < 15000  # µm (1 mm voxels)
    assert m["tb_th"] < m["tb_sp"] < 40000
    assert m["tb_th"] <= m["tb_th_max"] and m["tb_sp"] <= m["tb_sp_max"]
    assert m["tb_n"] == pytest.approx(1000 / (m["tb_th"] + m["tb_sp"]))
    assert 0 <= m["da"] <= 1 and m["mil_ratio"] >= 1
