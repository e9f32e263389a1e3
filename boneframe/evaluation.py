r"""The standard per-compartment evaluation of a calibrated HR-pQCT scan: one row of numbers.

Given the scan and its compartments (periosteal = the whole bone, trabecular and
cortical partitioning it; from files, or from
:func:`boneframe.compartments.contour`), :func:`evaluate` reports

=======================  =========================================================
key                      definition
=======================  =========================================================
``tt_vbmd_mg_ha_cm3``    Tt.vBMD: mean density of the periosteal mask
``tb_vbmd_mg_ha_cm3``    Tb.vBMD: mean density of the trabecular mask
``ct_vbmd_mg_ha_cm3``    Ct.vBMD: mean density of the cortical mask
``tt_ar_mm2``            Tt.Ar: the periosteal mask's volume over the stack's height
``tb_ar_mm2``            Tb.Ar: the same for the trabecular mask
``ct_ar_mm2``            Ct.Ar: the same for the cortical mask
``ct_th_um``             Ct.Th (µm): mean local thickness of the cortical mask
``ct_po_fraction``       Ct.Po: voxels of the cortical mask that are not bone, over its voxels
``tb_bv_tv_fraction``    Tb.BV/TV: bone voxels of the trabecular mask over its voxels
``tb_th_um``             Tb.Th (µm), inside the trabecular mask (``structure``)
``tb_sp_um``             Tb.Sp (µm), inside the trabecular mask (``structure``)
``tb_n_per_mm``          Tb.N (1/mm) = 1 / (Tb.Th + Tb.Sp) (``structure``)
=======================  =========================================================

Densities are means over every voxel of a mask, bone or not (the vBMD of the
compartment), from the scan's calibration (:mod:`boneframe.calibration`).
Areas are mean cross-sectional areas: a mask's volume divided by the height of
the stack (``slices x`` the voxel size along ``axial_axis``, array axis 0, the
slice axis of a Scanco AIM). Ct.Th is the direct, model-free mean of the
cortical mask's local thickness (Hildebrand & Rüegsegger, BoneJ's conventions:
:mod:`boneframe.metrics.thickness`; a slab ``t`` voxels thick measures ``t``
voxels when ``t`` is even, ``t + 1`` when odd), in µm like every length of
boneframe (divide by 1000 for the mm the scanner's reports use). Ct.Po is the
pore fraction of the cortical mask, every non-bone voxel of it a pore voxel
(the scanner's evaluation also drops pores below a size; not done here).

The bone (Ct.Po, Tb.BV/TV, Tb.*) is segmented as the second-generation
scanner's standard evaluation does, Gaussian smoothing then a fixed density
threshold (:class:`boneframe.segmentation.GaussThreshold`), with the published
cortical (450 mg HA/cm³) and trabecular (320 mg HA/cm³) thresholds, unless a
segmentation is given for both. Tb.Th, Tb.Sp and Tb.N are measured inside the
trabecular mask (:mod:`boneframe.metrics.trabecular` states the convention).
Every number comes from :func:`boneframe.metrics.measure` (chunk by chunk on a
dask scan).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from boneframe.calibration import is_calibrated
from boneframe.errors import InputError
from boneframe.interfaces import COMPARTMENTS, Segmentation
from boneframe.volume import Volume

#: The row's keys with their units, in order.
UNITS: dict[str, str] = {
    "tt_vbmd_mg_ha_cm3": "mg HA/cm³",
    "tb_vbmd_mg_ha_cm3": "mg HA/cm³",
    "ct_vbmd_mg_ha_cm3": "mg HA/cm³",
    "tt_ar_mm2": "mm²",
    "tb_ar_mm2": "mm²",
    "ct_ar_mm2": "mm²",
    "ct_th_um": "µm",
    "ct_po_fraction": "",
    "tb_bv_tv_fraction": "",
    "tb_th_um": "µm",
    "tb_sp_um": "µm",
    "tb_n_per_mm": "1/mm",
}

_SHORT = {"periosteal": "tt", "trabecular": "tb", "cortical": "ct"}

#: File stems (case-insensitive, alone or after ``<scan stem>_``) of each compartment's
#: mask in a ``--masks`` folder; Scanco's ``_CORT_MASK`` / ``_TRAB_MASK`` AIMs included.
MASK_NAMES: dict[str, tuple[str, ...]] = {
    "periosteal": ("periosteal", "peri", "peri_mask", "full", "full_mask"),
    "trabecular": ("trabecular", "trab", "trab_mask"),
    "cortical": ("cortical", "cort", "cort_mask"),
}


def _stem(path: Path) -> str:
    return path.name.lower().split(".")[0]


def find_masks(directory: str | Path, scan: str | Path) -> dict[str, Path]:
    """The compartments' mask files of ``scan`` in ``directory``.

    A file belongs to a compartment when its stem is one of :data:`MASK_NAMES`,
    alone or after the scan's stem and an underscore (``C0001_TRAB_MASK.AIM``
    for ``C0001.AIM``); the scan's GOBJ contour file (``C0001.GOBJ``) is its
    periosteal mask.

    Raises
    ------
    InputError
        If the folder does not exist, a compartment has several files, or fewer
        than two compartments have one (the names looked for are listed).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"--masks {folder}: not a folder")
    scan_stem = _stem(Path(scan))
    found: dict[str, list[Path]] = {name: [] for name in COMPARTMENTS}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        if path.name.lower().split(";")[0].endswith(".gobj") and stem == scan_stem:
            found["periosteal"].append(path)
            continue
        for name, stems in MASK_NAMES.items():
            if any(stem in (s, f"{scan_stem}_{s}") for s in stems):
                found[name].append(path)
    several = {n: [p.name for p in ps] for n, ps in found.items() if len(ps) > 1}
    if several:
        raise InputError(f"several mask files for one compartment in {folder}: {several}")
    masks = {n: ps[0] for n, ps in found.items() if ps}
    if len(masks) < 2:
        looked = "; ".join(f"{n}: {', '.join(s)}" for n, s in MASK_NAMES.items())
        raise InputError(
            f"{folder} holds masks for {sorted(masks) or 'no compartment'} of {Path(scan).name}: "
            f"give at least two, named (alone or after '{scan_stem}_') {looked}, or "
            f"{scan_stem}.gobj for the periosteal contour"
        )
    return masks


def compartments_on(scan: Volume, masks: Mapping[str, Any]) -> dict[str, Any]:
    """The three compartments as boolean arrays on the scan's grid.

    Masks are put on the scan's grid by geometry
    (:func:`boneframe.masks.mask_on_grid`); any two of ``periosteal``,
    ``trabecular`` and ``cortical`` give the third (periosteal = trabecular |
    cortical; trabecular = periosteal & ~cortical; cortical = periosteal &
    ~trabecular).

    Raises
    ------
    InputError
        If fewer than two compartments are given, a name is unknown, or a mask
        does not fit the scan's grid.
    """
    from boneframe.masks import region_on

    unknown = sorted(set(masks) - set(COMPARTMENTS))
    if unknown:
        raise InputError(f"unknown compartments {unknown}: they are {', '.join(COMPARTMENTS)}")
    on: dict[str, Any] = {}
    for name, mask in masks.items():
        if mask is None:
            continue
        on[name] = region_on(mask, scan, what=f"the {name} mask", of="the scan")
    if len(on) < 2:
        raise InputError(
            f"give at least two of the masks {', '.join(COMPARTMENTS)}; got {sorted(on) or 'none'}"
        )
    if "periosteal" not in on:
        on["periosteal"] = on["trabecular"] | on["cortical"]
    if "trabecular" not in on:
        on["trabecular"] = on["periosteal"] & ~on["cortical"]
    if "cortical" not in on:
        on["cortical"] = on["periosteal"] & ~on["trabecular"]
    return {name: on[name] for name in COMPARTMENTS}


def _segmentations(
    segmentation: str | Segmentation | None, params: Mapping[str, Any] | None
) -> tuple[Segmentation, Segmentation]:
    """(cortical, trabecular) segmentations: the given one for both, or the published ones."""
    from boneframe.metrics.inputs import segmentation_of
    from boneframe.segmentation import PUBLISHED_DEFAULTS, GaussThreshold

    seg = segmentation_of(segmentation, params)
    if seg is not None:
        return seg, seg
    return (
        GaussThreshold(PUBLISHED_DEFAULTS["xtremect2-cortical"]),
        GaussThreshold(PUBLISHED_DEFAULTS["xtremect2-trabecular"]),
    )


def evaluate(
    scan: Volume,
    masks: Mapping[str, Any] | None = None,
    *,
    segmentation: str | Segmentation | None = None,
    segmentation_params: Mapping[str, Any] | None = None,
    structure: bool = True,
    axial_axis: int = 0,
    contour_method: str = "dual-threshold",
    contour_params: Any = None,
) -> dict[str, Any]:
    """The standard per-compartment evaluation of a calibrated scan (one row).

    Parameters
    ----------
    scan : Volume
        A calibrated scan (numpy or dask data) with its voxel size.
    masks : mapping, optional
        ``periosteal``, ``trabecular``, ``cortical`` (any two give the third):
        Volumes, put on the scan's grid by geometry, or arrays of its shape.
        Default: :func:`boneframe.compartments.contour` of the scan.
    segmentation, segmentation_params : optional
        The bone's segmentation for Ct.Po and the trabecular metrics (a
        registered name with its parameters, or an instance). Default: the
        published XtremeCT II ``gauss-threshold`` ones, cortical and
        trabecular.
    structure : bool
        Also Tb.Th, Tb.Sp and Tb.N inside the trabecular mask.
    axial_axis : int
        The array axis across the cross-sections (the slices).
    contour_method, contour_params
        The contouring used when ``masks`` is None.

    Returns
    -------
    dict
        The keys of :data:`UNITS` in that order (``tb_th_um``, ``tb_sp_um``,
        ``tb_n_per_mm`` only with ``structure``; a value is None when it cannot
        be computed), ``units`` and ``skipped`` (``{key: why it is None}``).

    Raises
    ------
    InputError
        If the scan is not calibrated or has no voxel size, the masks do not fit
        it, or ``axial_axis`` is not 0, 1 or 2.
    """
    from boneframe.metrics import measure

    if not is_calibrated(scan):
        raise InputError(
            "the evaluation reports densities in mg HA/cm³ and needs a calibrated scan "
            "(a Scanco AIM, a calibrated DICOM, or calibration_slope and "
            "calibration_intercept in the volume's metadata)"
        )
    vs = scan.require_voxel_size()
    if axial_axis not in (0, 1, 2):
        raise InputError(f"axial_axis must be 0, 1 or 2, got {axial_axis}")
    if masks is None:
        from boneframe.compartments import contour

        masks = contour(scan, method=contour_method, params=contour_params)
    on = compartments_on(scan, masks)
    height_mm = scan.shape[axial_axis] * vs[axial_axis] / 1000.0
    cortical_seg, trabecular_seg = _segmentations(segmentation, segmentation_params)

    row: dict[str, Any] = {}
    skipped: dict[str, str] = {}

    def keep(key: str, result: dict[str, Any], name: str, transform: Any = None) -> None:
        value = result.get(name)
        if value is None:
            skipped[key] = result["skipped"].get(name, "not computed")
        row[key] = None if value is None else (transform(value) if transform else value)

    for compartment in COMPARTMENTS:
        m = measure(scan, mask=on[compartment], names=["bmd", "tv_mm3"])
        short = _SHORT[compartment]
        keep(f"{short}_vbmd_mg_ha_cm3", m, "bmd")
        keep(f"{short}_ar_mm2", m, "tv_mm3", lambda tv: tv / height_mm)

    cortex = scan.with_data(on["cortical"], metadata={})
    keep("ct_th_um", measure(cortex, names=["tb_th"]), "tb_th")
    ct = measure(scan, mask=on["cortical"], names=["bv_tv"], segmentation=cortical_seg)
    keep("ct_po_fraction", ct, "bv_tv", lambda bv_tv: 1.0 - bv_tv)
    names = ["bv_tv", *(("tb_th", "tb_sp", "tb_n") if structure else ())]
    tb = measure(scan, mask=on["trabecular"], names=names, segmentation=trabecular_seg)
    keep("tb_bv_tv_fraction", tb, "bv_tv")
    if structure:
        keep("tb_th_um", tb, "tb_th")
        keep("tb_sp_um", tb, "tb_sp")
        keep("tb_n_per_mm", tb, "tb_n")
    out: dict[str, Any] = {key: row[key] for key in UNITS if key in row}
    out["units"] = {key: UNITS[key] for key in out}
    out["skipped"] = skipped
    return out
