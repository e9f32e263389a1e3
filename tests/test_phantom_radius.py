"""The synthetic distal radius: truth, calibration and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from boneframe.calibration import from_density, to_density
from boneframe.errors import InputError
from boneframe.phantom_radius import DENSITY, SCANCO_CALIBRATION, radius_section


def _shell_thickness(section) -> np.ndarray:
    """Cortical thickness (mm) at each endosteal-surface voxel: its distance to the
    nearest voxel outside the bone."""
    peri = section.periosteal.numpy()[0].astype(bool)
    trab = section.trabecular.numpy()[0].astype(bool)
    surface = trab & ~ndimage.binary_erosion(trab)
    vox = section.scan.voxel_size[1] / 1000.0
    return ndimage.distance_transform_edt(peri)[surface] * vox


@pytest.mark.parametrize("thickness", [(0.45, 1.2), (0.2, 0.45)])
def test_cortex_thickness_spans_the_asked_range(thickness):
    lo, hi = thickness
    vox = 0.03  # fine voxels: the thickness is measured to a voxel
    section = radius_section(
        (1, 640, 640), vox * 1000, radius_width=8.0, ulna=False, cortical_thickness=thickness
    )
    t = _shell_thickness(section)
    assert t.min() >= lo - 1.5 * vox and t.max() <= hi + 1.5 * vox
    assert np.percentile(t, 2) <= lo + 2 * vox  # the thinnest part is there...
    assert np.percentile(t, 98) >= hi - 2 * vox  # ...and the thickest


def test_truth_is_a_partition_with_two_bones():
    section = radius_section((2, 200, 200), 164.0, radius_width=16.0)
    peri, trab, cort = (
        v.numpy() for v in (section.periosteal, section.trabecular, section.cortical)
    )
    assert peri.dtype == trab.dtype == cort.dtype == np.uint8
    assert not (trab & cort).any() and np.array_equal(trab | cort, peri)
    labels = section.bones.numpy()
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels > 0, peri > 0)
    assert (labels == 1).sum() > 2 * (labels == 2).sum()  # the radius is the larger bone
    no_ulna = radius_section((2, 200, 200), 164.0, radius_width=16.0, ulna=False)
    assert set(np.unique(no_ulna.bones.numpy())) == {0, 1}


def test_calibration_round_trip():
    section = radius_section(
        (2, 200, 200), 164.0, radius_width=16.0, noise=0.0, blur=0.0, porosity=0.0
    )
    scan = section.scan
    assert scan.dtype == np.int16
    for key in ("calibration_slope", "calibration_intercept", "calibration_unit", "mu_scaling"):
        assert scan.metadata[key] == SCANCO_CALIBRATION[key]
    density = to_density(scan).numpy()
    np.testing.assert_array_equal(density, section.density())
    step = SCANCO_CALIBRATION["calibration_slope"]  # one native unit, mg HA/cm³
    cortex = ndimage.binary_erosion(
        section.cortical.numpy().astype(bool), np.ones((1, 3, 3)), iterations=2
    )
    assert cortex.sum() > 100
    assert np.abs(density[cortex] - DENSITY["cortical_tissue"]).max() <= step
    tissue = (section.bones.numpy() == 0) & (np.abs(density - DENSITY["soft_tissue"]) < 5)
    assert tissue.sum() > 1000  # the forearm's soft tissue is there, at its density
    native = from_density(density, scan)
    np.testing.assert_allclose(native, scan.numpy(), atol=0.01)


def test_noise_and_blur():
    sharp = radius_section((2, 160, 160), 164.0, radius_width=12.0, noise=0.0)
    noisy = radius_section((2, 160, 160), 164.0, radius_width=12.0, noise=80.0)
    residual = noisy.density() - sharp.density()
    assert 70 < residual.std() < 90
    blurred = radius_section((2, 160, 160), 164.0, radius_width=12.0, noise=0.0, blur=300.0)
    assert (
        np.abs(np.diff(blurred.density(), axis=2)).max()
        < np.abs(np.diff(sharp.density(), axis=2)).max()
    )


def test_deterministic_with_seed():
    a = radius_section((2, 128, 128), 164.0, seed=5, radius_width=12.0)
    b = radius_section((2, 128, 128), 164.0, seed=5, radius_width=12.0)
    c = radius_section((2, 128, 128), 164.0, seed=6, radius_width=12.0)
    assert np.array_equal(a.scan.numpy(), b.scan.numpy())
    assert np.array_equal(a.periosteal.numpy(), b.periosteal.numpy())
    assert not np.array_equal(a.scan.numpy(), c.scan.numpy())
    assert a.params["seed"] == 5 and a.scan.voxel_size == (164.0,) * 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (2, 4, 64)},
        {"voxel_size": -1.0},
        {"radius_width": 60.0},
        {"noise": -1.0},
        {"porosity": 0.6},
        {"cortical_thickness": (1.0, 0.5)},
        {"bv_tv": 0.9},
        {"seed": -1},
        {"radius_width": 5.0},  # a 1.2 mm cortex fills bones this small
    ],
)
def test_bad_parameters_refused(kwargs):
    args = {"shape": (2, 64, 64), "voxel_size": 164.0, **kwargs}
    with pytest.raises(InputError):
        radius_section(**args)


def test_a_field_too_small_for_the_bones_is_refused() -> None:
    # 400² voxels of 82 µm cut the default radius and ulna at the image's edge
    with pytest.raises(InputError, match="do not fit"):
        radius_section((1, 400, 400))
    assert radius_section((1, 400, 400), ulna=False, radius_width=16.0).scan.shape == (1, 400, 400)
