"""The standard per-compartment evaluation on a cortical-shell phantom of known geometry."""

from __future__ import annotations

import csv
import json

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from boneframe.cli import main
from boneframe.errors import InputError
from boneframe.evaluation import UNITS, evaluate, find_masks
from boneframe.volume import Volume

VS = 60.0
SLOPE, INTERCEPT = 0.25, -100.0
R_OUT, R_IN = 40, 30  # voxels: a cortex 10 voxels (600 µm) thick


@pytest.fixture(scope="module")
def phantom() -> dict:
    """A tube of cortex (1000 mg HA/cm³, 12 axial canals of 100) around trabecular plates
    (800) in marrow (150), in air (0), stored as calibrated values with noise."""
    shape = (12, 96, 96)
    _, y, x = np.indices(shape)
    r = np.hypot(y - 47.5, x - 47.5)
    peri, trab = r < R_OUT, r < R_IN
    cort = peri & ~trab
    pores = np.zeros(shape, bool)
    for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        pores |= np.hypot(y - 47.5 - 35 * np.cos(a), x - 47.5 - 35 * np.sin(a)) < 2.2
    pores &= cort
    plates = trab & (x % 10 < 3)
    density = np.where(cort, 1000.0, np.where(trab, 150.0, 0.0))
    density[pores], density[plates] = 100.0, 800.0
    density += np.random.default_rng(0).normal(0.0, 5.0, shape)
    stored = ((density - INTERCEPT) / SLOPE).astype(np.float32)
    meta = {"calibration_slope": SLOPE, "calibration_intercept": INTERCEPT}
    scan = Volume(stored, voxel_size=VS, metadata=meta)
    return {"scan": scan, "peri": peri, "trab": trab, "cort": cort, "pores": pores,
            "density": stored.astype(np.float64) * SLOPE + INTERCEPT}  # fmt: skip


def masks_of(p: dict, *names: str) -> dict[str, Volume]:
    key = {"periosteal": "peri", "trabecular": "trab", "cortical": "cort"}
    return {n: p["scan"].with_data(p[key[n]].astype(np.uint8), metadata={}) for n in names}


def gauss_bone(density: np.ndarray, threshold: float) -> np.ndarray:
    """XtremeCT II's segmentation by scipy: σ 0.8 voxel, radius 1 voxel, then the threshold."""
    return ndimage.gaussian_filter(density, 0.8, truncate=1 / 0.8, mode="nearest") > threshold


def test_the_row_against_the_phantom(phantom):
    p = phantom
    row = evaluate(p["scan"], masks_of(p, "periosteal", "trabecular", "cortical"))
    assert list(row) == [*UNITS, "units", "skipped"] and row["skipped"] == {}
    assert all(k.endswith(("_mg_ha_cm3", "_mm2", "_um", "_fraction", "_per_mm")) for k in UNITS)
    slice_mm2 = (VS / 1000) ** 2
    for short, mask, radius in (("tt", p["peri"], R_OUT), ("ct", p["cort"], None),
                                ("tb", p["trab"], R_IN)):  # fmt: skip
        assert abs(row[f"{short}_vbmd_mg_ha_cm3"] - p["density"][mask].mean()) < 0.1
        assert row[f"{short}_ar_mm2"] == pytest.approx(mask[0].sum() * slice_mm2, rel=1e-12)
        if radius is not None:  # a disc's area to 1 %
            assert row[f"{short}_ar_mm2"] == pytest.approx(np.pi * radius**2 * slice_mm2, rel=0.01)
    assert row["ct_ar_mm2"] == pytest.approx(np.pi * (R_OUT**2 - R_IN**2) * slice_mm2, rel=0.02)
    assert row["ct_th_um"] == pytest.approx((R_OUT - R_IN) * VS, rel=0.05)  # 600 µm
    cort, trab = p["cort"], p["trab"]
    ct_po = 1 - np.count_nonzero(gauss_bone(p["density"], 450.0) & cort) / cort.sum()
    assert abs(row["ct_po_fraction"] - ct_po) <= 2 / cort.sum()  # the standard segmentation
    assert row["ct_po_fraction"] == pytest.approx(p["pores"].sum() / cort.sum(), rel=0.2)
    bv_tv = np.count_nonzero(gauss_bone(p["density"], 320.0) & trab) / trab.sum()
    assert abs(row["tb_bv_tv_fraction"] - bv_tv) <= 2 / trab.sum()
    assert row["tb_th_um"] > 0 and row["tb_sp_um"] > row["tb_th_um"]
    assert row["tb_n_per_mm"] == pytest.approx(1000 / (row["tb_th_um"] + row["tb_sp_um"]))
    assert row["units"]["ct_th_um"] == "µm" and row["units"]["tt_ar_mm2"] == "mm²"


def test_two_masks_give_the_third_and_chunked_equals_in_memory(phantom):
    p = phantom
    full = evaluate(p["scan"], masks_of(p, "periosteal", "trabecular", "cortical"),
                    structure=False)  # fmt: skip
    assert "tb_th_um" not in full
    for pair in (("periosteal", "cortical"), ("trabecular", "cortical")):
        assert evaluate(p["scan"], masks_of(p, *pair), structure=False) == full
    lazy = p["scan"].with_data(da.from_array(p["scan"].data, chunks=(6, 48, 40)))
    chunked = evaluate(lazy, masks_of(p, "periosteal", "trabecular"), structure=False)
    for key in UNITS:
        if key in full:
            assert chunked[key] == pytest.approx(full[key], rel=1e-9, abs=1e-12), key
    with pytest.raises(InputError, match="at least two"):
        evaluate(p["scan"], masks_of(p, "cortical"))
    with pytest.raises(InputError, match="calibrated scan"):
        evaluate(Volume(p["scan"].data, voxel_size=VS), masks_of(p, "periosteal", "cortical"))


def test_cli_evaluate_finds_scanco_masks_and_writes_csv(phantom, tmp_path, capsys):
    pytest.importorskip("py_aimio")
    from boneframe.io import write_volume

    p = phantom
    write_volume(p["scan"], tmp_path / "C0001.AIM")
    (tmp_path / "masks").mkdir()
    for suffix, key in (("TRAB_MASK", "trab"), ("CORT_MASK", "cort")):
        mask = Volume(p[key].astype(np.uint8) * 127, voxel_size=VS)
        write_volume(mask, tmp_path / "masks" / f"C0001_{suffix}.AIM")
    assert set(find_masks(tmp_path / "masks", tmp_path / "C0001.AIM")) == {"trabecular",
                                                                           "cortical"}  # fmt: skip
    out = tmp_path / "rows.csv"
    code = main(["evaluate", str(tmp_path / "C0001.AIM"), "--masks", str(tmp_path / "masks"),
                 "--csv", str(out), "--no-structure"])  # fmt: skip
    stdout, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads(stdout.splitlines()[0])
    api = evaluate(p["scan"], masks_of(p, "trabecular", "cortical"), structure=False)
    for key in api["units"]:
        assert row[key] == pytest.approx(api[key], rel=1e-5), key
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 1 and list(table[0])[0] == "scan"
    assert float(table[0]["ct_th_um"]) == pytest.approx(api["ct_th_um"], rel=1e-6)
    code = main(["evaluate", str(tmp_path / "C0001.AIM"), "--masks", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "at least two" in err
