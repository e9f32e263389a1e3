"""DICOM series (a folder with one file per slice), through ``pydicom``; read lazily.

Install with ``pip install 'boneframe[dicom]'``. The path is the series folder, or
any one file of the series (then the other files of its series in that folder
are read with it). Files that are not DICOM (``DICOMDIR``, notes, thumbnails)
are skipped; a folder holding several series must be given through one of its
files.

Geometry. Arrays are indexed ``(slice, row, column)``, i.e. ``(z, y, x)`` for an
axial series. DICOM's patient frame is LPS like boneframe's world frame, in mm
(boneframe: µm). The slices are sorted by their position along the normal
``row × column`` of ``ImageOrientationPatient`` (reversed when the instance
numbers run the other way, so a series keeps its own order), and
``direction[:, 0]`` points from the first slice to the last; ``direction[:, 1]``
is the column direction (increasing row index) and ``direction[:, 2]`` the row
direction. ``voxel_size = (slice spacing, PixelSpacing[0], PixelSpacing[1])``, the
slice spacing measured between ``ImagePositionPatient`` values (unevenly spaced
slices are refused: a slice is missing); ``origin`` is the first slice's
``ImagePositionPatient``. A series without positions and orientations
(secondary captures) is stacked in ``InstanceNumber`` order with the direction
``[[0, 0, 1], [0, 1, 0], [1, 0, 0]]``, origin 0 and the voxel size from
``SpacingBetweenSlices`` (or ``SliceThickness``) and ``PixelSpacing`` when given.
Compressed transfer syntaxes need pydicom's decoder plugins (``pylibjpeg``...);
multi-frame (enhanced) files are not read.

Grey values are the stored integers; ``RescaleSlope``/``RescaleIntercept``
become ``calibration_slope``/``calibration_intercept`` with ``calibration_unit``
from ``RescaleType`` (``HU`` for CT without it). When the slices disagree on the
rescale, it is applied per slice (float32) and the calibration is the identity.

Writing: one CT image file per slice (explicit VR little endian), 16-bit
integers as they are (int16/uint16; bool, int8 and uint8 as int16, other
integers when they fit), the calibration back into RescaleSlope/Intercept/Type.
Floating-point volumes are refused: DICOM CT holds integers.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from boneframe.errors import VolumeIOError
from boneframe.interfaces import VolumeFormat
from boneframe.io.slabs import slab_length, stacked_volume
from boneframe.volume import Volume

#: Extra that installs the library: ``pip install 'boneframe[dicom]'``.
EXTRA = "dicom"

_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Direction of a (z, y, x)-indexed array: axis 0 along world z.
ZYX_DIRECTION = np.eye(3)[:, ::-1]
#: Largest spread of slice gaps accepted, relative to the gap (a missing slice is 100%).
SPACING_TOLERANCE = 0.01


def import_pydicom() -> Any:
    """Import ``pydicom`` or raise one line saying which extra installs it."""
    try:
        import pydicom
    except ImportError as exc:
        raise VolumeIOError(
            "DICOM series need the pydicom library: pip install 'boneframe[dicom]'"
        ) from exc
    return pydicom


# --------------------------------------------------------------------------- reading
def _read_header(pydicom: Any, path: Path) -> Any | None:
    """A file's header (pixel data deferred), or None when it is not DICOM."""
    try:
        ds = pydicom.dcmread(str(path), defer_size=1024)
    except (pydicom.errors.InvalidDicomError, EOFError, OSError, ValueError, TypeError):
        return None
    if "DirectoryRecordSequence" in ds:  # a DICOMDIR
        return None
    if _PIXEL_DATA not in ds:
        return None
    return ds


def _check_pixel_bytes(ds: Any, path: Path) -> None:
    """Refuse a file that ends inside its pixel data (found without reading it)."""
    raw = ds.get_item(_PIXEL_DATA)
    tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    if tell is None or length is None or length == _UNDEFINED_LENGTH:
        return
    size = path.stat().st_size
    if tell + length > size:
        raise VolumeIOError(
            f"{path.name} is truncated: its pixel data needs {length} bytes, "
            f"{max(0, size - tell)} are there"
        )


def _floats(ds: Any, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise VolumeIOError(f"{path.name} has no {keyword}")
    arr = np.asarray([float(v) for v in (value if n > 1 else [value])], dtype=float)
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise VolumeIOError(f"{path.name} has an invalid {keyword}: {value!r}")
    return arr


def _series_files(pydicom: Any, path: Path) -> tuple[list[Path], list[Any]]:
    """The files of the series at ``path`` (a folder or one of its files), with headers."""
    folder = path if path.is_dir() else path.parent
    chosen = None if path.is_dir() else path
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    found: list[tuple[Path, Any]] = []
    for p in candidates:
        ds = _read_header(pydicom, p)
        if ds is not None:
            found.append((p, ds))
    if chosen is not None:
        chosen_ds = next((ds for p, ds in found if p == chosen), None)
        if chosen_ds is None:
            raise VolumeIOError(f"{chosen.name} is not a DICOM image file")
        uid = chosen_ds.get("SeriesInstanceUID")
        found = [(p, ds) for p, ds in found if ds.get("SeriesInstanceUID") == uid]
    if not found:
        raise VolumeIOError(f"no DICOM image files in {folder}")
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in found)
    if len(series) > 1:
        sizes = ", ".join(f"{n} files" for n in series.values())
        raise VolumeIOError(
            f"{folder} holds {len(series)} DICOM series ({sizes}); "
            "give one file of the series to read"
        )
    return [p for p, _ in found], [ds for _, ds in found]


def _unplaced_geometry(headers: list[Any]) -> tuple[list[int], dict[str, Any]]:
    """Slice order and geometry of a series without patient positions (secondary
    captures, some exports): slices in instance-number order (else file-name
    order), spacing from PixelSpacing and SpacingBetweenSlices or SliceThickness."""
    numbers = [ds.get("InstanceNumber") for ds in headers]
    order = list(range(len(headers)))
    if None not in numbers and len({int(n) for n in numbers}) == len(numbers):
        order.sort(key=lambda i: int(numbers[i]))
    first = headers[0]
    pixel = first.get("PixelSpacing")
    gap = first.get("SpacingBetweenSlices") or first.get("SliceThickness")
    geometry: dict[str, Any] = {"direction": ZYX_DIRECTION}
    if pixel is not None and len(pixel) == 2 and gap:
        values = np.array([float(gap), float(pixel[0]), float(pixel[1])])
        if np.all(values > 0):
            geometry["voxel_size"] = tuple(float(v) for v in np.round(values * 1000.0, 4))
    return order, geometry


def _geometry(files: list[Path], headers: list[Any]) -> tuple[list[int], dict[str, Any]]:
    """Slice order and the volume's voxel size, origin and direction (µm, LPS)."""
    first = headers[0]
    if all(
        "ImagePositionPatient" not in ds and "ImageOrientationPatient" not in ds for ds in headers
    ):
        return _unplaced_geometry(headers)
    iop = _floats(first, "ImageOrientationPatient", 6, files[0])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise VolumeIOError(f"{files[0].name} has an invalid ImageOrientationPatient {list(iop)}")
    spacing = _floats(first, "PixelSpacing", 2, files[0])
    if np.any(spacing <= 0):
        raise VolumeIOError(f"{files[0].name} has PixelSpacing {list(spacing)}")
    positions = []
    for p, ds in zip(files, headers, strict=True):
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, p), iop, atol=1e-4):
            raise VolumeIOError(f"{p.name} is oriented unlike the rest of its series")
        if not np.allclose(_floats(ds, "PixelSpacing", 2, p), spacing, rtol=1e-6):
            raise VolumeIOError(f"{p.name} has another PixelSpacing than the rest of its series")
        positions.append(_floats(ds, "ImagePositionPatient", 3, p))
    pos = np.asarray(positions)
    along = pos @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    numbers = [headers[i].get("InstanceNumber") for i in order]
    if (
        len(order) > 1
        and None not in numbers
        and all(int(a) > int(b) for a, b in zip(numbers, numbers[1:], strict=False))
    ):
        order.reverse()
    if len(order) > 1:
        steps = np.diff(along[order])
        gap = float(np.median(np.abs(steps)))
        if gap <= 0 or np.any(np.abs(steps) <= 0):
            raise VolumeIOError("two slices of the series have the same position")
        if np.max(np.abs(np.abs(steps) - gap)) > SPACING_TOLERANCE * gap:
            raise VolumeIOError(
                f"slices are unevenly spaced ({np.min(np.abs(steps)):g} to "
                f"{np.max(np.abs(steps)):g} mm): a slice is missing or the series is mixed"
            )
        slice_dir = (pos[order[-1]] - pos[order[0]]) / np.linalg.norm(
            pos[order[-1]] - pos[order[0]]
        )
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness")
        gap = float(thickness) if thickness else 1.0
        slice_dir = normal
    direction = np.column_stack([slice_dir, col_dir, row_dir])
    voxel_size = np.round(np.array([gap, spacing[0], spacing[1]]) * 1000.0, 4)
    origin = np.round(pos[order[0]] * 1000.0, 4)
    return order, {
        "voxel_size": tuple(float(v) for v in voxel_size),
        "origin": tuple(float(v) for v in origin),
        "direction": direction,
    }


def _pixel_type(ds: Any) -> tuple[Any, ...]:
    keys = ("BitsAllocated", "PixelRepresentation", "SamplesPerPixel")
    return tuple(ds.get(k) for k in keys)


def _rescale(ds: Any) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (
        1.0 if slope is None or slope == "" else float(slope),
        0.0 if intercept is None or intercept == "" else float(intercept),
    )


def _decode_first(pydicom: Any, path: Path) -> np.ndarray:
    """The first slice's pixels (so that an undecodable series fails on reading)."""
    ds = pydicom.dcmread(str(path))
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types for missing decoders
        syntax = ds.file_meta.get("TransferSyntaxUID")
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        missing = "plugin" in msg.lower() or "handler" in msg.lower()
        if syntax is not None and syntax.is_compressed and missing:
            raise VolumeIOError(
                f"cannot decode {path.name} ({syntax.name}): compressed DICOM needs a pydicom "
                "decoder plugin, e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
            ) from exc
        raise VolumeIOError(f"cannot decode the pixels of {path.name}: {msg}") from exc


def _read_slices(job: tuple[tuple[str, ...], tuple[tuple[float, float], ...] | None]) -> np.ndarray:
    """Pixel arrays of some slice files stacked (rescaled to float32 when asked)."""
    import pydicom

    paths, rescale = job
    out = []
    for k, p in enumerate(paths):
        arr = pydicom.dcmread(p).pixel_array
        if rescale is not None:
            slope, intercept = rescale[k]
            arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        out.append(arr)
    return np.stack(out)


def _metadata(ds: Any, calibration: dict[str, Any], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"scanner_format": "DICOM series", "slices": n}
    scanner = " ".join(
        str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName")
    ).strip()
    if scanner:
        out["scanner"] = scanner
    for keyword, key in (
        ("Modality", "modality"),
        ("SeriesDescription", "series_description"),
        ("ConvolutionKernel", "convolution_kernel"),
    ):
        value = ds.get(keyword)
        if value not in (None, ""):
            out[key] = str(value)
    kvp = ds.get("KVP")
    if kvp not in (None, ""):
        out["energy_kv"] = float(kvp)
    out.update(calibration)
    return out


class DicomSeriesFormat(VolumeFormat):
    """DICOM series (folder of slice files) via pydicom; rescale as calibration; lazy"""

    name: ClassVar[str] = "dicom"
    extensions: ClassVar[tuple[str, ...]] = (".dcm", ".dicom")
    is_directory: ClassVar[bool] = True
    holds_calibration: ClassVar[bool] = True

    def read(self, path: Path) -> Volume:
        pydicom = import_pydicom()
        path = Path(path)
        files, headers = _series_files(pydicom, path)
        for p, ds in zip(files, headers, strict=True):
            if int(ds.get("NumberOfFrames", 1) or 1) > 1:
                raise VolumeIOError(f"{p.name} is a multi-frame DICOM file (not supported)")
            _check_pixel_bytes(ds, p)
        order, geometry = _geometry(files, headers)
        files = [files[i] for i in order]
        headers = [headers[i] for i in order]
        rows, cols = int(headers[0].Rows), int(headers[0].Columns)
        pixel_type = _pixel_type(headers[0])
        for p, ds in zip(files, headers, strict=True):
            if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
                raise VolumeIOError(
                    f"{p.name} has {ds.Rows}x{ds.Columns} pixels, not {rows}x{cols}"
                )
            if _pixel_type(ds) != pixel_type:
                raise VolumeIOError(f"{p.name} stores its pixels unlike the rest of its series")

        rescales = [_rescale(ds) for ds in headers]
        first = headers[0]
        has_rescale = "RescaleSlope" in first or "RescaleIntercept" in first
        unit = str(first.get("RescaleType", "") or "").strip()
        if not unit and str(first.get("Modality", "")) == "CT":
            unit = "HU"
        sample = _decode_first(pydicom, files[0])
        if sample.ndim != 2:
            raise VolumeIOError(f"{files[0].name} holds a {sample.ndim}D image, not one slice")
        uniform = all(r == rescales[0] for r in rescales)
        calibration: dict[str, Any] = {}
        if uniform:
            dtype = sample.dtype
            if has_rescale:
                calibration = {
                    "calibration_slope": rescales[0][0],
                    "calibration_intercept": rescales[0][1],
                    "calibration_unit": unit,
                }
        else:
            dtype = np.dtype(np.float32)
            calibration = {
                "calibration_slope": 1.0,
                "calibration_intercept": 0.0,
                "calibration_unit": unit,
            }

        step = slab_length(rows * cols * dtype.itemsize, len(files))
        jobs, counts = [], []
        for k in range(0, len(files), step):
            chunk = tuple(str(p) for p in files[k : k + step])
            scale = None if uniform else tuple(rescales[k : k + step])
            jobs.append((chunk, scale))
            counts.append(len(chunk))
        data = stacked_volume(jobs, _read_slices, (rows, cols), counts, dtype)
        return Volume(data, metadata=_metadata(first, calibration, len(files)), **geometry)

    def write(self, volume: Volume, path: Path) -> None:
        import_pydicom()
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

        dtype = _dicom_dtype(volume)
        vs = np.asarray(volume.require_voxel_size()) / 1000.0
        direction = np.asarray(volume.direction, dtype=float)
        origin = np.asarray(volume.origin) / 1000.0
        meta = volume.metadata
        study, series, frame = generate_uid(), generate_uid(), generate_uid()
        path.mkdir()
        width = max(5, len(str(volume.shape[0])))
        n = volume.shape[0]
        step = slab_length(volume.shape[1] * volume.shape[2] * volume.dtype.itemsize, n)
        slab, z0 = np.empty((0,)), -step
        for k in range(n):
            if k >= z0 + step:  # read a lazy volume a slab at a time
                z0 = k
                slab = np.asarray(volume.data[z0 : z0 + step])
            arr = slab[k - z0]
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.SOPClassUID = CTImageStorage
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.Modality = str(meta.get("modality", "CT"))
            ds.PatientName, ds.PatientID = "", ""
            ds.SeriesDescription = str(meta.get("series_description", "boneframe"))[:64]
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.PixelSpacing = [_ds(vs[1]), _ds(vs[2])]
            ds.SliceThickness = _ds(vs[0])
            ds.SpacingBetweenSlices = _ds(vs[0])
            ds.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 2], *direction[:, 1])]
            position = origin + direction[:, 0] * vs[0] * k
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.RescaleSlope = _ds(float(meta.get("calibration_slope", 1.0)))
            ds.RescaleIntercept = _ds(float(meta.get("calibration_intercept", 0.0)))
            unit = str(meta.get("calibration_unit", "") or "")
            if unit:
                ds.RescaleType = unit[:64]
            ds.set_pixel_data(np.ascontiguousarray(arr.astype(dtype)), "MONOCHROME2", 16)
            ds.save_as(path / f"slice_{k:0{width}d}.dcm", enforce_file_format=True)


def _ds(value: float) -> str:
    """A decimal string (DICOM DS: at most 16 characters)."""
    text = f"{float(value):.10g}"
    return text if len(text) <= 16 else f"{float(value):.8g}"


def _dicom_dtype(volume: Volume) -> np.dtype:
    """int16 or uint16 holding the volume's integers exactly."""
    dt = volume.dtype
    if dt in (np.int16, np.uint16):
        return dt
    if dt.kind == "b" or dt in (np.int8, np.uint8):
        return np.dtype(np.int16)
    if dt.kind in "iu":
        import dask

        lo, hi = (int(v) for v in dask.compute(volume.data.min(), volume.data.max()))
        for target in (np.int16, np.uint16):
            info = np.iinfo(target)
            if info.min <= lo and hi <= info.max:
                return np.dtype(target)
        raise VolumeIOError(f"values {lo}..{hi} do not fit the 16 bits of a DICOM CT image")
    raise VolumeIOError(
        f"DICOM CT images hold integers, not {dt}: convert the volume to int16 "
        "(with its calibration) or write .zarr / .nii.gz"
    )


def is_dicom_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding at least one DICOM file (``DICM`` preamble).

    Meant for choosing this format for a folder without an extension.
    """
    folder = Path(path)
    if not folder.is_dir():
        return False
    for p in sorted(folder.iterdir()):
        if p.is_file():
            with open(p, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                return True
    return False
