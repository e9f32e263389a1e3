"""DICOM series: a synthetic CT series written with pydicom read back (order,
geometry, calibration, laziness), round trips through the writer, bad series and
files, the CLI, and the error when pydicom is missing."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from boneframe.errors import VolumeIOError
from boneframe.io.dicom_format import DicomSeriesFormat, is_dicom_folder
from boneframe.volume import Volume

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.fixture
def pydicom():
    return pytest.importorskip("pydicom")


@pytest.fixture
def registered(monkeypatch):
    """The DICOM format in the plugin registry (whether or not built in yet)."""
    import boneframe.io as bio
    from boneframe.registry import get_registry

    if DicomSeriesFormat not in bio.BUILTIN_FORMATS:
        monkeypatch.setattr(bio, "BUILTIN_FORMATS", [*bio.BUILTIN_FORMATS, DicomSeriesFormat])
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


def write_ct_series(
    folder,
    data,
    *,
    pixel_spacing=(0.041, 0.0415),
    slice_gap=0.082,
    thickness=0.1,
    first=(-5.0, 12.5, 30.0),
    orientation=AXIAL,
    rescale=(0.5, -1024.0),
    series_uid="1.2.826.0.1.3680043.8.498.1",
    names=None,
    skip=(),
    numbered=True,
):
    """A CT series, one file per slice, written with pydicom alone.

    Slice ``k`` sits at ``first + k * slice_gap * normal``; files are named by
    ``names[k]`` (default: in reverse order, so that the reader must sort).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(exist_ok=True)
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    n = data.shape[0]
    names = names or [f"IM{n - k:04d}" for k in range(n)]
    for k in range(n):
        if k in skip:
            continue
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = f"{series_uid}.{k + 1}"
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7"
        ds.Modality = "CT"
        ds.Manufacturer = "SCANCO Medical AG"
        ds.ManufacturerModelName = "XtremeCT II"
        ds.PatientName = "Doe^Jane"
        ds.KVP = "68"
        if numbered:
            ds.InstanceNumber = k + 1
        ds.PixelSpacing = [str(v) for v in pixel_spacing]
        ds.SliceThickness = str(thickness)  # deliberately not the gap: positions win
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in orientation]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(first) + k * slice_gap * normal]
        slope, intercept = rescale(k) if callable(rescale) else rescale
        ds.RescaleSlope = str(slope)
        ds.RescaleIntercept = str(intercept)
        ds.set_pixel_data(np.ascontiguousarray(data[k]), "MONOCHROME2", 16)
        ds.save_as(folder / names[k], enforce_file_format=True)
    return folder


@pytest.fixture
def ct(rng):
    return rng.integers(0, 4000, (5, 6, 7)).astype(np.int16)


# --------------------------------------------------------------------------- reading
def test_ct_series_reads_sorted_with_geometry_and_calibration(tmp_path, ct, pydicom, registered):
    from boneframe.io import read_volume

    folder = write_ct_series(tmp_path / "ct.dcm", ct)
    (folder / "README.txt").write_text("not DICOM: skipped")
    vol = read_volume(folder)
    assert vol.is_lazy and vol.dtype == np.int16
    assert np.array_equal(vol.numpy(), ct)  # files named in reverse, read by position
    # slice gap from the positions (82 µm), not SliceThickness (100 µm)
    assert vol.voxel_size == pytest.approx((82.0, 41.0, 41.5))
    assert vol.origin == pytest.approx((-5000.0, 12500.0, 30000.0))
    # axial: array axis 0 along z, axis 1 (rows) along y, axis 2 (columns) along x
    assert np.allclose(vol.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    md = vol.metadata
    assert (md["calibration_slope"], md["calibration_intercept"]) == (0.5, -1024.0)
    assert md["calibration_unit"] == "HU"  # CT without RescaleType
    assert md["scanner"] == "SCANCO Medical AG XtremeCT II"
    assert md["slices"] == 5 and md["energy_kv"] == 68.0
    assert "Doe" not in json.dumps(md)


def test_slices_are_sorted_by_position_alone(tmp_path, ct, pydicom):
    names = [f"x{i}" for i in (2, 0, 4, 1, 3)]  # file names in no order, no instance numbers
    write_ct_series(tmp_path / "shuffled", ct, names=names, numbered=False)
    vol = DicomSeriesFormat().read(tmp_path / "shuffled")
    assert np.array_equal(vol.numpy(), ct)
    assert vol.origin == pytest.approx((-5000.0, 12500.0, 30000.0))


def test_series_without_positions_is_stacked_by_instance_number(tmp_path, ct, pydicom):
    folder = write_ct_series(tmp_path / "sc", ct, names=[f"x{i}" for i in (2, 0, 4, 1, 3)])
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.SpacingBetweenSlices = "0.09"
        ds.save_as(path)
    vol = DicomSeriesFormat().read(folder)
    assert np.array_equal(vol.numpy(), ct)
    assert vol.voxel_size == pytest.approx((90.0, 41.0, 41.5))
    assert np.array_equal(vol.direction, np.eye(3)[:, ::-1])
    assert vol.origin == (0.0, 0.0, 0.0)


def test_one_file_selects_its_series(tmp_path, ct, pydicom, registered):
    from boneframe.io import read_volume

    folder = write_ct_series(tmp_path / "study", ct, names=[f"a{k}.dcm" for k in range(5)])
    other = np.zeros((3, 6, 7), np.int16)
    write_ct_series(folder, other, series_uid="1.2.3.9", names=["b1.dcm", "b2.dcm", "b3.dcm"])
    with pytest.raises(VolumeIOError, match="2 DICOM series"):
        DicomSeriesFormat().read(folder)
    assert np.array_equal(read_volume(folder / "a2.dcm").numpy(), ct)
    assert read_volume(folder / "b2.dcm").shape == (3, 6, 7)


def test_oblique_series_maps_indices_to_patient_positions(tmp_path, ct, pydicom):
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (c, s, 0.0, -s, c, 0.0)
    first = np.array([1.0, 2.0, 3.0])
    write_ct_series(tmp_path / "obl", ct, orientation=orientation, first=first)
    vol = DicomSeriesFormat().read(tmp_path / "obl")
    row, col = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    for k, r, q in [(0, 0, 0), (4, 0, 0), (2, 5, 0), (1, 3, 6)]:
        expected = first + k * 0.082 * np.cross(row, col) + r * 0.041 * col + q * 0.0415 * row
        assert vol.index_to_world((k, r, q)) == pytest.approx(expected * 1000, abs=1e-3)


def test_differing_rescales_are_applied_per_slice(tmp_path, ct, pydicom):
    write_ct_series(tmp_path / "r", ct, rescale=lambda k: (1.0 + k, -10.0 * k))
    vol = DicomSeriesFormat().read(tmp_path / "r")
    assert vol.dtype == np.float32
    expected = np.stack([ct[k] * (1.0 + k) - 10.0 * k for k in range(ct.shape[0])])
    assert np.allclose(vol.numpy(), expected)
    assert (vol.metadata["calibration_slope"], vol.metadata["calibration_intercept"]) == (1, 0)


def test_series_is_read_in_slabs(tmp_path, pydicom):
    data = np.arange(70 * 2 * 3, dtype=np.int16).reshape(70, 2, 3)
    write_ct_series(tmp_path / "long", data, names=[f"s{k:03d}" for k in range(70)])
    vol = DicomSeriesFormat().read(tmp_path / "long")
    assert vol.data.chunks[0] == (64, 6)
    assert np.array_equal(vol.data[62:67].compute(), data[62:67])


# --------------------------------------------------------------------------- writing
@pytest.mark.parametrize(
    ("dtype", "stored"), [("int16", "int16"), ("uint16", "uint16"), ("bool", "int16")]
)
def test_round_trip(tmp_path, rng, pydicom, registered, dtype, stored):
    from boneframe.io import read_volume, write_volume

    data = rng.integers(0, 3000, (4, 5, 6))
    data = (data > 1500) if dtype == "bool" else data.astype(dtype)
    vol = Volume(
        data,
        voxel_size=(82.0, 41.0, 41.5),
        origin=(100.0, -250.0, 3000.0),
        direction=np.eye(3)[:, ::-1],
        metadata={"calibration_slope": 0.25, "calibration_intercept": -391.2},
    )
    write_volume(vol, tmp_path / "out.dcm")
    assert is_dicom_folder(tmp_path / "out.dcm")
    back = read_volume(tmp_path / "out.dcm")
    assert back.dtype == np.dtype(stored)
    assert np.array_equal(back.numpy(), data.astype(stored))
    assert back.voxel_size == pytest.approx(vol.voxel_size)
    assert back.origin == pytest.approx(vol.origin)
    assert np.allclose(back.direction, vol.direction)
    assert back.metadata["calibration_slope"] == 0.25
    assert back.metadata["calibration_intercept"] == -391.2


def test_round_trip_keeps_a_left_handed_axis_order(tmp_path, rng, pydicom):
    # identity direction: axis 0 along x; the normal row x column points the other way
    vol = Volume(
        rng.integers(0, 100, (4, 3, 2)).astype(np.int16),
        voxel_size=(50.0, 40.0, 30.0),
        direction=np.eye(3),
    )
    DicomSeriesFormat().write(vol, tmp_path / "id.dcm")
    back = DicomSeriesFormat().read(tmp_path / "id.dcm")
    assert np.array_equal(back.numpy(), vol.data)
    assert np.allclose(back.direction, np.eye(3))
    assert back.voxel_size == pytest.approx(vol.voxel_size)


def test_lazy_volume_is_written_slab_by_slab(tmp_path, pydicom):
    import dask.array as da

    data = np.arange(70 * 2 * 3, dtype=np.int16).reshape(70, 2, 3)
    vol = Volume(da.from_array(data, chunks=(8, 2, 3)), voxel_size=82.0)
    DicomSeriesFormat().write(vol, tmp_path / "lazy.dcm")
    assert len(list((tmp_path / "lazy.dcm").iterdir())) == 70
    assert np.array_equal(DicomSeriesFormat().read(tmp_path / "lazy.dcm").numpy(), data)


def test_write_refuses_floats_and_wide_integers(tmp_path, pydicom):
    fmt = DicomSeriesFormat()
    with pytest.raises(VolumeIOError, match="integers"):
        fmt.write(Volume(np.zeros((2, 2, 2), np.float32), voxel_size=1.0), tmp_path / "f.dcm")
    with pytest.raises(VolumeIOError, match="16 bits"):
        fmt.write(Volume(np.full((2, 2, 2), 70000), voxel_size=1.0), tmp_path / "w.dcm")


# --------------------------------------------------------------------------- bad input
def test_bad_series_and_files_give_one_clear_error(tmp_path, rng, ct, pydicom, registered):
    from boneframe.io import read_volume

    cases = {}
    cases["missing_slice.dcm"] = (
        write_ct_series(tmp_path / "missing_slice.dcm", ct, skip=(2,)),
        "unevenly",
    )
    empty = tmp_path / "empty.dcm"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    cases["empty.dcm"] = (empty, "no DICOM image files")
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"this is not a DICOM file" * 20)
    cases["garbage.dcm"] = (garbage, "not a DICOM image file")
    numpy_file = tmp_path / "numpy.dcm"
    with open(numpy_file, "wb") as fh:
        np.save(fh, ct)
    cases["numpy.dcm"] = (numpy_file, "not a DICOM image file")
    cut = write_ct_series(tmp_path / "cut.dcm", ct)
    raw = (cut / "IM0003").read_bytes()
    (cut / "IM0003").write_bytes(raw[:-20])
    cases["cut.dcm"] = (cut, "truncated")
    same = write_ct_series(tmp_path / "same.dcm", ct, slice_gap=0.0)
    cases["same.dcm"] = (same, "same position")
    for name, (path, says) in cases.items():
        with pytest.raises(VolumeIOError) as err:
            read_volume(path)
        message = str(err.value)
        assert name in message and says in message, (name, message)
        assert "\n" not in message, name


def test_cli_info_on_bad_and_good_series(tmp_path, ct, capsys, pydicom, registered):
    from boneframe.cli import main

    (tmp_path / "bad.dcm").write_bytes(b"\0" * 300)
    assert main(["info", str(tmp_path / "bad.dcm")]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error:") and out == ""

    folder = write_ct_series(tmp_path / "ok.dcm", ct)
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "voxel size:  82, 41, 41.5 µm" in out
    assert "calibration_slope: 0.5" in out
    assert "scanner:" in out


def test_missing_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import fails as if not installed
    (tmp_path / "s.dcm").mkdir()
    fmt = DicomSeriesFormat()
    with pytest.raises(VolumeIOError, match=r"pip install 'boneframe\[dicom\]'"):
        fmt.read(tmp_path / "s.dcm")
    with pytest.raises(VolumeIOError, match=r"boneframe\[dicom\]"):
        fmt.write(Volume(np.zeros((2, 2, 2), np.int16), voxel_size=1.0), tmp_path / "o.dcm")
