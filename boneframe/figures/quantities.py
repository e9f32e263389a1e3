"""Names and units of the quantities the report shows, for its tables and its figures alike.

One convention throughout: a label is ``"name (unit)"``; lengths in µm, Tb.N in
1/mm, Conn.D in 1/mm³, MTF in lp/mm, PSNR in dB, grey levels as
``"grey level"`` (or the calibrated density unit), and a dimensionless quantity
carries :data:`DIMENSIONLESS`. A metric's unit is the one it declares
(:attr:`boneframe.interfaces.Metric.unit`, which :func:`boneframe.metrics.measure`
reports under ``units``); only quantities no metric declares are listed in
:data:`UNITS`.
"""

from __future__ import annotations

from collections.abc import Mapping

#: How a dimensionless quantity's unit is written.
DIMENSIONLESS = "–"
#: The unit of uncalibrated voxel values.
GREY_LEVEL = "grey level"

#: Display names of metric and kernel keys (a key not listed is shown as it is).
LABELS: dict[str, str] = {
    "psnr": "PSNR",
    "dice": "DICE",
    "bv_tv": "BV/TV",
    "conn_d": "Conn.D",
    "conn_d_bonej": "Conn.D BoneJ",
    "tb_th": "Tb.Th",
    "tb_sp": "Tb.Sp",
    "tb_n": "Tb.N",
    "da": "DA",
    "data": "data term",
    "gain": "gain",
    "offset": "offset",
    "fwhm_um": "FWHM",
    "mtf50_lpmm": "MTF 50 %",
    "mtf10_lpmm": "MTF 10 %",
    "kernel_error": "error vs true",
    "alpha": "α",
}

#: Units of the quantities that are not metrics: the kernel summary (its keys say
#: their unit), the kernel's grey-level offset and the solver's data term (on the
#: solver's own normalised grey scale, :data:`boneframe.superres.problem.GREY_RANGE`:
#: arbitrary units).
UNITS: dict[str, str] = {
    "fwhm_um": "µm",
    "mtf50_lpmm": "lp/mm",
    "mtf10_lpmm": "lp/mm",
    "gain": "",
    "offset": GREY_LEVEL,
    "kernel_error": "",
    "alpha": "",
    "data": "a.u.",
}


def unit_of(key: str, units: Mapping[str, str] | None = None) -> str:
    """The unit of a quantity (``""`` when dimensionless).

    Parameters
    ----------
    key : str
        A metric name (``"tb_th"``) or a kernel summary key (``"fwhm_um"``).
    units : mapping, optional
        ``{metric: unit}`` as :func:`boneframe.metrics.measure` reports it; wins
        over the declarations.

    Returns
    -------
    str
        From ``units``, then :data:`UNITS`, then the registered metric's ``unit``.

    Raises
    ------
    PluginError
        If ``key`` is none of these (a quantity whose unit nobody declares).
    """
    if units and key in units:
        return units[key]
    if key in UNITS:
        return UNITS[key]
    from boneframe.registry import get_registry

    return get_registry().get("metric", key).unit


def unit_text(unit: str) -> str:
    """A unit as labels write it: :data:`DIMENSIONLESS` for ``""``."""
    return unit or DIMENSIONLESS


def with_unit(name: str, unit: str) -> str:
    """``"Tb.Th (µm)"``, ``"BV/TV (–)"``."""
    return f"{name} ({unit_text(unit)})"


def label(key: str, units: Mapping[str, str] | None = None) -> str:
    """The label of a quantity with its unit, the same in a table header and on an axis.

    Examples
    --------
    >>> label("tb_th"), label("bv_tv"), label("mtf50_lpmm")
    ('Tb.Th (µm)', 'BV/TV (–)', 'MTF 50 % (lp/mm)')
    """
    return with_unit(LABELS.get(key, key), unit_of(key, units))
