"""Euler characteristic, Betti numbers, Conn.D and the Odgaard–Gundersen edge correction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.measure import euler_number as skimage_euler
from skimage.measure import label as skimage_label

from boneframe.errors import InputError
from boneframe.metrics import (
    EulerCounts,
    bone_volume_fraction,
    connectivity_density,
    connectivity_density_bonej,
    count_cavities,
    count_components,
    edge_correction,
    euler_block_counts,
    euler_counts,
    euler_lut,
    euler_number,
    total_volume_mm3,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ---------------------------------------------------------------------
@st.composite
def small_masks(draw, max_side: int = 6) -> np.ndarray:
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    density = draw(st.floats(0.05, 0.95))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).random(shape) < density


def split_points(rng: np.random.Generator, n: int, max_blocks: int | None = None) -> list[int]:
    """Random block boundaries 0 = s0 < s1 < ... < sk = n along one axis."""
    most = n if max_blocks is None else min(n, max_blocks)
    inner = rng.choice(np.arange(1, n), size=rng.integers(0, most), replace=False)
    return [0, *sorted(int(i) for i in inner), n]


def blockwise_counts(bone: np.ndarray, cuts: list[list[int]]) -> EulerCounts:
    """Sum of euler_block_counts over the blocks given by ``cuts`` (one list per axis)."""
    padded = np.pad(bone, 1)
    total = EulerCounts()
    for ranges in itertools.product(*(list(itertools.pairwise(c)) for c in cuts)):
        # Block voxels [s, e) sit at padded [s + 1, e + 1); the halo adds one each side.
        halo = padded[tuple(slice(s, e + 2) for s, e in ranges)]
        border = [(s == 0, e == n) for (s, e), n in zip(ranges, bone.shape, strict=True)]
        total = total + euler_block_counts(halo, border)
    return total


def boundary_cell_oracle(bone: np.ndarray) -> tuple[int, float]:
    """χ and BoneJ's Δχ = χ2/2 + χ1/4 + χ0/8 by listing cells, independent of the LUTs.

    Each bone voxel is a closed unit cube; its cells (vertices, edges, squares,
    the cube) are written in doubled coordinates (even = on a lattice plane, odd =
    spanning an interval), so a cell's dimension is its number of odd
    coordinates. χ of a union of closed cells is Σ (-1)^dim over the distinct
    cells; χ2, χ1 and χ0 restrict the sum to cells on the box surface (one
    coordinate at 0 or 2n), on its 12 edges (two) and at its 8 corners (three).
    """
    cells = set()
    for i, j, k in zip(*np.nonzero(bone), strict=True):
        for cell in itertools.product(*((2 * c, 2 * c + 1, 2 * c + 2) for c in (i, j, k))):
            cells.add(cell)
    limits = [2 * n for n in bone.shape]
    chi = chi2 = chi1 = chi0 = 0
    for cell in cells:
        sign = (-1) ** sum(c % 2 for c in cell)
        on_border = sum(c in (0, lim) for c, lim in zip(cell, limits, strict=True))
        chi += sign
        chi2 += sign * (on_border >= 1)
        chi1 += sign * (on_border >= 2)
        chi0 += sign * (on_border == 3)
    return chi, chi2 / 2 + chi1 / 4 + chi0 / 8


def torus(big_r: float = 6.0, small_r: float = 2.5, n: int = 20) -> np.ndarray:
    x, y, z = np.mgrid[:n, :n, :n] - (n - 1) / 2
    return (np.hypot(x, y) - big_r) ** 2 + z**2 <= small_r**2


def cube_with_tunnels(k: int) -> np.ndarray:
    """A bone brick with k parallel one-voxel tunnels drilled through along axis 0."""
    bone = np.zeros((7, 4 * k + 3, 7), bool)
    bone[1:6, 1 : 4 * k + 2, 1:6] = True
    for j in range(k):
        bone[:, 3 + 4 * j, 3] = False  # walls of 3 voxels between tunnels and to the sides
    return bone


# -- the tables --------------------------------------------------------------------
def test_lut_single_voxel_and_interior() -> None:
    # A lone voxel is seen by 8 windows, each holding 1/8 of χ = 1; a window
    # inside solid bone (all 8 set) contributes nothing.
    lut = euler_lut(3)
    assert lut[0] == 0
    assert all(lut[1 << bit] == 1 for bit in range(8))
    assert lut[255] == 0


@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 12))
@settings(max_examples=30, deadline=None)
def test_2d_table_matches_skimage(seed: int, n0: int, n1: int) -> None:
    # The 2-D table serves the face traces of the edge correction: closed squares
    # (8-connected), i.e. skimage's connectivity=2.
    image = np.random.default_rng(seed).random((n0, n1)) < 0.5
    padded = np.pad(image, 1).view(np.uint8)
    from boneframe.metrics.morphometry import _window_codes

    chi4 = int(np.bincount(_window_codes(padded).ravel(), minlength=16) @ euler_lut(2))
    assert chi4 == 4 * skimage_euler(image, connectivity=2)


# -- χ -----------------------------------------------------------------------------
@given(small_masks())
@FAST
def test_euler_matches_skimage_on_random_volumes(bone: np.ndarray) -> None:
    assert euler_number(bone) == skimage_euler(bone, connectivity=3)


@given(small_masks(max_side=4))
@settings(max_examples=25, deadline=None)
def test_euler_and_correction_match_cell_listing(bone: np.ndarray) -> None:
    chi, delta = boundary_cell_oracle(bone)
    counts = euler_counts(bone)
    assert counts.euler == chi
    assert counts.edge_correction == pytest.approx(delta, abs=1e-12)


def test_solid_cube() -> None:
    bone = np.zeros((7, 7, 7), bool)
    bone[1:6, 1:6, 1:6] = True
    assert euler_number(bone) == 1
    assert (count_components(bone), count_cavities(bone)) == (1, 0)


def test_hollow_cube() -> None:
    # A closed shell is a sphere: χ = 2, one enclosed cavity, no tunnel.
    bone = np.zeros((9, 9, 9), bool)
    bone[1:8, 1:8, 1:8] = True
    bone[3:6, 3:6, 3:6] = False
    assert euler_number(bone) == 2
    assert count_components(bone) == 1
    assert count_cavities(bone) == 1
    assert connectivity_density(bone, 10.0) == 0.0  # β1 = 1 + 1 - 2


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cube_with_tunnels(k: int) -> None:
    # Each through-hole is a handle: χ = 1 - k, β1 = k.
    bone = cube_with_tunnels(k)
    assert euler_number(bone) == 1 - k
    assert count_cavities(bone) == 0
    tv = total_volume_mm3(bone.shape, 100.0)
    assert connectivity_density(bone, 100.0) == pytest.approx(k / tv)


def test_torus() -> None:
    bone = torus()
    assert euler_number(bone) == 0 == skimage_euler(bone, connectivity=3)
    assert count_components(bone) == 1
    assert count_cavities(bone) == 0


def test_26_connected_bone_6_connected_marrow() -> None:
    # Two voxels touching at a corner are one bone component (26-connectivity),
    # and a marrow voxel walled in on its 6 faces is a cavity even though its
    # diagonal neighbours are open (6-connected marrow).
    diagonal = np.zeros((4, 4, 4), bool)
    diagonal[1, 1, 1] = diagonal[2, 2, 2] = True
    assert euler_number(diagonal) == 1
    assert count_components(diagonal) == 1
    cross = np.zeros((5, 5, 5), bool)
    for axis in range(3):
        for side in (1, 3):
            index = [2, 2, 2]
            index[axis] = side
            cross[tuple(index)] = True
    # The six face-neighbours of (2, 2, 2), each sharing an edge with four others,
    # close a shell (a sphere, χ = 2) around the centre, which is a cavity.
    assert count_components(cross) == 1
    assert count_cavities(cross) == 1
    assert euler_number(cross) == 2


def test_block_sums_on_random_splits() -> None:
    rng = np.random.default_rng(7)
    for _ in range(6):
        shape = tuple(int(s) for s in rng.integers(3, 11, 3))
        bone = rng.random(shape) < rng.uniform(0.2, 0.8)
        cuts = [split_points(rng, n) for n in shape]
        assert blockwise_counts(bone, cuts) == euler_counts(bone), cuts


@given(small_masks(max_side=7), st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_block_sums_property(bone: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cuts = [split_points(rng, n) for n in bone.shape]
    assert blockwise_counts(bone, cuts) == euler_counts(bone)


def test_block_shape_is_checked() -> None:
    with pytest.raises(InputError, match="halo"):
        euler_block_counts(np.ones((2, 5, 5), bool))


# -- the Odgaard–Gundersen edge correction (BoneJ's Conn.D) ------------------------------
# Expected values follow BoneJ's form Δχ = χ2/2 + χ1/4 + χ0/8, where χ2, χ1, χ0 are
# the Euler characteristics of the bone's trace (closed voxel faces, edges,
# vertices) on the box surface, on the union of the box's 12 edges and on its 8
# corners; BoneJ's connectivity is 1 - (χ - Δχ).
N = 5


def _voxels(*where: tuple[int, int, int]) -> np.ndarray:
    bone = np.zeros((N, N, N), bool)
    for w in where:
        bone[w] = True
    return bone


CORRECTION_CASES = {
    # Inside: no trace on the surface. Δχ = 0, connectivity = 1 - 1 = 0.
    "interior voxel": (_voxels((2, 2, 2)), 1, 0.0),
    # On a face: its trace is one square, χ2 = 1. Δχ = 1/2.
    "face voxel": (_voxels((0, 2, 2)), 1, 0.5),
    # On an edge: two squares sharing a side (χ2 = 1) and one segment of the
    # box edge (χ1 = 1). Δχ = 1/2 + 1/4.
    "edge voxel": (_voxels((0, 0, 2)), 1, 0.75),
    # In a corner: three squares around the corner (χ2 = 1), three segments
    # meeting there (χ1 = 1), the corner point (χ0 = 1). Δχ = 1/2 + 1/4 + 1/8.
    "corner voxel": (_voxels((0, 0, 0)), 1, 0.875),
    # Two voxels on one face touching at a vertex: closed squares meet, the trace
    # is connected and contractible (χ2 = 1), one 26-connected particle. Δχ = 1/2.
    "face diagonal pair": (_voxels((0, 1, 1), (0, 2, 2)), 1, 0.5),
    # Two voxels apart on the same box edge: two separate L-shaped traces
    # (χ2 = 2) and two segments (χ1 = 2). Δχ = 1 + 1/2; χ = 2 particles.
    "two voxels on an edge": (_voxels((0, 0, 1), (0, 0, 3)), 2, 1.5),
}


@pytest.mark.parametrize("case", sorted(CORRECTION_CASES))
def test_edge_correction_hand_cases(case: str) -> None:
    bone, chi, delta = CORRECTION_CASES[case]
    assert euler_number(bone) == chi
    assert edge_correction(bone) == delta
    tv = total_volume_mm3(bone.shape, 1000.0)  # 1 mm voxels: TV = 125 mm³
    assert tv == pytest.approx(125.0)
    assert connectivity_density_bonej(bone, 1000.0) == pytest.approx((1 - (chi - delta)) / tv)


def test_edge_correction_of_filled_box() -> None:
    # All bone: the trace on the surface is the whole sphere-like surface (χ2 = 2),
    # on the edges the 12-edge skeleton (χ1 = 8 - 12 = -4), all 8 corners (χ0 = 8):
    # Δχ = 1 - 1 + 1 = 1 = χ, so the box adds nothing: connectivity 1 - 0 = 1.
    bone = np.ones((4, 5, 6), bool)
    assert edge_correction(bone) == 1.0
    assert connectivity_density_bonej(bone, 1000.0) == pytest.approx(1 / 120)


def test_edge_correction_of_crossing_rod_and_ring_on_a_face() -> None:
    # A rod from face to face leaves one square on each (χ2 = 2): Δχ = 1 = χ.
    rod = np.zeros((N, N, N), bool)
    rod[:, 2, 2] = True
    assert edge_correction(rod) == 1.0
    # A ring lying in the face layer: its trace is the ring itself (χ2 = 0),
    # counted by its Euler characteristic, not by its number of pieces. Δχ = 0.
    ring = np.zeros((N, N, N), bool)
    ring[0, 1:4, 1:4] = True
    ring[0, 2, 2] = False
    assert euler_number(ring) == 0
    assert edge_correction(ring) == 0.0


def test_conn_d_needs_voxel_size() -> None:
    bone = cube_with_tunnels(1)
    with pytest.raises(InputError, match="voxel size"):
        connectivity_density(bone, None)
    with pytest.raises(InputError, match="voxel size"):
        connectivity_density_bonej(bone, None)


def test_total_volume_units() -> None:
    # 10 x 20 x 30 voxels of 50 x 50 x 100 µm = 6000 voxels of 2.5e-4 mm³.
    assert total_volume_mm3((10, 20, 30), (50, 50, 100)) == pytest.approx(1.5)


def test_bone_volume_fraction() -> None:
    bone = np.zeros((4, 5, 6), bool)
    bone[:2, :, :3] = True
    assert bone_volume_fraction(bone) == pytest.approx(30 / 120)


# -- real trabecular bone ------------------------------------------------------------
def test_real_mask_crop(real_mask: np.ndarray) -> None:
    crop = real_mask[:80, 20:100, 40:120]
    assert euler_number(crop) == skimage_euler(crop, connectivity=3)
    assert count_components(crop) == skimage_label(crop, connectivity=3).max()
    # Enclosed cavities by another route: fill the holes, label what was filled.
    filled = ndimage.binary_fill_holes(crop) & ~crop
    assert count_cavities(crop) == ndimage.label(filled)[1]
    rng = np.random.default_rng(3)
    for _ in range(3):
        cuts = [split_points(rng, n, max_blocks=5) for n in crop.shape]
        assert blockwise_counts(crop, cuts) == euler_counts(crop)
