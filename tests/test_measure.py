"""measure(): one engine for every metric: defaults, units, skipped metrics, masks, hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import threshold_otsu
from skimage.measure import euler_number as skimage_euler

from boneframe.errors import InputError, PluginError
from boneframe.metrics import DEFAULT_METRICS, STRUCTURE_METRICS, measure
from boneframe.volume import Volume


def brick_with_tunnel() -> np.ndarray:
    """Grey volume: a 5-voxel bone brick (value 1000) with one tunnel, marrow 100."""
    volume = np.full((9, 9, 9), 100.0)
    volume[2:7, 2:7, 2:7] = 1000.0
    volume[:, 4, 4] = 100.0  # the tunnel runs through the brick along axis 0
    return volume


def plates() -> np.ndarray:
    """Plates 4 voxels thick, period 16, along axis 0; the border lies mid-way through marrow."""
    vol = np.zeros((32, 8, 8))
    vol[6:10] = vol[22:26] = 1.0
    return vol


def test_hand_case_values() -> None:
    # One brick with one tunnel: β0 = 1, β1 = 1, β2 = 0, χ = 0; BV/TV = (125 - 5)/729.
    names = ["bv_tv", "tv_mm3", "euler", "betti0", "betti1", "betti2", "conn_d", "conn_d_bonej"]
    m = measure(brick_with_tunnel(), voxel_size=100.0, names=names)
    assert m["threshold"] == pytest.approx(threshold_otsu(brick_with_tunnel()))
    assert m["voxel_size_um"] == (100.0, 100.0, 100.0)
    assert m["bv_tv"] == pytest.approx(120 / 729)
    assert (m["euler"], m["betti0"], m["betti1"], m["betti2"]) == (0, 1, 1, 0)
    tv = 729 * 0.1**3  # mm³
    assert m["tv_mm3"] == pytest.approx(tv)
    assert m["conn_d"] == pytest.approx(1 / tv)
    # The bone does not reach the volume's border, so Δχ = 0 and BoneJ's
    # connectivity is 1 - (χ - Δχ) = 1 as well.
    assert m["conn_d_bonej"] == pytest.approx(1 / tv)
    assert m["skipped"] == {}
    assert m["units"] == {
        "bv_tv": "", "tv_mm3": "mm³", "euler": "", "betti0": "", "betti1": "", "betti2": "",
        "conn_d": "1/mm³", "conn_d_bonej": "1/mm³",
    }  # fmt: skip


def test_default_names_skip_what_the_inputs_cannot_give(rng: np.random.Generator) -> None:
    volume = rng.random((12, 12, 12))
    alone = measure(volume, structure=False)
    assert list(alone) == ["threshold", "voxel_size_um", "psnr", "dice", "bv_tv", "tv_mm3",
                           "euler", "betti0", "betti1", "betti2", "conn_d", "conn_d_bonej",
                           "units", "skipped"]  # fmt: skip
    assert alone["voxel_size_um"] is None
    assert alone["psnr"] is None and "reference" in alone["skipped"]["psnr"]
    assert alone["conn_d"] is None and "voxel size" in alone["skipped"]["conn_d"]
    assert set(alone["skipped"]) == {"psnr", "dice", "tv_mm3", "conn_d", "conn_d_bonej"}
    assert alone["bv_tv"] == pytest.approx(np.mean(volume > alone["threshold"]))
    full = measure(volume, volume + 0.01, voxel_size=41)
    assert list(full) == ["threshold", "reference_threshold", "voxel_size_um",
                          *[n for n in DEFAULT_METRICS if n != "otsu"], *STRUCTURE_METRICS,
                          "units", "skipped"]  # fmt: skip
    assert full["skipped"] == {} and set(full["units"]) == set(full) - {
        "threshold",
        "reference_threshold",
        "voxel_size_um",
        "units",
        "skipped",
    }
    assert full["units"]["tb_th"] == "µm" and full["units"]["tb_n"] == "1/mm"


def test_values_agree_with_direct_computation(rng: np.random.Generator) -> None:
    from scipy import ndimage

    reference = ndimage.gaussian_filter(rng.standard_normal((30, 30, 30)), 2)
    estimate = ndimage.gaussian_filter(reference, 1)
    m = measure(estimate, reference, voxel_size=(40, 40, 80), structure=False)
    a = estimate > threshold_otsu(estimate)
    b = reference > threshold_otsu(reference)
    assert m["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    mse = np.mean((estimate - reference) ** 2)
    assert m["psnr"] == pytest.approx(-10 * np.log10(mse / np.ptp(reference) ** 2), rel=1e-12)
    assert m["euler"] == skimage_euler(a, connectivity=3)
    assert m["bv_tv"] == pytest.approx(a.mean())
    assert m["betti1"] == m["betti0"] + m["betti2"] - m["euler"]
    assert m["conn_d"] == pytest.approx(m["betti1"] / (30**3 * 0.04 * 0.04 * 0.08))


def test_given_thresholds_and_volume_voxel_size() -> None:
    volume = Volume(brick_with_tunnel(), voxel_size=(50.0, 50.0, 50.0))
    m = measure(volume, threshold=2000.0, names=["bv_tv", "conn_d", "otsu"])
    assert m["threshold"] == 2000.0
    assert m["bv_tv"] == 0.0  # nothing above the given threshold
    assert m["voxel_size_um"] == (50.0, 50.0, 50.0)
    assert m["otsu"] == pytest.approx(threshold_otsu(brick_with_tunnel()))
    assert "otsu" not in measure(volume, names=["otsu", "bv_tv"])  # it is the threshold


def test_asking_for_the_impossible_is_an_error() -> None:
    volume = brick_with_tunnel()
    with pytest.raises(InputError, match="voxel size"):
        measure(volume, names=["conn_d"])
    with pytest.raises(InputError, match="reference"):
        measure(volume, names=["psnr"])
    with pytest.raises(PluginError, match="unknown metric"):
        measure(volume, names=["trabecular_number"])
    with pytest.raises(InputError, match="3D"):
        measure(np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN"):
        measure(np.full((4, 4, 4), np.nan))
    with pytest.raises(InputError, match=r"\(9, 9, 9\).*\(9, 9, 8\)"):
        measure(volume, volume[..., :8])


def test_bonej_stack_filling_cube() -> None:
    # BoneJ's Connectivity test: bone filling the whole 3x3x3 stack. χ = 1 and Δχ = 1
    # (the box's share of an endless specimen adds nothing), so BoneJ's Conn.D is
    # (1 - (1 - 1)) / 27 voxels; no marrow: no thickness, no phase change for the MIL.
    cube = np.ones((3, 3, 3))
    m = measure(cube, voxel_size=1000.0, threshold=0.5)
    assert (m["euler"], m["betti0"], m["betti1"], m["betti2"]) == (1, 1, 0, 0)
    assert m["conn_d_bonej"] == pytest.approx(1 / 27) and m["conn_d"] == 0
    assert m["bv_tv"] == 1.0 and m["tv_mm3"] == pytest.approx(27.0)
    assert m["da"] is None and "phase changes" in m["skipped"]["da"]
    assert m["mil_ratio"] is None and m["skipped"]["mil_ratio"] == m["skipped"]["da"]
    assert m["tb_th"] is None and "fills the volume" in m["skipped"]["tb_th"]
    assert m["tb_n"] is None and set(m["skipped"]) == {
        "psnr", "dice", "da", "mil_ratio", "tb_th", "tb_th_sd", "tb_th_max", "tb_sp",
        "tb_sp_sd", "tb_sp_max", "tb_n",
    }  # fmt: skip


def test_structure_metrics_in_micrometres() -> None:
    # 100 µm voxels: Tb.Th 4 voxels = 400 µm, Tb.Sp 12 voxels = 1200 µm, Tb.N = 1 / 1.6 mm
    m = measure(plates(), voxel_size=100.0, names=["tb_th", "tb_th_max", "tb_sp", "tb_n"])
    assert m["tb_th"] == pytest.approx(400.0) and m["tb_th_max"] == pytest.approx(400.0)
    assert m["tb_sp"] == pytest.approx(1200.0)
    assert m["tb_n"] == pytest.approx(1 / 1.6)
    assert m["units"] == {"tb_th": "µm", "tb_th_max": "µm", "tb_sp": "µm", "tb_n": "1/mm"}


def test_anisotropic_voxels_skip_structure_only() -> None:
    m = measure(plates(), voxel_size=(100.0, 100.0, 50.0))
    assert m["tb_th"] is None and "isotropic" in m["skipped"]["tb_th"]
    assert m["da"] is None and "isotropic" in m["skipped"]["da"]
    assert m["bv_tv"] == pytest.approx(0.25) and m["conn_d"] is not None
    assert "tb_th" not in measure(plates(), voxel_size=100.0, structure=False)


def test_mask_restricts_the_additive_metrics(rng: np.random.Generator) -> None:
    from scipy import ndimage

    reference = ndimage.gaussian_filter(rng.standard_normal((20, 22, 24)), 2)
    estimate = reference + 0.05 * rng.standard_normal(reference.shape)
    z, y, x = np.indices(reference.shape)
    mask = (z - 10) ** 2 + (y - 11) ** 2 + (x - 12) ** 2 < 64  # a ball
    m = measure(estimate, reference, mask, voxel_size=50.0, structure=False)
    a = estimate > m["threshold"]  # Otsu over the whole volume, mask or not
    b = reference > m["reference_threshold"]
    assert m["threshold"] == pytest.approx(threshold_otsu(estimate))
    assert m["bv_tv"] == np.count_nonzero(a & mask) / np.count_nonzero(mask)
    assert m["tv_mm3"] == pytest.approx(np.count_nonzero(mask) * 0.05**3)
    assert m["dice"] == pytest.approx(
        2 * (a & b & mask).sum() / ((a & mask).sum() + (b & mask).sum())
    )
    diff = (estimate - reference)[mask]
    peak = np.ptp(reference[mask])
    assert m["psnr"] == pytest.approx(-10 * np.log10(np.mean(diff**2) / peak**2), rel=1e-12)
    for name in ("euler", "betti0", "betti1", "betti2", "conn_d"):  # of the bone inside the mask
        assert m[name] is not None and name not in m["skipped"]
    assert m["conn_d_bonej"] is None and "mask" in m["skipped"]["conn_d_bonej"]
    with pytest.raises(InputError, match=r"mask.*\(20, 22, 24\).*\(20, 22, 23\)"):
        measure(estimate, mask=mask[..., :23])
    empty = measure(estimate, mask=np.zeros_like(mask), names=["bv_tv"])
    assert empty["bv_tv"] is None and "empty" in empty["skipped"]["bv_tv"]
