"""Scanco AIM and ISQ volumes (HR-pQCT / micro-CT), through ``aimio-py``.

Install with ``pip install 'boneframe[scanco]'``. ``aimio-py`` (Python bindings of
Numerics88's AimIO) parses the headers; the voxels of uncompressed files are read
lazily, slab by slab, from the byte offset the header gives, so whole scans go
through the chunked path. Compressed AIMs (binary segmentations) are decoded by
the library in memory.

Geometry. Arrays are indexed ``(z, y, x)`` like ``tifffile`` and ITK's
``GetArrayFromImage``; the scanner's x, y, z axes are taken as the world axes (as
ITK's Scanco reader does), so ``direction`` maps array axis 0 to world z:
``direction = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]``. ``voxel_size`` is
``(dz, dy, dx)`` in µm. An AIM's origin (centre of voxel 0, µm) is
``(position + offset) * element_size`` per scanner axis, as in ITK's reader; an
ISQ's is ``(0, 0, 0)`` (its ``slice_1_pos_um`` is kept in the metadata). The
vtkbone convention places voxel corners there instead: half a voxel apart.

Grey values are the scanner's native integers; the linear map to density is in
the metadata (``density = value * calibration_slope + calibration_intercept``,
unit ``calibration_unit``), with ``hu_slope`` / ``hu_intercept`` for Hounsfield
units and the AIM's ``processing_log`` as text.

Writing (AIM only; ISQ is what the scanner writes): int16 and float32 are
stored as they are; bool, int8 and uint8 volumes with at most two values (masks)
as compressed int8 (0/1 stays 0/1), other int8 and uint8 as int16 (AimIO's
compressed char writer, used for three values or more, produces files it cannot
read back); other integers as int16 when their values fit; other floats as
float32. AIM holds an integer voxel position and no
orientation: a volume whose origin is not a whole number of voxels or whose
direction is not the one above keeps its exact geometry in a
``boneframe geometry`` line of the processing log, used on reading only while
the header still has the dimensions and position it was written with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.slabs import raw_volume
from boneframe.volume import Volume, as_triple

#: Extra that installs the library: ``pip install 'boneframe[scanco]'``.
EXTRA = "scanco"

#: Direction of a (z, y, x)-indexed array whose scanner axes are the world axes.
ZYX_DIRECTION = np.eye(3)[:, ::-1]

# AimIO storage types (aim_type) stored uncompressed, and how they sit on disk
_AIM_CHAR = 0x00010001
_AIM_SHORT = 0x00020002
_AIM_FLOAT = 0x00040004
_ISQ_SHORT = 3

_GEOMETRY_KEY = "boneframe geometry"
_LOG_RULE = "!" + "-" * 79


def import_aimio() -> Any:
    """Import ``py_aimio`` or raise one line saying which extra installs it."""
    try:
        import py_aimio
    except ImportError as exc:
        raise VolumeIOError(
            "Scanco AIM/ISQ files need the aimio-py library: pip install 'boneframe[scanco]'"
        ) from exc
    return py_aimio


def _library_call(what: str, func: Any, *args: Any) -> Any:
    """Call AimIO, turning its C++ errors into one readable line."""
    try:
        return func(*args)
    except (RuntimeError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VolumeIOError(f"not a readable {what} file ({msg})") from exc


def vms_to_ieee(raw: np.ndarray) -> np.ndarray:
    """Decode VAX/VMS F-floats (read as little-endian uint32) to IEEE float32.

    VMS stores the two 16-bit halves swapped and its exponent bias is 2 higher,
    hence the swap and the division by 4 (as AimIO does).
    """
    words = raw.astype(np.uint32, copy=False)
    swapped = (words >> np.uint32(16)) | (words << np.uint32(16))
    return swapped.view(np.float32) / np.float32(4.0)


def _um(values_mm: Any) -> np.ndarray:
    # headers hold float32 mm: round off the float32 noise (0.1 nm)
    return np.round(np.asarray(values_mm, dtype=float) * 1000.0, 4)


def _check_magic(path: Path, magic: bytes | None, min_size: int, what: str) -> None:
    size = path.stat().st_size
    if size < min_size:
        raise VolumeIOError(f"file too short for a {what} header ({size} bytes)")
    if magic is not None:
        with open(path, "rb") as fh:
            if fh.read(len(magic)) != magic:
                raise VolumeIOError(f"not a {what} file (no {magic.decode()} signature)")


# --------------------------------------------------------------------------- processing log
def log_value(log: str, key: str) -> str | None:
    """The value of ``key`` in a Scanco processing log (``Key   value`` lines), or None."""
    found = None
    for match in re.finditer(rf"^[ \t]*{re.escape(key)}[ \t]+(\S[^\n]*?)[ \t]*$", log, re.M):
        found = match.group(1)  # the last one wins: IPL appends as it processes
    return found


def _log_number(log: str, key: str) -> float | None:
    text = log_value(log, key)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def calibration_from_log(log: str) -> dict[str, Any]:
    """Density and HU calibration of native AIM values, from the processing log.

    ``density = value * calibration_slope + calibration_intercept`` with
    ``calibration_slope = Density: slope / Mu_Scaling``, and
    ``HU = value * hu_slope + hu_intercept`` with
    ``hu_slope = 1000 / (Mu_Scaling * mu_water)``, ``hu_intercept = -1000``.
    """
    out: dict[str, Any] = {}
    mu_scaling = _log_number(log, "Mu_Scaling")
    mu_water = _log_number(log, "HU: mu water")
    slope = _log_number(log, "Density: slope")
    intercept = _log_number(log, "Density: intercept")
    if mu_scaling:
        out["mu_scaling"] = mu_scaling
    if mu_water:
        out["mu_water_per_cm"] = mu_water
    if mu_scaling and slope is not None and intercept is not None:
        out["calibration_slope"] = slope / mu_scaling
        out["calibration_intercept"] = intercept
        out["calibration_unit"] = log_value(log, "Density: unit") or "mg HA/ccm"
    if mu_scaling and mu_water:
        out["hu_slope"] = 1000.0 / (mu_scaling * mu_water)
        out["hu_intercept"] = -1000.0
    return out


def _scanner_from_log(log: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    parts = []
    for key, label in (("Scanner ID", "ID"), ("Scanner type", "type")):
        value = _log_number(log, key)
        if value is not None:
            parts.append(f"{label} {int(value)}")
    if parts:
        out["scanner"] = "Scanco, scanner " + ", ".join(parts)
    for key, name, scale in (
        ("Energy [V]", "energy_kv", 1e-3),
        ("Intensity [uA]", "intensity_ua", 1),
    ):
        value = _log_number(log, key)
        if value:
            out[name] = value * scale
    created = log_value(log, "Created by")
    if created:
        out["created_by"] = created
    return out


def _strip_geometry(log: str) -> str:
    return "".join(
        line
        for line in log.splitlines(keepends=True)
        if not line.lstrip().startswith(_GEOMETRY_KEY)
    )


def _log_for(volume: Volume) -> str:
    """The processing log to write: the volume's own, or one holding its calibration."""
    log = volume.metadata.get("processing_log")
    if isinstance(log, str) and log.strip():
        return _strip_geometry(log)
    meta = volume.metadata
    lines = ["! Processing Log", "!", _LOG_RULE, f"{'Created by':<30}boneframe"]
    if "calibration_slope" in meta and "calibration_intercept" in meta:
        mu_scaling = float(meta.get("mu_scaling") or 1.0)
        lines += [
            _LOG_RULE,
            f"{'Mu_Scaling':<30}{mu_scaling:>23g}",
            f"{'Density: unit':<30}{meta.get('calibration_unit', 'mg HA/ccm')}",
            f"{'Density: slope':<30}{float(meta['calibration_slope']) * mu_scaling:>23.10g}",
            f"{'Density: intercept':<30}{float(meta['calibration_intercept']):>23.10g}",
        ]
        if meta.get("mu_water_per_cm"):
            lines.append(f"{'HU: mu water':<30}{float(meta['mu_water_per_cm']):>23.10g}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- AIM
def _aim_array(volume: Volume) -> np.ndarray:
    """The voxels as a type AimIO writes (int16 or float32), without losing values."""
    data = volume.numpy()
    kind = data.dtype.kind
    if data.dtype in (np.int16, np.float32):
        return np.ascontiguousarray(data)
    if kind == "b" or data.dtype in (np.int8, np.uint8):
        # at most two values (a segmentation): AimIO stores them run-length compressed
        counts = np.bincount(data.astype(np.int16).ravel() + 128, minlength=384)
        if np.count_nonzero(counts) <= 2 and not counts[256:].any():
            return data.astype(np.int8)
        return data.astype(np.int16)
    if kind in "iu":
        info = np.iinfo(np.int16)
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if lo < info.min or hi > info.max:
            raise VolumeIOError(
                f"AIM stores int8, int16 or float32; values {lo}..{hi} of type {data.dtype} "
                "do not fit int16 (convert to float32 first, or write .zarr / .nii.gz)"
            )
        return data.astype(np.int16)
    if kind == "f":
        return data.astype(np.float32)
    raise VolumeIOError(f"AIM cannot store values of type {data.dtype}")


def _aim_geometry(volume: Volume) -> tuple[list[float], list[int], dict[str, Any] | None]:
    """Element size (mm, x y z), position (voxels, x y z) and the exact geometry when
    the header cannot hold it."""
    vs = np.asarray(volume.require_voxel_size())  # (dz, dy, dx)
    vs_xyz = vs[::-1]
    element_mm = [float(v) / 1000.0 for v in vs_xyz]
    exact = np.asarray(volume.origin) / vs_xyz
    position = [int(v) for v in np.round(exact)]
    fits = np.allclose(exact, position, atol=1e-3) and np.allclose(
        volume.direction, ZYX_DIRECTION, atol=1e-9
    )
    if fits:
        return element_mm, position, None
    dims = list(volume.shape[::-1])
    geometry = {
        "dim": dims,
        "pos": position,
        "voxel_size_um": [float(v) for v in vs],
        "origin_um": [float(v) for v in volume.origin],
        "direction": np.asarray(volume.direction).tolist(),
    }
    return element_mm, position, geometry


def _stored_geometry(log: str, dims: list[int], position: list[int]) -> dict[str, Any]:
    """Exact geometry from our own log line, while the header still matches it."""
    text = log_value(log, _GEOMETRY_KEY)
    if text is None:
        return {}
    try:
        stored = json.loads(text)
        if stored["dim"] != dims or stored["pos"] != position:
            return {}  # the file was cropped or moved since: the header is right
        return {
            "voxel_size": tuple(float(v) for v in stored["voxel_size_um"]),
            "origin": tuple(float(v) for v in stored["origin_um"]),
            "direction": np.asarray(stored["direction"], dtype=float),
        }
    except (ValueError, KeyError, TypeError):
        return {}


class AimFormat(VolumeFormat):
    """Scanco AIM (HR-pQCT, micro-CT) via aimio-py; calibration and log in the metadata"""

    name: ClassVar[str] = "aim"
    extensions: ClassVar[tuple[str, ...]] = (".aim", ".aim;1")
    holds_calibration: ClassVar[bool] = True

    def read(self, path: Path) -> Volume:
        aimio = import_aimio()
        path = Path(path)
        _check_magic(path, None, 20, "Scanco AIM")
        header = _library_call("Scanco AIM", aimio.aim_info, str(path))
        dims = [int(v) for v in header["dimensions"]]  # x, y, z
        shape = (dims[2], dims[1], dims[0])
        if min(shape) < 1:
            raise VolumeIOError(f"AIM header gives empty dimensions {dims}")
        offset = int(header.get("byte_offset") or 0)
        aim_type = int(header.get("aim_type", 0))
        if aim_type == _AIM_SHORT and offset:
            data = raw_volume(path, offset, shape, "<i2")
        elif aim_type == _AIM_CHAR and offset:
            data = raw_volume(path, offset, shape, "i1")
        elif aim_type == _AIM_FLOAT and offset:
            data = raw_volume(path, offset, shape, "<u4", dtype=np.float32, convert=vms_to_ieee)
        else:  # compressed storage: the library decodes it in memory
            data, _ = _library_call("Scanco AIM", aimio.read_aim, str(path))
            if tuple(data.shape) != shape:
                raise VolumeIOError(f"AIM data has shape {data.shape}, header says {shape}")

        spacing_xyz = _um(header["element_size"])
        if np.any(spacing_xyz <= 0):
            raise VolumeIOError(f"AIM header gives element size {list(spacing_xyz)} µm")
        position = [int(v) for v in header.get("position", (0, 0, 0))]
        border = [int(v) for v in header.get("offset", (0, 0, 0))]
        origin = (np.asarray(position) + np.asarray(border)) * spacing_xyz
        log = str(header.get("processing_log") or "")

        metadata: dict[str, Any] = {"scanner_format": "Scanco AIM"}
        metadata.update(_scanner_from_log(log))
        metadata.update(calibration_from_log(log))
        metadata["aim_position"] = position
        if any(border):
            metadata["aim_offset"] = border
        metadata["processing_log"] = log
        geometry: dict[str, Any] = {
            "voxel_size": tuple(spacing_xyz[::-1]),
            "origin": tuple(origin),
            "direction": ZYX_DIRECTION,
        }
        geometry.update(_stored_geometry(log, dims, position))
        return Volume(data, metadata=metadata, **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        aimio = import_aimio()
        data = _aim_array(volume)
        element_mm, position, exact = _aim_geometry(volume)
        log = _log_for(volume)
        if exact is not None:
            if not log.endswith("\n"):
                log += "\n"
            log += f"{_GEOMETRY_KEY:<30}{json.dumps(exact, separators=(',', ':'))}\n"
        meta = {"element_size": element_mm, "position": position, "processing_log": log}
        try:
            aimio.write_aim(str(path), data, meta)
        except (RuntimeError, ValueError) as exc:
            raise VolumeIOError(f"AimIO could not write {path.name}: {exc}") from exc


# --------------------------------------------------------------------------- ISQ
def _isq_metadata(header: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"scanner_format": "Scanco ISQ"}
    out["scanner"] = (
        f"Scanco, scanner ID {int(header.get('scanner_id', 0))}, "
        f"type {int(header.get('scanner_type', 0))}"
    )
    if header.get("energy"):
        out["energy_kv"] = float(header["energy"]) / 1000.0
    if header.get("intensity"):
        out["intensity_ua"] = float(header["intensity"])
    date = str(header.get("creation_date_string", "")).strip()
    if date:
        out["creation_date"] = date
    out["slice_1_pos_um"] = int(header.get("slice_1_pos_um", 0))
    mu_scaling = float(header.get("mu_scaling") or 0)
    if mu_scaling:
        out["mu_scaling"] = mu_scaling
    mu_water = float(header.get("mu_water") or 0)
    if mu_water > 0:
        out["mu_water_per_cm"] = mu_water
    slope = float(header.get("rescale_slope") or 0)
    if slope:
        out["calibration_slope"] = slope
        out["calibration_intercept"] = float(header.get("rescale_intercept") or 0)
        out["calibration_unit"] = str(header.get("rescale_units") or "").strip()
    if mu_scaling > 1 and mu_water > 0:
        out["hu_slope"] = 1000.0 / (mu_scaling * mu_water)
        out["hu_intercept"] = -1000.0
    return out


class IsqFormat(VolumeFormat):
    """Scanco ISQ raw reconstruction via aimio-py (read-only, lazy)"""

    name: ClassVar[str] = "isq"
    extensions: ClassVar[tuple[str, ...]] = (".isq", ".isq;1")

    def read(self, path: Path) -> Volume:
        aimio = import_aimio()
        path = Path(path)
        _check_magic(path, b"CTDATA-HEADER_V1", 512, "Scanco ISQ")
        header = _library_call("Scanco ISQ", aimio.isq_info, str(path))
        if int(header.get("data_type", _ISQ_SHORT)) != _ISQ_SHORT:
            raise VolumeIOError(f"unsupported ISQ data type {header.get('data_type')}")
        dims_p = [int(v) for v in header["dimensions_p"]]  # x, y, z
        dims_um = [int(v) for v in header["dimensions_um"]]
        shape = (dims_p[2], dims_p[1], dims_p[0])
        if min(shape) < 1:
            raise VolumeIOError(f"ISQ header gives empty dimensions {dims_p}")
        if min(dims_um) <= 0:
            raise VolumeIOError(f"ISQ header gives physical dimensions {dims_um} µm")
        # the header's float32 spacing loses digits: divide the integers again
        spacing_xyz = [um / p for um, p in zip(dims_um, dims_p, strict=True)]
        data = raw_volume(path, int(header["data_offset"]), shape, "<i2")
        return Volume(
            data,
            voxel_size=as_triple(spacing_xyz[::-1], "voxel size"),
            origin=(0.0, 0.0, 0.0),
            direction=ZYX_DIRECTION,
            metadata=_isq_metadata(header),
        )
