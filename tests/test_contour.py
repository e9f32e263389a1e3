"""Automatic compartments: the dual-threshold contouring against the synthetic radius."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest
from pydantic import ValidationError

from boneframe.compartments import (
    BUILTIN_CONTOURINGS,
    COMPARTMENTS,
    DualThreshold,
    contour,
    smoothing,
)
from boneframe.compartments import morphology as mo
from boneframe.errors import InputError
from boneframe.metrics.segmentation import dice
from boneframe.phantom_radius import SCANCO_CALIBRATION, radius_section
from boneframe.registry import get_registry
from boneframe.volume import Volume

#: A forearm section: radius, ulna, soft tissue and fat; 82 µm voxels.
SECTION = {"shape": (8, 400, 400), "voxel_size": 82.0, "seed": 0, "radius_width": 16.0}


@pytest.fixture(scope="module")
def section():
    return radius_section(**SECTION)


@pytest.fixture(scope="module")
def radius_only(section):
    return contour(section.scan)


@pytest.fixture(scope="module")
def both_bones(section):
    return contour(section.scan, bones="all")


def _dices(masks, section, keep=None):
    """DICE of each compartment against the truth (restricted to the bones ``keep``)."""
    inside = np.ones(section.scan.shape, bool) if keep is None else keep
    out = {}
    for name in COMPARTMENTS:
        truth = getattr(section, name).numpy().astype(bool) & inside
        out[name] = dice(masks[name].numpy(), truth)
    return out


def test_dice_of_the_radius(section, radius_only):
    d = _dices(radius_only, section, section.bones.numpy() == 1)
    # measured: 0.993, 0.992, 0.954
    assert d["periosteal"] >= 0.98 and d["trabecular"] >= 0.98
    assert d["cortical"] >= 0.93


def test_dice_of_both_bones(section, both_bones):
    d = _dices(both_bones, section)
    # measured: 0.992, 0.990, 0.951
    assert d["periosteal"] >= 0.98 and d["trabecular"] >= 0.98
    assert d["cortical"] >= 0.93


def test_ulna_left_out_unless_asked(section, radius_only, both_bones):
    ulna = section.bones.numpy() == 2
    assert not radius_only["periosteal"].numpy()[ulna].any()
    truth = section.periosteal.numpy().astype(bool) & ulna
    assert dice(both_bones["periosteal"].numpy() & ulna, truth) >= 0.97
    tissue = section.bones.numpy() == 0  # soft tissue, fat and air: never bone
    assert both_bones["periosteal"].numpy()[tissue].mean() < 0.01


def test_masks_partition_the_bone_with_the_scan_geometry(section):
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    scan = dataclasses.replace(section.scan, origin=(1.0, -2.0, 3.5), direction=direction)
    masks = contour(scan)
    assert tuple(masks) == COMPARTMENTS
    for mask in masks.values():
        assert mask.dtype == np.uint8 and set(np.unique(mask.numpy())) <= {0, 1}
        assert mask.shape == scan.shape and mask.voxel_size == scan.voxel_size
        assert mask.origin == scan.origin and np.array_equal(mask.direction, direction)
    peri, trab, cort = (masks[n].numpy() for n in COMPARTMENTS)
    assert not (trab & cort).any() and np.array_equal(trab | cort, peri)
    assert trab.sum() > 0 and cort.sum() > 0


def test_thin_cortex():
    section = radius_section(**{**SECTION, "shape": (4, 400, 400)}, cortical_thickness=(0.2, 0.45))
    d = _dices(contour(section.scan, bones="all"), section)
    # measured: 0.992, 0.989, 0.875 (a 2.4-voxel cortex: a voxel of error is 40 %)
    assert d["periosteal"] >= 0.98 and d["trabecular"] >= 0.98
    assert d["cortical"] >= 0.83


def test_trabeculae_at_the_endosteal_surface_stay_trabecular():
    from scipy import ndimage

    section = radius_section(**{**SECTION, "shape": (4, 400, 400)}, bv_tv=0.35)
    deep = ndimage.binary_erosion(section.trabecular.numpy().astype(bool), np.ones((1, 5, 5)))

    def leak(**params):
        cortical = contour(section.scan, bones="all", **params)["cortical"].numpy()
        return cortical.astype(bool)[deep].mean()

    smoothed = leak()  # measured 0.0005
    assert smoothed < 0.002
    # without the smoothing closings, trabeculae joined to the cortex join it
    assert leak(endo_smooth=0, endo_close=0, corner_min_voxels=1) > 3 * smoothed


def test_specks_are_not_bones(section):
    data = section.scan.numpy().copy()
    data[2:6, 40:44, 200:204] = 12000  # a dense speck in the soft tissue
    masks = contour(section.scan.with_data(data), bones="all")
    assert not masks["periosteal"].numpy()[:, 40:44, 200:204].any()


def test_native_units_match_density_units(section):
    slope = SCANCO_CALIBRATION["calibration_slope"]
    icpt = SCANCO_CALIBRATION["calibration_intercept"]
    names = ("peri_low", "peri_high", "endo_threshold")
    defaults = DualThreshold.Params()
    native = {n: (getattr(defaults, n) - icpt) / slope for n in names}
    bare = Volume(section.scan.numpy()[:3], voxel_size=82.0)  # no calibration
    masks = contour(bare, units="native", **native)
    reference = contour(section.scan.with_data(section.scan.numpy()[:3]))
    for name in COMPARTMENTS:
        assert dice(masks[name].numpy(), reference[name].numpy()) > 0.999


def test_dask_volume_is_read_in_slabs(section, radius_only, monkeypatch):
    monkeypatch.setattr(smoothing, "SLAB_VOXELS", 3 * 400 * 400)  # slabs of 3 slices
    lazy = section.scan.with_data(da.from_array(section.scan.numpy(), chunks=(2, 200, 400)))
    masks = contour(lazy)
    for name in COMPARTMENTS:
        assert np.array_equal(masks[name].numpy(), radius_only[name].numpy())


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"metadata": {}}, "no density calibration"),
        ({"metadata": {**SCANCO_CALIBRATION, "calibration_unit": "HU"}}, "'HU'"),
        ({"voxel_size": None}, "voxel size"),
    ],
)
def test_unusable_scans_refused(section, change, words):
    scan = dataclasses.replace(section.scan, **change)
    with pytest.raises(InputError, match=words) as info:
        contour(scan)
    assert "\n" not in str(info.value)


def test_bad_values_and_types_refused(section):
    data = section.scan.numpy()[:2].astype(np.float32)
    data[1, 5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        contour(section.scan.with_data(data))
    lazy = section.scan.with_data(da.from_array(data, chunks=(1, 400, 400)))
    with pytest.raises(InputError, match="NaN"):
        contour(lazy)
    with pytest.raises(InputError, match="Volume"):
        contour(section.scan.numpy())  # type: ignore[arg-type]
    empty = section.scan.with_data(np.zeros((2, 64, 64), np.int16))  # air only
    with pytest.raises(InputError, match="no bone"):
        contour(empty)


@pytest.mark.parametrize(
    "params",
    [
        {"peri_sigma": -1.0},
        {"peri_close": 1000},
        {"bones": "ulna"},
        {"units": "HU"},
        {"peri_low": 400.0, "peri_high": 300.0},
        {"min_bone_fraction": 0.0},
        {"endo_threshold": float("nan")},
        {"no_such_parameter": 1},
    ],
)
def test_params_validated(params):
    with pytest.raises(ValidationError):
        get_registry().create("contour", "dual-threshold", params)


def test_registered_with_documented_defaults():
    registry = get_registry()
    assert "dual-threshold" in registry.names("contour")
    assert registry.get("contour", "dual-threshold") is DualThreshold
    assert DualThreshold in BUILTIN_CONTOURINGS
    entry = registry.entry("contour", "dual-threshold")
    assert entry.description and "\n" not in entry.description
    strategy = registry.create("contour", "dual-threshold", {"bones": "all"}, peri_close=12)
    assert strategy.params.bones == "all" and strategy.params.peri_close == 12
    for name, field in DualThreshold.Params.model_fields.items():
        assert field.description and "[" in field.description, name  # the source, in brackets


def test_morphology_disks_and_fills():
    point = np.zeros((21, 21), bool)
    point[10, 10] = True
    disk = mo.dilate(point, 5)
    yy, xx = np.mgrid[:21, :21]
    assert np.array_equal(disk, (yy - 10) ** 2 + (xx - 10) ** 2 <= 25)
    assert np.array_equal(mo.erode(disk, 5), point)
    ring = disk & ~mo.dilate(point, 3)
    assert np.array_equal(mo.fill_enclosed(ring), disk)
    open_ring = ring.copy()
    open_ring[10, 14:] = False  # a gap: the inside reaches the outside
    assert not mo.fill_enclosed(open_ring)[10, 10]
    assert mo.close_filling(open_ring, 2)[10, 10]
    two = disk.copy()
    two[0, 0] = True
    assert np.array_equal(mo.keep_largest(two), disk)
    assert not mo.keep_large(two, 2)[0, 0]


def test_a_bone_near_the_scans_side_is_contoured_as_in_a_wider_field() -> None:
    # the default radius and ulna fill 448² voxels to within a few voxels of the sides,
    # closer than the closings' radius (50): the crops are padded with background
    section = radius_section((2, 448, 448), seed=1)
    scan = section.scan
    wide = scan.with_data(np.pad(scan.numpy(), ((0, 0), (80, 80), (80, 80))))  # native 0: air
    near, far = contour(scan), contour(wide)
    for name in COMPARTMENTS:
        np.testing.assert_array_equal(near[name].numpy(), far[name].numpy()[:, 80:-80, 80:-80])
    truth = (section.trabecular.numpy() != 0) & (section.bones.numpy() == 1)
    assert dice(near["trabecular"].numpy(), truth) >= 0.98  # 0.96 before the padding
