"""Volume I/O: round trips for every format, geometry, bad files, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import VolumeIOError
from boneframe.io import read_volume, sidecar_path, write_volume
from boneframe.io.atomic import atomic_path
from boneframe.volume import Volume

EXTENSIONS = [".npy", ".zarr", ".tif", ".tiff", ".nii", ".nii.gz"]
DTYPES = ["float32", "float64", "int16", "uint16", "uint8"]


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, rng, ext, dtype):
    data = (rng.random((7, 6, 5)) * 200).astype(dtype)
    vol = Volume(data, voxel_size=(41.0, 41.5, 82.0), origin=(10.0, -5.0, 2.5))
    path = write_volume(vol, tmp_path / f"v{ext}")
    back = read_volume(path)
    assert back.dtype == data.dtype
    assert np.array_equal(back.numpy(), data)
    assert np.allclose(back.voxel_size, vol.voxel_size, rtol=1e-6)
    assert np.allclose(back.origin, vol.origin, rtol=1e-6, atol=1e-4)


def test_zarr_is_lazy_and_carries_ome_metadata(tmp_path, rng):
    import zarr

    vol = Volume(rng.random((10, 8, 6)).astype("f4"), voxel_size=(41, 41, 41))
    write_volume(vol, tmp_path / "v.zarr")
    back = read_volume(tmp_path / "v.zarr")
    assert back.is_lazy
    ome = dict(zarr.open_group(str(tmp_path / "v.zarr"), mode="r").attrs)["ome"]
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert scale == {"type": "scale", "scale": [41.0, 41.0, 41.0]}


def test_plain_zarr_array_reads_without_voxel_size(tmp_path, rng):
    import zarr

    data = rng.random((4, 5, 6))
    arr = zarr.create_array(str(tmp_path / "plain.zarr"), shape=data.shape, dtype="f8")
    arr[...] = data
    back = read_volume(tmp_path / "plain.zarr")
    assert back.voxel_size is None
    assert np.array_equal(back.numpy(), data)
    assert read_volume(tmp_path / "plain.zarr", voxel_size=20).voxel_size == (20.0, 20.0, 20.0)


def test_imagej_tiff_voxel_size(tmp_path, rng):
    import tifffile

    data = rng.random((5, 6, 7)).astype("f4")
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.041, 1 / 0.041),
        metadata={"spacing": 0.082, "unit": "mm", "axes": "ZYX"},
    )
    back = read_volume(tmp_path / "ij.tif")
    assert np.allclose(back.voxel_size, (82.0, 41.0, 41.0), rtol=1e-5)


def test_nifti_header_voxel_size(tmp_path, rng):
    import nibabel

    img = nibabel.Nifti1Image(rng.random((4, 5, 6)).astype("f4"), np.diag([0.041, 0.041, 0.082, 1]))
    nibabel.save(img, tmp_path / "a.nii.gz")
    assert np.allclose(read_volume(tmp_path / "a.nii.gz").voxel_size, (41, 41, 82), rtol=1e-5)


@pytest.mark.parametrize("name", ["bad.npy", "bad.tif", "bad.nii.gz", "bad.nii"])
def test_corrupt_file_gives_one_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a volume at all" * 10)
    with pytest.raises(VolumeIOError, match=r"cannot read .*" + name.replace(".", r"\.")) as err:
        read_volume(path)
    assert "\n" not in str(err.value)


def test_truncated_npy(tmp_path, rng):
    np.save(tmp_path / "t.npy", rng.random((10, 10, 10)))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeIOError, match="cannot read"):
        read_volume(tmp_path / "t.npy")


def test_missing_unknown_and_not_3d(tmp_path, rng):
    with pytest.raises(VolumeIOError, match="no such file"):
        read_volume(tmp_path / "missing.npy")
    with pytest.raises(VolumeIOError, match="unknown volume format"):
        read_volume(tmp_path / "x.png")
    np.save(tmp_path / "flat.npy", rng.random((4, 4)))
    with pytest.raises(VolumeIOError, match="3D"):
        read_volume(tmp_path / "flat.npy")


def test_existing_output_is_refused_and_kept(tmp_path, rng):
    a = Volume(rng.random((4, 4, 4)), voxel_size=1)
    write_volume(a, tmp_path / "a.npy")
    with pytest.raises(VolumeIOError, match="already exists"):
        write_volume(Volume(np.zeros((4, 4, 4))), tmp_path / "a.npy")
    assert np.array_equal(read_volume(tmp_path / "a.npy").numpy(), a.data)
    write_volume(Volume(np.zeros((4, 4, 4)), voxel_size=2), tmp_path / "a.npy", overwrite=True)
    back = read_volume(tmp_path / "a.npy")
    assert back.numpy().sum() == 0 and back.voxel_size == (2.0, 2.0, 2.0)
    assert sidecar_path(tmp_path / "a.npy").name == "a.json"


def test_failed_write_leaves_nothing_and_keeps_old(tmp_path):
    target = tmp_path / "out.zarr"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "partial").write_text("half")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
    assert (target / "keep").read_text() == "old"


def test_dask_volume_streams_to_zarr(tmp_path, rng):
    import dask.array as da

    data = rng.random((16, 16, 16)).astype("f4")
    vol = Volume(da.from_array(data, chunks=8), voxel_size=41)
    write_volume(vol, tmp_path / "d.zarr")
    back = read_volume(tmp_path / "d.zarr")
    assert back.data.chunksize == (8, 8, 8)
    assert np.array_equal(back.numpy(), data)
