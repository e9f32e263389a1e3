"""compute_metrics, the registered metric strategies and their shared cache."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from skimage.filters import threshold_otsu
from skimage.measure import euler_number as skimage_euler

from boneframe.errors import InputError, PluginError
from boneframe.metrics import BUILTIN_METRICS, compute_metrics, segmentation
from boneframe.registry import Registry
from boneframe.volume import Volume

ALL = ["betti0", "betti1", "betti2", "bv_tv", "conn_d", "conn_d_bonej", "da", "dice", "euler",
       "otsu", "psnr", "tb_n", "tb_sp", "tb_th"]  # fmt: skip


def brick_with_tunnel() -> np.ndarray:
    """Grey volume: a 5-voxel bone brick (value 1000) with one tunnel, marrow 100."""
    volume = np.full((9, 9, 9), 100.0)
    volume[2:7, 2:7, 2:7] = 1000.0
    volume[:, 4, 4] = 100.0  # the tunnel runs through the brick along axis 0
    return volume


def test_registered_metrics() -> None:
    registry = Registry()
    assert registry.names("metric") == ALL
    for cls in BUILTIN_METRICS:
        assert cls.description and "\n" not in cls.description
        with pytest.raises(ValidationError):
            cls(unknown=1)  # parameters are validated, extra ones refused


def test_hand_case_values() -> None:
    # One brick with one tunnel: β0 = 1, β1 = 1, β2 = 0, χ = 0; BV/TV = (125 - 5)/729.
    m = compute_metrics(brick_with_tunnel(), voxel_size=100.0)
    assert m["threshold"] == pytest.approx(threshold_otsu(brick_with_tunnel()))
    assert m["voxel_size_um"] == (100.0, 100.0, 100.0)
    assert m["bv_tv"] == pytest.approx(120 / 729)
    assert (m["euler"], m["betti0"], m["betti1"], m["betti2"]) == (0, 1, 1, 0)
    tv = 729 * 0.1**3  # mm³
    assert m["conn_d"] == pytest.approx(1 / tv)
    # The bone does not reach the volume's border, so Δχ = 0 and BoneJ's
    # connectivity is 1 - (χ - Δχ) = 1 as well.
    assert m["conn_d_bonej"] == pytest.approx(1 / tv)


def test_default_names_follow_inputs(rng: np.random.Generator) -> None:
    volume = rng.random((12, 12, 12))
    alone = compute_metrics(volume)
    assert list(alone) == ["threshold", "voxel_size_um", "bv_tv", "euler", "betti0", "betti1",
                           "betti2"]  # fmt: skip
    assert alone["voxel_size_um"] is None
    full = compute_metrics(volume, volume + 0.01, voxel_size=41)
    assert list(full) == ["threshold", "reference_threshold", "voxel_size_um", "psnr", "dice",
                          "bv_tv", "euler", "betti0", "betti1", "betti2", "conn_d",
                          "conn_d_bonej"]  # fmt: skip


def test_values_agree_with_direct_computation(rng: np.random.Generator) -> None:
    from scipy import ndimage

    reference = ndimage.gaussian_filter(rng.standard_normal((30, 30, 30)), 2)
    estimate = ndimage.gaussian_filter(reference, 1)
    m = compute_metrics(estimate, reference, voxel_size=(40, 40, 80))
    a = estimate > threshold_otsu(estimate)
    b = reference > threshold_otsu(reference)
    assert m["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert m["euler"] == skimage_euler(a, connectivity=3)
    assert m["bv_tv"] == pytest.approx(a.mean())
    assert m["betti1"] == m["betti0"] + m["betti2"] - m["euler"]
    assert m["conn_d"] == pytest.approx(m["betti1"] / (30**3 * 0.04 * 0.04 * 0.08))


def test_given_thresholds_and_volume_voxel_size() -> None:
    volume = Volume(brick_with_tunnel(), voxel_size=(50.0, 50.0, 50.0))
    m = compute_metrics(volume, threshold=2000.0, names=["bv_tv", "conn_d", "otsu"])
    assert m["threshold"] == 2000.0
    assert m["bv_tv"] == 0.0  # nothing above the given threshold
    assert m["voxel_size_um"] == (50.0, 50.0, 50.0)
    assert m["otsu"] == pytest.approx(threshold_otsu(brick_with_tunnel()))


def test_binarises_each_volume_once(monkeypatch: pytest.MonkeyPatch, rng) -> None:
    calls = []
    original = segmentation.binarize

    def counting(volume, threshold):
        calls.append(threshold)
        return original(volume, threshold)

    monkeypatch.setattr(segmentation, "binarize", counting)
    volume = rng.random((10, 10, 10))
    compute_metrics(volume, volume, voxel_size=10)
    assert len(calls) == 2  # the volume and the reference, once each


def test_errors() -> None:
    volume = brick_with_tunnel()
    with pytest.raises(InputError, match="voxel size"):
        compute_metrics(volume, names=["conn_d"])
    with pytest.raises(InputError, match="reference"):
        compute_metrics(volume, names=["psnr"])
    with pytest.raises(PluginError, match="unknown metric"):
        compute_metrics(volume, names=["trabecular_number"])
    with pytest.raises(InputError, match="3D"):
        compute_metrics(np.zeros((4, 4)))


def test_all_metrics_adds_structure_on_isotropic_voxels() -> None:
    from boneframe.metrics import all_metrics

    plates = np.zeros((32, 8, 8))
    plates[6:10] = plates[22:26] = 1.0  # 4 voxels thick, period 16 (100 µm voxels)
    m = all_metrics(plates, voxel_size=100.0)
    assert m["tb_th"] == pytest.approx(0.4) and m["tb_sp"] == pytest.approx(1.2)
    assert m["tb_n"] == pytest.approx(1 / 1.6)
    assert "structure_skipped" not in m
    skipped = all_metrics(plates, voxel_size=(100.0, 100.0, 50.0))
    assert "tb_th" not in skipped and "anisotropic" in skipped["structure_skipped"]
    assert "tb_th" not in all_metrics(plates, structure=False)
