"""The data-consistent segmentation: local residual updates, greedy flips, scale freedom."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
from boneframe.operators import forward_model
from boneframe.phantom import gaussian_kernel
from boneframe.segmentation.data_consistent import (
    DataConsistentSegmentation,
    _energy,
    _predict,
    _valid,
    data_consistent_segmentation,
)
from boneframe.segmentation.flip_kernels import (
    count_faces,
    face_delta,
    flip_data_delta,
    flip_update,
)
from boneframe.volume import Volume

P = (2, 2, 2)


def _scene(seed: int = 0, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A plate and a thin rod (levels 0.15 and 1), an anisotropic off-centre kernel and
    its noisy scan with offset 0.05."""
    f = np.full((20, 20, 20), 0.15)
    f[4:8, :, :] = 1.0
    f[8:18, 9:11, 9:11] = 1.0
    h = gaussian_kernel((1.2, 1.0, 0.8), (7, 5, 5), (0.3, -0.2, 0.1), gain=0.9)
    c = 0.05
    g = forward_model(f, h, c, P) + np.random.default_rng(seed).normal(0, noise, (10, 10, 10))
    return f, g, h, c


def test_predict_is_the_forward_model_on_valid_voxels() -> None:
    f, _, h, c = _scene()
    bone = f > 0.5
    valid = _valid(f.shape, h, P).astype(bool)
    ours = _predict(bone, h, P, 0.15 + c, 0.85)
    assert np.allclose(ours[valid], forward_model(f, h, c, P)[valid], atol=1e-12)


def test_local_updates_equal_full_recomputation() -> None:
    f, g, h, c = _scene()
    rng = np.random.default_rng(3)
    bone = (f > 0.5).astype(np.uint8)
    valid = _valid(f.shape, h, P)
    m, d = 0.15, 0.85
    resid = _predict(bone, h, P, m + c, d) - g
    for _ in range(40):
        v = tuple(int(i) for i in rng.integers(0, 20, 3))
        sd = -d if bone[v] else d
        before = float(np.sum(valid * resid**2))
        faces = count_faces(bone)
        delta = flip_data_delta(resid, valid, h, *P, *v, sd)
        same, diff = face_delta(bone, *v)
        flip_update(resid, h, *P, *v, sd)
        bone[v] = 1 - bone[v]
        full = _predict(bone, h, P, m + c, d) - g
        assert np.allclose(resid, full, atol=1e-12)
        assert float(np.sum(valid * full**2)) - before == pytest.approx(delta, abs=1e-10)
        assert count_faces(bone) - faces == same - diff


def test_a_flip_that_lowers_the_objective_is_accepted() -> None:
    f, _, h, c = _scene()
    g = forward_model(f, h, c, P)  # noise-free: the true bone explains it exactly
    x = f.copy()
    x[5, 10, 10] = 0.15  # a hole inside the plate: data and faces both want it back
    r = data_consistent_segmentation(x, g, h, c, 2, weight=0.1, marrow=0.15, bone=1.0)
    assert r.bone[5, 10, 10]
    assert np.array_equal(r.bone, f > 0.5)
    assert r.flips[0] >= 1 and r.energies[-1] < r.energies[0]


@pytest.mark.parametrize("band", [0.2, None])
def test_objective_never_increases(band: float | None) -> None:
    _, g, h, c = _scene(noise=0.05)
    x = _scene()[0] * 0.7 + np.random.default_rng(5).normal(0, 0.1, (20, 20, 20))
    r = data_consistent_segmentation(x, g, h, c, 2, weight=0.5, band=band)
    e = np.asarray(r.energies)
    assert len(e) >= 2 and np.all(np.diff(e) <= 1e-9 * e[0])
    assert r.flips[-1] == 0 or len(r.flips) == 30


def test_energy_matches_a_direct_evaluation() -> None:
    f, g, h, c = _scene()
    r = data_consistent_segmentation(f, g, h, c, 2, weight=1.0, marrow=0.15, bone=1.0)
    valid = _valid(f.shape, h, P)
    kappa = float(np.sum(h * h)) / 8
    unit = 0.85**2 * kappa
    resid = _predict(r.bone, h, P, 0.15 + c, 0.85) - g
    direct = (np.sum(valid * resid**2) + unit * count_faces(r.bone)) / unit
    assert r.energies[-1] == pytest.approx(direct, rel=1e-9)
    assert _energy(resid, r.bone, valid, unit, unit) == pytest.approx(direct, rel=1e-12)


def test_the_thin_rod_is_recovered_from_the_scan() -> None:
    f, g, h, c = _scene(noise=0.005)
    x = f.copy()
    x[8:18, 9:11, 9:11] = 0.4  # the rod a faint ridge below every threshold
    r = data_consistent_segmentation(x, g, h, c, 2, weight=0.5, marrow=0.15, bone=1.0)
    rod = r.bone[9:17, 9:11, 9:11]
    assert rod.mean() > 0.9


def test_scale_invariance() -> None:
    f, g, h, c = _scene()
    x = 0.6 * f + 0.4 * np.mean(f) + np.random.default_rng(1).normal(0, 0.05, f.shape)
    a = data_consistent_segmentation(x, g, h, c, 2, weight=0.5)
    b = data_consistent_segmentation(x * 1000, g * 1000, h, c * 1000, 2, weight=0.5)
    assert np.array_equal(a.bone, b.bone)
    assert b.bone_level == pytest.approx(1000 * a.bone_level, rel=1e-9)
    assert np.allclose(a.energies, b.energies, rtol=1e-9)


def test_strategy_binds_the_scan() -> None:
    f, g, h, c = _scene()
    x = 0.6 * f + 0.4 * np.mean(f)
    seg = DataConsistentSegmentation(weight=0.5).bind(g, h, c)
    bone = seg.segment(Volume(x))
    assert np.array_equal(bone, data_consistent_segmentation(x, g, h, c, 2, weight=0.5).bone)
    mask = np.zeros(x.shape, bool)
    mask[:10] = True
    assert not seg.segment(Volume(x), mask)[10:].any()
    with pytest.raises(InputError, match="needs the scan"):
        DataConsistentSegmentation().segment(Volume(x))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"g": np.zeros((9, 10, 10))}, "times p"),
        ({"h": np.ones((4, 5, 5))}, "odd"),
        ({"x": np.full((20, 20, 20), np.nan)}, "NaN"),
        ({"weight": -1.0}, "weight"),
        ({"band": 0.7}, "band"),
        ({"marrow": 1.0, "bone": 0.5}, "above marrow"),
        ({"p": 0}, "decimation factor must"),
    ],
)
def test_bad_input(change: dict, message: str) -> None:
    f, g, h, c = _scene()
    args = {"x": f, "g": g, "h": h, "p": 2} | change
    kw = {k: v for k, v in change.items() if k not in ("x", "g", "h", "p")}
    with pytest.raises(InputError, match=message):
        data_consistent_segmentation(args["x"], args["g"], args["h"], c, args["p"], **kw)


def test_a_pipeline_measures_each_super_resolution_on_further_segmentations(tmp_path):
    from boneframe.pipeline import run_pipeline
    from boneframe.progress import Reporter
    from boneframe.spec import validate_spec

    spec = validate_spec(
        {
            "version": 1,
            "inputs": {"phantom": {"size": 32, "seed": 1, "offset": 0.05}},
            "kernels": [{"name": "l2"}],
            "superresolution": [
                {
                    "name": "l2",
                    "kernel": "l2",
                    "solver": {"name": "admm", "params": {"max_iter": 15}},
                }
            ],  # fmt: skip
            "metrics": {
                "structure": False,
                "per_iteration": False,
                "segmentations": ["partial-volume", {"name": "data-consistent"}],
            },
        }
    )
    result = run_pipeline(spec, tmp_path / "run", reporter=Reporter(quiet=True))
    rows = result.metrics["volumes"]
    for seg in ("partial-volume", "data-consistent"):
        row = rows[f"sr_l2 · {seg}"]
        assert row["segmentation"]["name"] == seg and 0 < row["bv_tv"] < 1
        assert row["psnr"] == rows["sr_l2"]["psnr"]  # the same grey volume
    assert "sr_l2 · partial-volume" in (tmp_path / "run" / "report.md").read_text()
