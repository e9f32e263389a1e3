"""Scanco AIM and ISQ volumes: round trips, header geometry and calibration, lazy
reading, bad files, the CLI on AIM files, and the error when aimio-py is missing."""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest

from boneframe.errors import BoneframeError, VolumeIOError
from boneframe.io.scanco import (
    ZYX_DIRECTION,
    AimFormat,
    IsqFormat,
    calibration_from_log,
    vms_to_ieee,
)
from boneframe.io.slabs import slab_length
from boneframe.volume import Volume

# A processing log as an HR-pQCT scanner writes it (values of a real XtremeCT II setup).
SCANNER_LOG = """!
! Processing Log
!
!-------------------------------------------------------------------------------
Created by                    ISQ_TO_AIM (IPL)
Original file                 dk0:[xtremect2.data]c0001234.isq;1
!-------------------------------------------------------------------------------
Site                                              21
Scanner ID                                      3401
Scanner type                                      10
Energy [V]                                     68000
Intensity [uA]                                  1470
!-------------------------------------------------------------------------------
Mu_Scaling                                      8192
Calibration                   XCT2_HA_1200
Density: unit                 mg HA/ccm
Density: slope                         1.60352e+03
Density: intercept                    -3.91209e+02
HU: mu water                             0.24090
!-------------------------------------------------------------------------------
"""


@pytest.fixture
def aimio():
    return pytest.importorskip("py_aimio")


@pytest.fixture
def registered(monkeypatch):
    """The scanner formats in the plugin registry (whether or not built in yet)."""
    import boneframe.io as bio
    from boneframe.registry import get_registry

    if AimFormat not in bio.BUILTIN_FORMATS:
        monkeypatch.setattr(bio, "BUILTIN_FORMATS", [*bio.BUILTIN_FORMATS, AimFormat, IsqFormat])
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


def _volume(rng, dtype, shape=(6, 5, 4)):
    data = rng.integers(-300, 1200, size=shape)
    if dtype == "bool":
        data = data > 400
    elif dtype == "uint8":
        data = np.abs(data) % 256
    return Volume(
        data.astype(dtype),
        voxel_size=(82.0, 61.0, 60.7),
        origin=(3 * 60.7, 2 * 61.0, 5 * 82.0),  # whole voxels: the AIM header holds them
        direction=ZYX_DIRECTION,
    )


# --------------------------------------------------------------------------- AIM round trips
@pytest.mark.parametrize(
    ("dtype", "stored", "lazy"),
    [
        ("int16", "int16", True),
        ("float32", "float32", True),
        ("uint8", "int16", True),
        ("bool", "int8", False),  # a mask: compressed, decoded by the library
    ],
)
def test_aim_round_trip(tmp_path, rng, aimio, registered, dtype, stored, lazy):
    from boneframe.io import read_volume, write_volume

    vol = _volume(rng, dtype)
    path = write_volume(vol, tmp_path / "scan.aim")
    back = read_volume(path)
    assert back.dtype == np.dtype(stored)
    assert back.is_lazy == lazy
    if dtype == "bool":
        assert aimio.aim_info(str(path))["aim_type"] == 0x00150001  # D1TbinCmp
    assert np.array_equal(back.numpy(), vol.numpy().astype(stored))
    assert back.voxel_size == pytest.approx((82.0, 61.0, 60.7), abs=1e-4)
    assert back.origin == pytest.approx(vol.origin, abs=1e-3)
    assert np.array_equal(back.direction, ZYX_DIRECTION)
    assert back.metadata["aim_position"] == [3, 2, 5]
    # the library's own (eager) decoder agrees with the lazy raw read
    expected, _ = aimio.read_aim(str(path))
    assert np.array_equal(back.numpy(), expected)


def test_aim_masks_keep_their_two_values(tmp_path, aimio):
    fmt = AimFormat()
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 1:3, 2:4] = 127  # Scanco's segmentation value
    fmt.write(Volume(mask, voxel_size=82.0), tmp_path / "seg.aim")
    back = fmt.read(tmp_path / "seg.aim")
    assert back.dtype == np.int8 and np.array_equal(back.numpy(), mask)
    mask[0, 0, 0] = 255  # does not fit int8: int16 then
    fmt.write(Volume(mask, voxel_size=82.0), tmp_path / "wide.aim")
    back = fmt.read(tmp_path / "wide.aim")
    assert back.dtype == np.int16 and np.array_equal(back.numpy(), mask)


def test_aim_float64_is_stored_as_float32(tmp_path, aimio):
    vol = Volume(np.linspace(-1.5, 2.25, 60).reshape(3, 4, 5), voxel_size=41.0)
    AimFormat().write(vol, tmp_path / "f.aim")
    back = AimFormat().read(tmp_path / "f.aim")
    assert back.dtype == np.float32
    assert np.allclose(back.numpy(), vol.data, rtol=1e-6)


def test_aim_lazy_volume_reads_in_slabs(tmp_path, aimio):
    data = np.arange(70 * 3 * 2, dtype=np.int16).reshape(70, 3, 2)
    AimFormat().write(Volume(data, voxel_size=82.0, direction=ZYX_DIRECTION), tmp_path / "l.aim")
    back = AimFormat().read(tmp_path / "l.aim")
    assert back.data.chunks[0] == (64, 6)  # 64 slices per slab at most
    assert np.array_equal(back.data[60:66].compute(), data[60:66])


def test_slab_length_is_even_and_bounded():
    assert slab_length(10 * 2**20, 100) == 6  # 64 MiB / 10 MiB = 6 slices
    assert slab_length(7 * 2**20, 100) == 8  # 9 rounded down to even
    assert slab_length(100, 1000) == 64
    assert slab_length(100, 5) == 5
    assert slab_length(2**30, 10) == 1


def test_vms_floats_decode_like_aimio():
    # 1.0 as a VAX F-float: bytes 80 40 00 00 (exponent 129, zero fraction)
    raw = np.frombuffer(bytes([0x80, 0x40, 0, 0, 0, 0, 0, 0, 0xC8, 0xC2, 0, 0]), "<u4")
    assert vms_to_ieee(raw).tolist() == [1.0, 0.0, -25.0]


def test_aim_geometry_from_the_header(tmp_path, aimio, registered):
    from boneframe.io import read_volume

    data = np.zeros((4, 5, 6), np.int16)
    meta = {"element_size": (0.0607, 0.0607, 0.082), "position": (3, 4, 5)}
    aimio.write_aim(str(tmp_path / "h.aim"), data, meta)
    vol = read_volume(tmp_path / "h.aim")
    assert vol.shape == (4, 5, 6)  # dimensions (x, y, z) = (6, 5, 4)
    assert vol.voxel_size == pytest.approx((82.0, 60.7, 60.7), abs=1e-4)
    assert vol.origin == pytest.approx((3 * 60.7, 4 * 60.7, 5 * 82.0), abs=1e-3)
    # one step along array axis 0 moves one slice along world z
    step = vol.index_to_world((1, 0, 0)) - vol.index_to_world((0, 0, 0))
    assert step == pytest.approx([0.0, 0.0, 82.0])
    step = vol.index_to_world((0, 0, 1)) - vol.index_to_world((0, 0, 0))
    assert step == pytest.approx([60.7, 0.0, 0.0], abs=1e-4)


def test_aim_calibration_and_processing_log(tmp_path, aimio, registered):
    from boneframe.io import read_volume

    data = np.full((2, 3, 4), 8192, np.int16)
    meta = {"element_size": (0.0607,) * 3, "processing_log": SCANNER_LOG}
    aimio.write_aim(str(tmp_path / "c.aim"), data, meta)
    md = read_volume(tmp_path / "c.aim").metadata
    # a native value of Mu_Scaling is 1/cm; density = slope + intercept there
    assert 8192 * md["calibration_slope"] + md["calibration_intercept"] == pytest.approx(
        1603.52 - 391.209
    )
    assert md["calibration_unit"] == "mg HA/ccm"
    assert md["mu_scaling"] == 8192
    # water (mu = 0.2409 /cm, native 0.2409 * 8192) is 0 HU, air (native 0) is -1000 HU
    assert 0.2409 * 8192 * md["hu_slope"] + md["hu_intercept"] == pytest.approx(0.0, abs=1e-9)
    assert md["hu_intercept"] == -1000.0
    assert md["scanner"] == "Scanco, scanner ID 3401, type 10"
    assert md["energy_kv"] == pytest.approx(68.0)
    assert md["intensity_ua"] == pytest.approx(1470.0)
    assert isinstance(md["processing_log"], str) and "XCT2_HA_1200" in md["processing_log"]
    json.dumps(md)  # everything JSON-able (zarr keeps it, info prints it)


def test_aim_keeps_the_log_and_calibration_when_rewritten(tmp_path, aimio, registered):
    from boneframe.io import read_volume, write_volume

    aimio.write_aim(
        str(tmp_path / "a.aim"),
        np.ones((2, 3, 4), np.int16),
        {"element_size": (0.0607,) * 3, "processing_log": SCANNER_LOG},
    )
    first = read_volume(tmp_path / "a.aim")
    write_volume(first, tmp_path / "b.aim")
    second = read_volume(tmp_path / "b.aim")
    for key in ("calibration_slope", "calibration_intercept", "hu_slope", "scanner"):
        assert second.metadata[key] == first.metadata[key]
    # a volume from another format carries its calibration into a log of its own
    vol = Volume(
        np.ones((2, 3, 4), np.int16),
        voxel_size=82.0,
        direction=ZYX_DIRECTION,
        metadata={"calibration_slope": 0.5, "calibration_intercept": -100.0},
    )
    write_volume(vol, tmp_path / "c.aim")
    md = read_volume(tmp_path / "c.aim").metadata
    assert (md["calibration_slope"], md["calibration_intercept"]) == (0.5, -100.0)


def test_calibration_from_log_needs_all_density_fields():
    assert "calibration_slope" not in calibration_from_log("Mu_Scaling   8192\n")
    cal = calibration_from_log(
        "Mu_Scaling   4096\nDensity: slope   2048\nDensity: intercept   -5\n"
    )
    assert (cal["calibration_slope"], cal["calibration_intercept"]) == (0.5, -5.0)
    assert cal["calibration_unit"] == "mg HA/ccm"


def test_aim_exact_geometry_survives_while_the_header_matches(tmp_path, rng, aimio):
    fmt = AimFormat()
    vol = Volume(
        rng.integers(0, 100, (3, 4, 5)).astype(np.int16),
        voxel_size=(41.0, 41.0, 82.0),
        origin=(10.5, -3.25, 7.0),  # not whole voxels
        direction=np.eye(3),  # not the scanner's axis order
    )
    fmt.write(vol, tmp_path / "g.aim")
    back = fmt.read(tmp_path / "g.aim")
    assert back.origin == pytest.approx(vol.origin)
    assert np.array_equal(back.direction, np.eye(3))
    assert back.voxel_size == vol.voxel_size
    # the same log on a moved image: the header wins
    log = aimio.aim_info(str(tmp_path / "g.aim"))["processing_log"]
    meta = {"element_size": (0.082, 0.041, 0.041), "position": (7, 0, 0), "processing_log": log}
    aimio.write_aim(str(tmp_path / "moved.aim"), vol.numpy(), meta)
    moved = fmt.read(tmp_path / "moved.aim")
    assert np.array_equal(moved.direction, ZYX_DIRECTION)
    assert moved.origin == pytest.approx((7 * 82.0, 0.0, 0.0))


def test_aim_write_refuses_what_it_cannot_hold(tmp_path, aimio):
    fmt = AimFormat()
    big = Volume(np.full((2, 2, 2), 40000, np.int32), voxel_size=82.0)
    with pytest.raises(VolumeIOError, match="do not fit int16"):
        fmt.write(big, tmp_path / "big.aim")
    fits = Volume(np.full((2, 2, 2), 1234, np.int64), voxel_size=82.0)
    fmt.write(fits, tmp_path / "fits.aim")
    assert fmt.read(tmp_path / "fits.aim").numpy().tolist() == fits.data.tolist()
    with pytest.raises(BoneframeError, match="voxel size"):
        fmt.write(Volume(np.zeros((2, 2, 2), np.int16)), tmp_path / "novs.aim")


# --------------------------------------------------------------------------- ISQ
def _vms_double(value: float) -> bytes:
    """Encode a Scanco (VMS G-float) double, the inverse of the reader's decoding."""
    bits = struct.unpack("<Q", struct.pack("<d", value * 4.0))[0]
    out = b""
    for half in (bits >> 32, bits & 0xFFFFFFFF):
        out += bytes([(half >> 16) & 0xFF, (half >> 24) & 0xFF, half & 0xFF, (half >> 8) & 0xFF])
    return out


def write_isq(path, data, spacing_um, calibration=None):
    """A minimal ISQ: 512-byte header, optional calibration block, int16 voxels."""
    nz, ny, nx = data.shape
    extra_blocks = 4 if calibration else 0
    data_offset = 512 * (1 + extra_blocks)
    header = bytearray(data_offset)
    header[0:16] = b"CTDATA-HEADER_V1"
    dims_um = [int(n * s) for n, s in zip((nx, ny, nz), spacing_um[::-1], strict=True)]
    fields = [
        3,  # data type: short
        data_offset + data.size * 2,  # nr_of_bytes: the whole file, as AimIO reads it
        0,  # nr_of_blocks
        0,  # patient index
        3401,  # scanner ID
        0,  # creation date (2 ints)
        0,
        nx,
        ny,
        nz,
        *dims_um,
        int(spacing_um[0]),  # slice thickness, µm
        int(spacing_um[0]),  # slice increment, µm
        125000,  # position of slice 1, µm
        int(data.min()),
        int(data.max()),
        8192,  # mu_scaling
        1536,  # samples
        900,  # projections
        139852,  # scan distance, µm
        10,  # scanner type
        43000,  # sample time, µs
        77,  # measurement index
        21,  # site
        126000,  # reference line, µm
        3,  # reconstruction algorithm
    ]
    struct.pack_into(f"<{len(fields)}i", header, 16, *fields)
    header[128:168] = b"ANONYMOUS".ljust(40)
    struct.pack_into("<ii", header, 168, 68000, 1470)
    struct.pack_into("<i", header, 508, extra_blocks)
    if calibration:
        slope, intercept, mu_water = calibration
        start = 1024
        header[start + 8 : start + 19] = b"Calibration"
        struct.pack_into("<i", header, start + 1148, 2)
        header[start + 1160 : start + 1176] = b"mg HA/ccm".ljust(16, b"\0")
        header[start + 1176 : start + 1184] = _vms_double(slope)
        header[start + 1184 : start + 1192] = _vms_double(intercept)
        header[start + 1200 : start + 1208] = _vms_double(mu_water)
    with open(path, "wb") as fh:
        fh.write(bytes(header))
        fh.write(data.astype("<i2").tobytes())


@pytest.mark.parametrize("calibrated", [False, True])
def test_isq_reads_voxels_geometry_and_calibration(tmp_path, rng, aimio, registered, calibrated):
    from boneframe.io import read_volume

    data = rng.integers(-1000, 8000, (4, 5, 6)).astype(np.int16)
    calibration = (0.19574, -391.209, 0.2409) if calibrated else None
    write_isq(tmp_path / "c1.isq", data, (82.0, 82.0, 60.7), calibration)
    vol = read_volume(tmp_path / "c1.isq")
    assert vol.is_lazy and vol.dtype == np.int16
    assert np.array_equal(vol.numpy(), data)
    assert np.array_equal(vol.numpy(), aimio.read_isq(str(tmp_path / "c1.isq"))[0])
    # the header holds whole µm per row: 6 * 60.7 = 364.2 -> 364 µm over 6 voxels
    assert vol.voxel_size == pytest.approx((82.0, 82.0, 364 / 6))
    assert vol.origin == (0.0, 0.0, 0.0)
    assert np.array_equal(vol.direction, ZYX_DIRECTION)
    md = vol.metadata
    assert md["scanner"] == "Scanco, scanner ID 3401, type 10"
    assert md["energy_kv"] == pytest.approx(68.0)
    assert md["slice_1_pos_um"] == 125000
    assert md["mu_scaling"] == 8192
    assert "ANONYMOUS" not in json.dumps(md)  # the patient's name stays out
    if calibrated:
        assert md["calibration_slope"] == pytest.approx(0.19574)
        assert md["calibration_intercept"] == pytest.approx(-391.209)
        assert md["calibration_unit"] == "mg HA/ccm"
        assert 0.2409 * 8192 * md["hu_slope"] + md["hu_intercept"] == pytest.approx(0.0)
    else:
        assert "calibration_slope" not in md


def test_isq_is_read_only():
    assert not IsqFormat.can_write()
    assert AimFormat.can_write()


# --------------------------------------------------------------------------- bad files
def _bad_files(tmp_path, rng):
    """name -> (bytes, what the error says)."""
    good = tmp_path / "good.aim"
    AimFormat().write(_volume(rng, "int16", shape=(8, 8, 8)), good)
    aim = good.read_bytes()
    isq_path = tmp_path / "good.isq"
    write_isq(isq_path, np.zeros((8, 8, 8), np.int16), (82.0, 82.0, 82.0))
    isq = isq_path.read_bytes()
    npy_path = tmp_path / "array.npy"
    np.save(npy_path, np.zeros((4, 4, 4)))
    return {
        "garbage.aim": (b"this is not a volume at all" * 10, "AIM"),
        "empty.aim": (b"", "too short"),
        "header_cut.aim": (aim[:200], "AIM"),
        "data_cut.aim": (aim[:-100], "truncated"),
        "numpy.aim": (npy_path.read_bytes(), "AIM"),
        "isq_named.aim": (isq, "AIM"),
        "garbage.isq": (b"this is not a volume at all" * 30, "ISQ"),
        "header_cut.isq": (isq[:300], "too short"),
        "data_cut.isq": (isq[:-100], "truncated"),
        "aim_named.isq": (aim, "ISQ"),
    }


def test_bad_files_give_one_clear_error(tmp_path, rng, aimio, registered):
    from boneframe.io import read_volume

    for name, (content, says) in _bad_files(tmp_path, rng).items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(VolumeIOError) as err:
            read_volume(path)
        message = str(err.value)
        assert name in message and says in message, (name, message)
        assert "\n" not in message, name


def test_cli_info_on_bad_and_good_files(tmp_path, rng, capsys, aimio, registered):
    from boneframe.cli import main

    for name, (content, _) in _bad_files(tmp_path, rng).items():
        (tmp_path / name).write_bytes(content)
        capsys.readouterr()
        assert main(["info", str(tmp_path / name)]) == 2, name
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith("error:"), (name, err)
        assert out == ""

    aimio.write_aim(
        str(tmp_path / "ok.aim"),
        np.zeros((2, 3, 4), np.int16),
        {"element_size": (0.0607, 0.0607, 0.0607), "processing_log": SCANNER_LOG},
    )
    capsys.readouterr()
    assert main(["info", str(tmp_path / "ok.aim")]) == 0
    out = capsys.readouterr().out
    assert "voxel size:  60.7, 60.7, 60.7 µm" in out
    for key in ("calibration_slope:", "calibration_unit:", "scanner:", "processing_log:"):
        assert key in out


def test_cli_metrics_on_an_aim(tmp_path, capsys, aimio, registered):
    from boneframe import cli

    commands = {c.name or c.callback.__name__ for c in cli.app.registered_commands}
    if "metrics" not in commands:
        pytest.skip("metrics command not wired yet")
    data = np.zeros((10, 10, 10), np.int16)
    data[3:7, 3:7, 3:7] = 1000  # one 4³ cube of bone: BV/TV = 64/1000, one component
    AimFormat().write(Volume(data, voxel_size=82.0, direction=ZYX_DIRECTION), tmp_path / "s.aim")
    capsys.readouterr()
    code = cli.main(["metrics", str(tmp_path / "s.aim"), "--json", "--voxel-size", "82"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["bv_tv"] == pytest.approx(0.064)
    assert result["betti0"] == 1
    assert result["voxel_size_um"] == [82.0, 82.0, 82.0]


# --------------------------------------------------------------------------- without aimio-py
def test_missing_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "py_aimio", None)  # import fails as if not installed
    (tmp_path / "x.aim").write_bytes(b"\0" * 600)
    for fmt in (AimFormat(), IsqFormat()):
        with pytest.raises(VolumeIOError, match=r"pip install 'boneframe\[scanco\]'"):
            fmt.read(tmp_path / "x.aim")
    with pytest.raises(VolumeIOError, match=r"boneframe\[scanco\]"):
        AimFormat().write(Volume(np.zeros((2, 2, 2), np.int16), voxel_size=1.0), tmp_path / "y.aim")
