"""Calibrated density: a scan's values in mg HA/cm³, in memory, lazily, through an AIM."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from boneframe.calibration import (
    DENSITY_UNIT,
    calibration,
    from_density,
    is_calibrated,
    to_density,
)
from boneframe.errors import InputError
from boneframe.volume import Volume

SLOPE, INTERCEPT = 0.4883, -391.2  # a Scanco-like map of int16 values to mg HA/cm³


def scan(data: np.ndarray | None = None) -> Volume:
    values = np.arange(-20, 40, dtype=np.int16).reshape(3, 4, 5) * 100 if data is None else data
    meta = {"calibration_slope": SLOPE, "calibration_intercept": INTERCEPT, "site": "radius"}
    return Volume(values, voxel_size=82.0, origin=(1.0, 2.0, 3.0), metadata=meta)


def test_calibration_is_read_from_the_metadata():
    assert calibration(scan()) == (SLOPE, INTERCEPT) and is_calibrated(scan())
    plain = Volume(np.zeros((2, 2, 2)), voxel_size=82.0)
    assert calibration(plain) is None and not is_calibrated(plain)
    cases = [("a", 0, "not numeric"), (0.0, 1.0, "unusable"), (np.inf, 0.0, "unusable")]
    for slope, intercept, message in cases:
        meta = {"calibration_slope": slope, "calibration_intercept": intercept}
        bad = plain.with_data(plain.data, metadata=meta)
        with pytest.raises(InputError, match=message):
            calibration(bad)


def test_to_density_maps_every_voxel_and_keeps_the_geometry():
    s = scan()
    d = to_density(s)
    expected = s.data.astype(np.float64) * SLOPE + INTERCEPT
    assert d.dtype == np.float32 and d.shape == s.shape
    np.testing.assert_allclose(d.data, expected, rtol=1e-6, atol=1e-3)
    assert d.voxel_size == s.voxel_size and d.origin == s.origin
    assert np.array_equal(d.direction, s.direction) and d.metadata["site"] == "radius"
    assert calibration(d) == (1.0, 0.0) and d.metadata["calibration_unit"] == DENSITY_UNIT
    assert np.array_equal(to_density(d).data, d.data)  # converting twice changes nothing
    back = from_density(d.data, s)
    np.testing.assert_allclose(back, s.data, atol=2e-2)


def test_to_density_is_lazy_on_a_dask_volume():
    s = scan()
    lazy = s.with_data(da.from_array(s.data, chunks=2))
    d = to_density(lazy)
    assert d.is_lazy and d.data.chunks == lazy.data.chunks
    assert np.array_equal(np.asarray(d.data), to_density(s).data)


def test_an_uncalibrated_volume_is_refused_with_a_reason():
    plain = Volume(np.zeros((2, 2, 2)), voxel_size=82.0)
    with pytest.raises(InputError, match="no density calibration"):
        to_density(plain)
    with pytest.raises(InputError, match="no density calibration"):
        from_density(np.zeros(3), plain)


def test_a_calibrated_aim_reads_back_in_mg_ha_per_cm3(tmp_path):
    pytest.importorskip("py_aimio")
    from boneframe.io import read_volume, write_volume

    s = scan()
    path = write_volume(s.with_data(s.data, direction=np.eye(3)[:, ::-1]), tmp_path / "c.aim")
    back = read_volume(path)
    assert calibration(back) == pytest.approx((SLOPE, INTERCEPT), rel=1e-6)
    np.testing.assert_allclose(to_density(back).data, to_density(s).data, rtol=1e-5, atol=0.01)


@pytest.mark.parametrize("ext", ["npy", "zarr", "nii.gz", "tif"])
def test_every_format_keeps_a_scans_calibration(tmp_path, ext) -> None:
    # a calibrated AIM converted to another format stays calibrated (npy, NIfTI and
    # TIFF keep it in the sidecar, zarr in its attributes)
    from boneframe.io import read_volume, write_volume

    meta = {"calibration_slope": 0.19574, "calibration_intercept": -391.2,
            "calibration_unit": "mg HA/ccm", "mu_scaling": 8192.0, "site": "radius"}  # fmt: skip
    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), voxel_size=82.0, metadata=meta)
    back = read_volume(write_volume(vol, tmp_path / f"scan.{ext}"))
    for key in ("calibration_slope", "calibration_intercept", "calibration_unit", "mu_scaling"):
        assert back.metadata[key] == meta[key], key
    np.testing.assert_array_equal(to_density(back).numpy(), to_density(vol).numpy())
