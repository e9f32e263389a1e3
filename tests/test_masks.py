"""Masks as volumes with a scan's geometry: geometry decides, not shapes; GOBJ, AIM, NIfTI."""

from __future__ import annotations

import struct

import dask.array as da
import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.masks import mask_on_grid, read_mask
from boneframe.volume import Volume

ZYX = np.eye(3)[:, ::-1]  # Scanco's (z, y, x) arrays


@pytest.fixture
def lr_mask(rng) -> Volume:
    data = (rng.random((5, 6, 7)) > 0.5).astype(np.uint8)
    return Volume(data, voxel_size=82.0, origin=(410.0, 164.0, 82.0), direction=ZYX)


def repeat(mask: np.ndarray, p: int) -> np.ndarray:
    """SR voxel j in LR voxel floor(j / p): the HR-pQCT mask, each voxel p times per axis."""
    return mask.repeat(p, 0).repeat(p, 1).repeat(p, 2) != 0


def test_a_scan_mask_applies_to_its_super_resolution(lr_mask):
    from boneframe.superres import upsample_spline

    lr = lr_mask.with_data(lr_mask.data.astype(np.float32))
    sr = upsample_spline(lr, 3)  # boneframe's own fine grid: voxel size / 3, the same origin
    assert sr.shape == (15, 18, 21)
    on = mask_on_grid(lr_mask, sr)
    assert on.dtype == bool and np.array_equal(on, repeat(lr_mask.data, 3))
    lazy = sr.with_data(da.from_array(sr.data, chunks=(4, 7, 8)))
    on_lazy = mask_on_grid(lr_mask, lazy)  # lazy, in the volume's chunks
    assert on_lazy.chunks == lazy.data.chunks and np.array_equal(on_lazy.compute(), on)
    lazy_mask = lr_mask.with_data(da.from_array(lr_mask.data, chunks=2))
    assert np.array_equal(mask_on_grid(lazy_mask, lazy).compute(), on)


def test_same_grid_is_the_identity_and_a_finer_mask_is_sampled(lr_mask):
    same = lr_mask.with_data(np.zeros(lr_mask.shape), origin=np.add(lr_mask.origin, 1e-9))
    assert np.array_equal(mask_on_grid(lr_mask, same), lr_mask.data != 0)
    fine = Volume(repeat(lr_mask.data, 2), voxel_size=41.0, origin=lr_mask.origin, direction=ZYX)
    assert np.array_equal(mask_on_grid(fine, lr_mask), lr_mask.data != 0)  # coarse i <- fine 2i


def test_a_cropped_mask_sits_where_its_origin_says(lr_mask):
    scan = Volume(np.zeros((9, 10, 11)), voxel_size=82.0, origin=(82.0, 0.0, 0.0), direction=ZYX)
    # world = origin + direction @ (index * 82): the mask's voxel 0 is scan voxel (1, 2, 4)
    on = mask_on_grid(lr_mask, scan, outside="empty")
    expected = np.zeros(scan.shape, bool)
    expected[1:6, 2:8, 4:11] = lr_mask.data != 0
    assert np.array_equal(on, expected)
    with pytest.raises(InputError, match="does not cover"):
        mask_on_grid(lr_mask, scan)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"direction": np.eye(3)}, "directions differ"),
        ({"voxel_size": (61.5, 61.5, 61.5)}, "integer ratio"),
        ({"origin": (0.0, 0.0, 0.0)}, "does not cover"),
    ],
)
def test_a_mask_of_another_geometry_is_refused_with_both_geometries(lr_mask, change, why):
    target = lr_mask.with_data(np.zeros(lr_mask.shape), **change)
    with pytest.raises(InputError, match=why) as err:
        mask_on_grid(lr_mask, target)
    message = str(err.value)
    assert message.count("shape (5, 6, 7)") == 2 and "Mask:" in message and "Volume:" in message


def test_without_a_voxel_size_only_the_shape_can_decide():
    mask = Volume(np.ones((2, 3, 4), np.uint8))
    assert mask_on_grid(mask, Volume(np.zeros((2, 3, 4)), voxel_size=50.0)).all()
    with pytest.raises(InputError, match="voxel size is unknown"):
        mask_on_grid(mask, Volume(np.zeros((4, 6, 8)), voxel_size=50.0))


def test_read_mask_from_nifti_and_aim_onto_another_grid(tmp_path, lr_mask):
    pytest.importorskip("py_aimio")
    from boneframe.io import write_volume

    sr = Volume(np.zeros((10, 12, 14)), voxel_size=41.0, origin=lr_mask.origin, direction=ZYX)
    for name, data in [("m.nii.gz", lr_mask.data), ("m_TRAB_MASK.aim", lr_mask.data * 127)]:
        path = write_volume(lr_mask.with_data(data.astype(np.uint8)), tmp_path / name)
        mask = read_mask(path)
        assert mask.dtype == bool and mask.voxel_size == pytest.approx((82.0,) * 3)
        on = read_mask(path, like=sr)
        assert on.shape == sr.shape and on.voxel_size == sr.voxel_size
        assert np.array_equal(on.data, repeat(lr_mask.data, 2)), name


def write_gobj(path, dims_xyz, voxel_um, slices) -> None:
    """A Scanco GOBJ: CTDATA header, then per slice a slice record and one primitive
    (shape 4 rectangle, 6 ellipse) centred at (cx, cy), width x height voxels."""
    header = bytearray(512)
    header[:16] = b"CTDATA-HEADER_V1"
    struct.pack_into("<i", header, 16, 6)  # data type: GOBJ
    struct.pack_into("<3i", header, 32, *dims_xyz)
    struct.pack_into("<3i", header, 44, *(round(n * voxel_um) for n in dims_xyz))
    body = bytearray()
    for z, shape, cx, cy, w, h in slices:
        body += struct.pack("<13i", 1, cx, cy, z, w, h, 0, 3, 20, 0, 0, 16512, 16512)
        body += struct.pack("<10i", 0, shape, cx, cy, z, w, h, 0, 3, 0)
    path.write_bytes(bytes(header) + bytes(body) + bytes(64))


def test_a_gobj_contour_is_filled_on_the_scans_grid(tmp_path):
    pytest.importorskip("py_aimio")
    path = tmp_path / "C0001234.GOBJ"
    rect, ellipse = 4, 6
    write_gobj(path, (80, 60, 10), 82.0, [(3, rect, 50, 40, 11, 7), (4, rect, 50, 40, 11, 7),
                                         (5, ellipse, 30, 30, 21, 21)])  # fmt: skip
    scan = Volume(np.zeros((10, 60, 80), np.int16), voxel_size=82.0, direction=ZYX)
    mask = read_mask(path, like=scan)  # outside the contours' box: outside the mask
    assert mask.shape == scan.shape and mask.origin == scan.origin
    expected = np.zeros(scan.shape, bool)
    expected[3:5, 37:44, 45:56] = True  # x 50 - 5 .. 50 + 5, y 40 - 3 .. 40 + 3
    assert np.array_equal(mask.data[:5], expected[:5])
    disc = mask.data[5]
    assert disc[30, 30] and not disc[30, 45] and abs(disc.sum() - np.pi * 10.5**2) < 40
    assert not mask.data[6:].any() and not mask.data[:3].any()
    alone = read_mask(path)  # the contours' box, in the scan's frame
    # x 20..55, y 20..43 (the disc's box and the rectangle's), z 3..5; origin (x, y, z) in µm
    assert alone.shape == (3, 24, 36) and alone.origin == pytest.approx((20 * 82, 20 * 82, 246))
    # a mask on the scan's grid applies to its super-resolution too
    sr = Volume(np.zeros((20, 120, 160)), voxel_size=41.0, direction=ZYX)
    assert np.array_equal(read_mask(path, like=sr).data, repeat(mask.data, 2))


def test_region_on_places_a_mask_or_checks_an_arrays_shape() -> None:
    # one rule for segmentations, the evaluation and the masked super-resolution
    from boneframe.evaluation import evaluate
    from boneframe.masks import region_on
    from boneframe.segmentation.region import restrict

    vol = Volume(np.zeros((2, 4, 6)), voxel_size=(80.0,) * 3)
    arr = np.zeros((2, 4, 6), np.uint8)
    arr[0, 1, 2] = 3
    on = region_on(arr, vol)
    assert on.dtype == bool and int(on.sum()) == 1
    assert region_on(arr, (2, 4, 6)).shape == (2, 4, 6)
    fine = Volume(np.zeros((4, 8, 12)), voxel_size=(40.0,) * 3)
    assert int(region_on(Volume(arr, voxel_size=(80.0,) * 3), fine).sum()) == 8  # by geometry
    with pytest.raises(InputError, match=r"the mask has shape \(2, 4, 5\), the volume"):
        restrict(np.ones((2, 4, 6), bool), vol, arr[:, :, :5])
    with pytest.raises(InputError, match="the trabecular mask has shape .*, the scan"):
        calibrated = vol.with_data(vol.data, metadata={"calibration_slope": 1.0,
                                                       "calibration_intercept": 0.0})
        evaluate(calibrated, {"trabecular": arr[:, :, :5], "cortical": arr})
