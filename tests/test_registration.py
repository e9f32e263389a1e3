"""Registration plumbing: geometry conversion, the fine grid, resampling, transform files,
parameters and the file-level command. Accuracy lives in test_registration_accuracy.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

pytest.importorskip("SimpleITK")
import SimpleITK as sitk  # noqa: E402

from boneframe.errors import BoneframeError, InputError, VolumeIOError  # noqa: E402
from boneframe.io import read_volume, write_volume  # noqa: E402
from boneframe.registration import (  # noqa: E402
    RegistrationError,
    RegistrationParams,
    RigidTransform,
    estimate_transform,
    fine_grid,
    from_sitk,
    read_transform,
    register,
    resample_to_fine_grid,
    run_registration,
    smooth_and_shrink,
    to_sitk,
    transform_difference,
    write_transform,
)
from boneframe.registration.phantom import simulate_pair, synthetic_structure  # noqa: E402
from boneframe.volume import Volume  # noqa: E402


def rotation(axis, angle_deg) -> np.ndarray:
    return RigidTransform.from_rotation(axis, angle_deg).matrix


# a direction with a permuted, rotated frame (det +1) and a mirrored one (det -1)
DIRECTIONS = {
    "identity": np.eye(3),
    "rotated": rotation((1, -2, 0.5), 33.0) @ np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    "mirrored": rotation((0.3, 1, 1), -20.0) @ np.diag([1.0, -1.0, 1.0]),
}


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_sitk_image_has_the_volume_geometry(name, rng):
    """ITK index (i2, i1, i0) of the image is array voxel (i0, i1, i2), at the same place."""
    vol = Volume(
        rng.random((5, 7, 9), dtype=np.float32),
        voxel_size=(41.0, 30.5, 82.0),
        origin=(-1234.5, 250.0, 3.25),
        direction=DIRECTIONS[name],
    )
    image = to_sitk(vol)
    assert image.GetSize() == (9, 7, 5)
    for _ in range(20):
        idx = rng.uniform(-1, 8, 3)
        itk_mm = image.TransformContinuousIndexToPhysicalPoint(tuple(idx[::-1]))
        np.testing.assert_allclose(np.asarray(itk_mm) * 1000, vol.index_to_world(idx), atol=1e-9)
    i0, i1, i2 = 4, 2, 7
    assert image.GetPixel(i2, i1, i0) == vol.data[i0, i1, i2]
    back = from_sitk(image)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.voxel_size, vol.voxel_size, rtol=1e-12)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-9)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-12)


@pytest.mark.parametrize("p", [2, 3])
@pytest.mark.parametrize("pad", [0, 3])
def test_fine_voxel_p_i_is_hr_voxel_i(p, pad, rng):
    fixed = Volume(
        np.zeros((6, 8, 10), np.float32),
        voxel_size=(82.0, 61.0, 90.0),
        origin=(100.0, -50.0, 7.0),
        direction=DIRECTIONS["rotated"],
    )
    grid = fine_grid(fixed, p, pad)
    assert grid.shape == tuple(p * (n + 2 * pad) for n in fixed.shape)
    fine = Volume(np.zeros((1, 1, 1)), grid.voxel_size, grid.origin, grid.direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape], indexing="ij"), -1)
    idx = idx.reshape(-1, 3)
    hr = np.array([fixed.index_to_world(i) for i in idx])
    fine_pts = np.array([fine.index_to_world(p * (i + pad)) for i in idx])
    assert np.max(np.abs(fine_pts - hr)) / 1000 < 1e-6  # mm


def smooth_field(points_um: np.ndarray) -> np.ndarray:
    """A smooth analytic phantom (wavelengths 1.2–2 mm) of world position (µm)."""
    x = np.asarray(points_um) / 1000.0
    return (
        np.sin(2 * np.pi * (0.5 * x[..., 0] + 0.2 * x[..., 1]) + 0.3)
        + 0.7 * np.cos(2 * np.pi * (0.35 * x[..., 2] - 0.4 * x[..., 0]))
        + 0.2 * x[..., 1]
    )


@pytest.fixture(scope="module")
def analytic_pair():
    """Moving: the field sampled at 24 µm in a rotated frame; fixed: 82 µm, another frame."""
    shape = (100, 110, 120)
    moving = Volume(
        np.zeros(shape, np.float32),
        voxel_size=(24.0, 24.0, 24.0),
        origin=(-1400.0, -1300.0, -1500.0),
        direction=rotation((0.2, 1, 0.3), 8.0),
    )
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = moving.origin + (idx * 24.0) @ moving.direction.T
    moving = moving.with_data(smooth_field(world).astype(np.float32))
    fixed = Volume(
        np.zeros((12, 14, 13), np.float32),
        voxel_size=(82.0, 82.0, 82.0),
        origin=(-500.0, -560.0, -480.0),
        direction=DIRECTIONS["rotated"],
    )
    transform = RigidTransform.from_rotation((1, 1, -1), 6.0, (120.0, -80.0, 60.0), (0, 0, 0))
    return moving, fixed, transform


def hr_truth(fixed: Volume, transform: RigidTransform) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape], indexing="ij"), -1)
    world = np.asarray(fixed.origin) + (idx * 82.0) @ fixed.direction.T
    return smooth_field(transform.apply(world))


@pytest.mark.parametrize("interp, tol", [("linear", 3e-3), ("bspline", 1e-4)])
def test_resampled_fine_grid_matches_the_phantom_on_hr_voxels(analytic_pair, interp, tol):
    moving, fixed, transform = analytic_pair
    out = resample_to_fine_grid(moving, fixed, transform, p=2, interp=interp)
    assert out.shape == tuple(2 * n for n in fixed.shape)
    assert out.origin == fixed.origin
    np.testing.assert_allclose(out.voxel_size, np.asarray(fixed.voxel_size) / 2)
    err = np.max(np.abs(out.data[::2, ::2, ::2] - hr_truth(fixed, transform)))
    assert err < tol, err
    # the x2 zoom of the HR-pQCT's bounding box (voxel 0 a quarter HR voxel earlier)
    # is the wrong grid: the same comparison fails there
    shift = fixed.direction @ np.full(3, -0.25 * 82.0)
    zoom_fixed = fixed.with_data(fixed.data, origin=tuple(np.asarray(fixed.origin) + shift))
    zoomed = resample_to_fine_grid(moving, zoom_fixed, transform, p=2, interp=interp)
    err_zoom = np.max(np.abs(zoomed.data[::2, ::2, ::2] - hr_truth(fixed, transform)))
    assert err_zoom > 10 * 3e-3, err_zoom  # 0.07: a quarter voxel of a 1.2 mm wave


def test_resampling_in_slabs_equals_one_slab(analytic_pair):
    moving, fixed, transform = analytic_pair
    whole = resample_to_fine_grid(moving, fixed, transform, interp="bspline")
    slabs = resample_to_fine_grid(moving, fixed, transform, interp="bspline", slab_bytes=1)
    np.testing.assert_allclose(slabs.data, whole.data, atol=1e-5)


def test_int16_stays_int16_rounded_and_outside_is_fill(rng):
    data = rng.integers(-3000, 3000, (30, 30, 30)).astype(np.int16)
    moving = Volume(data, voxel_size=(20.0, 20.0, 20.0), direction=np.eye(3))
    fixed = Volume(np.zeros((8, 8, 8), np.float32), (40.0, 40.0, 40.0), direction=np.eye(3))
    ident = RigidTransform(np.eye(3))
    out = resample_to_fine_grid(moving, fixed, ident, p=2, fill=-7)
    assert out.dtype == np.int16
    # fine spacing 20 µm = the moving's: voxel for voxel, where it exists
    np.testing.assert_array_equal(out.data[:16, :16, :16], data[:16, :16, :16])
    shifted = RigidTransform(np.eye(3), translation_um=(10.0, 0.0, 0.0))
    half = resample_to_fine_grid(moving, fixed, shifted, p=2)
    expected = np.rint((data[:15, :16, :16].astype(float) + data[1:16, :16, :16]) / 2)
    np.testing.assert_array_equal(half.data[:15, :16, :16], expected)
    far = RigidTransform(np.eye(3), translation_um=(5000.0, 0.0, 0.0))
    assert np.all(resample_to_fine_grid(moving, fixed, far, p=2, fill=-7).data == -7)


def test_smooth_and_shrink_in_slabs_equals_whole_volume(rng, monkeypatch):
    from scipy.ndimage import gaussian_filter

    import boneframe.registration.resample as rr

    data = rng.random((41, 23, 30), dtype=np.float32)
    moving = Volume(data, voxel_size=(24.0, 30.0, 20.0))
    monkeypatch.setattr(rr, "_SLAB_BYTES", 4 * 23 * 30 * 3)  # a few rows per slab
    low, vs = smooth_and_shrink(moving, 82.0, 140.0)
    assert vs == (72.0, 60.0, 80.0)
    sigma = [140.0 / rr.FWHM_PER_SIGMA / v for v in (24.0, 30.0, 20.0)]
    whole = gaussian_filter(data, sigma, mode="nearest", truncate=4.0)[::3, ::2, ::4]
    np.testing.assert_allclose(low, whole, atol=1e-5)


def test_transform_file_round_trip_within_1e9_mm(tmp_path, rng):
    tx = RigidTransform.from_rotation(
        rng.normal(size=3), 4.321, tuple(rng.uniform(-400, 400, 3)), (1234.5, -987.6, 55.5)
    )
    path = write_transform(tx, tmp_path / "t.tfm")
    back = read_transform(path)
    pts = rng.uniform(-20000, 20000, (1000, 3))
    assert np.max(np.abs(back.apply(pts) - tx.apply(pts))) / 1000 < 1e-9
    # ITK reads it as the same map (mm)
    itk = sitk.ReadTransform(str(path))
    mapped = np.array([itk.TransformPoint(tuple(p / 1000)) for p in pts[:20]]) * 1000
    np.testing.assert_allclose(mapped, tx.apply(pts[:20]), atol=1e-6)
    with pytest.raises(VolumeIOError, match="already exists"):
        write_transform(tx, path)
    # the inverse maps back
    np.testing.assert_allclose(tx.inverse().apply(tx.apply(pts)), pts, atol=1e-8)


def test_non_rigid_transform_file_is_refused(tmp_path):
    aff = sitk.AffineTransform(3)
    aff.Scale(1.1)
    sitk.WriteTransform(aff, str(tmp_path / "a.tfm"))
    with pytest.raises(InputError, match="not a rotation"):
        read_transform(tmp_path / "a.tfm")
    (tmp_path / "bad.tfm").write_text("not a transform\n")
    with pytest.raises(VolumeIOError, match="bad.tfm"):
        read_transform(tmp_path / "bad.tfm")


def test_mirrored_pair_is_refused():
    moving = Volume(np.zeros((8, 8, 8), np.float32), (24.0, 24.0, 24.0), direction=np.eye(3))
    fixed = Volume(
        np.zeros((8, 8, 8), np.float32),
        voxel_size=(82.0, 82.0, 82.0),
        direction=np.diag([1.0, 1.0, -1.0]),
    )
    with pytest.raises(InputError, match="mirror"):
        register(moving, fixed)
    with pytest.raises(InputError, match="mirror"):
        estimate_transform(moving, fixed)


def test_parameters_are_validated():
    with pytest.raises(ValidationError):
        RegistrationParams(learning_rte=0.1)
    with pytest.raises(ValidationError, match="one smoothing sigma per level"):
        RegistrationParams(shrink_factors=(4, 2, 1), smoothing_sigmas_mm=(0.3, 0.0))
    with pytest.raises(ValidationError):
        RegistrationParams(sampling=0.0)
    with pytest.raises(ValidationError, match="init must be"):
        RegistrationParams(init="centre")
    with pytest.raises(ValidationError, match="exceeds max_samples"):
        RegistrationParams(min_samples=2_000_000)
    schema = RegistrationParams.model_json_schema()
    assert all(f.get("description") for f in schema["properties"].values())


@pytest.fixture(scope="module")
def small_pair():
    occ = synthetic_structure(150, seed=3)
    return simulate_pair(
        occ, angle_deg=3.0, axis=(1, 0.5, -1), translation_um=(150, -100, 200), lr_shape=28
    )


def test_same_seed_gives_identical_parameters_and_register_is_one_call(small_pair):
    a = estimate_transform(small_pair.moving, small_pair.fixed, RegistrationParams(seed=5))
    b, fine = register(small_pair.moving, small_pair.fixed, seed=5, interp="bspline")
    np.testing.assert_array_equal(a.transform.matrix, b.transform.matrix)
    assert a.transform.translation_um == b.transform.translation_um
    assert a.metric_final == b.metric_final
    assert b.params == RegistrationParams(seed=5, interp="bspline")
    assert "resample" in b.times_s
    c = estimate_transform(small_pair.moving, small_pair.fixed, RegistrationParams(seed=6))
    assert c.transform.translation_um != a.transform.translation_um
    assert transform_difference(a.transform, small_pair.truth, small_pair.fixed)[1] < 10
    # Volume out: the micro-CT on the fine grid, voxel 2i on HR-pQCT voxel i
    fixed = small_pair.fixed
    assert isinstance(fine, Volume) and fine.shape == tuple(2 * n for n in fixed.shape)
    np.testing.assert_allclose(fine.origin, fixed.origin, atol=1e-9)
    np.testing.assert_allclose(fine.voxel_size, np.asarray(fixed.voxel_size) / 2)
    same = resample_to_fine_grid(small_pair.moving, fixed, b.transform, interp="bspline")
    np.testing.assert_array_equal(fine.data, same.data)


def test_register_validates_its_keywords(small_pair):
    moving, fixed = small_pair.moving, small_pair.fixed
    with pytest.raises(InputError, match="learning_rte"):
        register(moving, fixed, learning_rte=0.1)
    with pytest.raises(InputError, match=r"interp: .*'linear' or 'bspline'"):
        register(moving, fixed, RegistrationParams(seed=3), interp="cubic")
    with pytest.raises(InputError, match="moving must be a Volume"):
        register(moving.numpy(), fixed)


def test_importing_registration_does_not_import_simpleitk():
    import subprocess
    import sys

    code = (
        "import sys, boneframe.registration, boneframe.registration.phantom, boneframe.spec; "
        "print('SimpleITK' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_run_registration_writes_volume_transform_and_report(small_pair, tmp_path):
    write_volume(small_pair.moving, tmp_path / "uct.npy")
    write_volume(small_pair.fixed, tmp_path / "hr.nii.gz")
    out = tmp_path / "f.npy"
    result = run_registration(tmp_path / "uct.npy", tmp_path / "hr.nii.gz", out)
    vol = read_volume(out)
    fixed = read_volume(tmp_path / "hr.nii.gz")
    assert vol.dtype == np.int16
    assert vol.shape == tuple(2 * n for n in fixed.shape)
    np.testing.assert_allclose(vol.origin, fixed.origin, atol=1e-3)
    np.testing.assert_allclose(vol.voxel_size, np.asarray(fixed.voxel_size) / 2, rtol=1e-6)
    report = json.loads((tmp_path / "f.json").read_text())
    for key in ("params", "versions", "metric_initial", "metric_final", "times_s", "cpu_s"):
        assert key in report, key
    assert report["params"]["bins"] == 32 and "SimpleITK" in report["versions"]
    assert report["metric_final"] < report["metric_initial"]
    assert report["stop_reason"] and report["iterations_total"] > 0
    tx = read_transform(tmp_path / "f.tfm")
    np.testing.assert_allclose(tx.matrix, result.transform.matrix, atol=1e-12)
    with pytest.raises(BoneframeError, match="already exists"):
        run_registration(tmp_path / "uct.npy", tmp_path / "hr.nii.gz", out)


def test_run_registration_refuses_a_failed_registration(small_pair, tmp_path, monkeypatch):
    import boneframe.registration.workflow as workflow

    write_volume(small_pair.moving, tmp_path / "uct.npy")
    # the HR-pQCT reaching far beyond the micro-CT: too little overlap
    big = Volume(
        np.zeros((120, 28, 28), np.float32) + small_pair.fixed.data[:1],
        small_pair.fixed.voxel_size,
        small_pair.fixed.origin,
        small_pair.fixed.direction,
    )
    big.data[:28] = small_pair.fixed.data
    write_volume(big, tmp_path / "hr.npy")
    write_transform(small_pair.truth, tmp_path / "truth.tfm")
    params = RegistrationParams(init=str(tmp_path / "truth.tfm"))
    with pytest.raises(RegistrationError, match="inside the micro-CT"):
        run_registration(tmp_path / "uct.npy", tmp_path / "hr.npy", tmp_path / "f.npy", params)
    assert not (tmp_path / "f.npy").exists() and not (tmp_path / "f.tfm").exists()

    def no_gain(*args, **kwargs):
        result = estimate_transform(*args, **kwargs)
        result.metric_final = result.metric_initial
        return result

    write_volume(small_pair.fixed, tmp_path / "hr2.npy")
    monkeypatch.setattr(workflow, "estimate_transform", no_gain)
    with pytest.raises(RegistrationError, match="no better"):
        run_registration(tmp_path / "uct.npy", tmp_path / "hr2.npy", tmp_path / "f.npy")
    assert not (tmp_path / "f.npy").exists()


def test_a_start_outside_the_micro_ct_is_a_clear_error(tmp_path, rng):
    moving = Volume(rng.random((40, 40, 40), dtype=np.float32), voxel_size=(24.0, 24.0, 24.0))
    fixed = Volume(rng.random((16, 16, 16), dtype=np.float32), voxel_size=(82.0, 82.0, 82.0))
    far = RigidTransform(np.eye(3), translation_um=(50000.0, 0.0, 0.0))
    write_transform(far, tmp_path / "far.tfm")
    with pytest.raises(RegistrationError, match="do not sufficiently overlap"):
        estimate_transform(moving, fixed, RegistrationParams(init=str(tmp_path / "far.tfm")))


def test_metric_samples_per_level_between_the_bounds():
    from boneframe.registration.optimise import _sampling

    p = RegistrationParams()  # 25 %, at least 1e5, at most 1e6 samples; shrink 2-1-1
    assert _sampling(p, 40**3) == [1.0, 1.0, 1.0]  # small scans: every voxel
    assert _sampling(p, 100**3) == [0.8, 0.25, 0.25]  # 125k voxels at level 0: 1e5 of them
    assert _sampling(p, 400**3) == pytest.approx([0.125, 1e6 / 400**3, 1e6 / 400**3])


def test_cli_register(small_pair, tmp_path, capsys):
    from boneframe.cli import main

    write_volume(small_pair.moving, tmp_path / "uct.npy")
    write_volume(small_pair.fixed, tmp_path / "hr.npy")
    code = main(["register", str(tmp_path / "uct.npy"), str(tmp_path / "hr.npy"),
                 "--out", str(tmp_path / "f.zarr")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "rotation" in out and (tmp_path / "f.tfm").is_file()
    assert read_volume(tmp_path / "f.zarr").shape == tuple(2 * n for n in small_pair.fixed.shape)
    code = main(["register", str(tmp_path / "uct.npy"), str(tmp_path / "hr.npy"),
                 "--out", str(tmp_path / "g.npy"), "--interp", "cubic"])  # fmt: skip
    assert code == 2 and "interp" in capsys.readouterr().err


def test_cli_register_reserves_its_outputs(small_pair, tmp_path, capsys):
    """The .tfm was checked but not reserved, and an old one outlived its volume."""
    from boneframe.cli import main

    write_volume(small_pair.moving, tmp_path / "uct.npy")
    write_volume(small_pair.fixed, tmp_path / "hr.npy")
    argv = ["register", str(tmp_path / "uct.npy"), str(tmp_path / "hr.npy"),
            "--out", str(tmp_path / "f.npy")]  # fmt: skip
    (tmp_path / "f.tfm").write_text("mine")
    assert main(argv) == 2 and "f.tfm already exists" in capsys.readouterr().err
    assert (tmp_path / "f.tfm").read_text() == "mine" and not (tmp_path / "f.npy").exists()
    (tmp_path / "f.tfm").unlink()
    assert main(argv) == 0
    first = (tmp_path / "f.tfm").read_text()
    assert main(argv) == 2 and "f.npy already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert (tmp_path / "f.tfm").read_text().startswith("#Insight Transform File")
    assert first.startswith("#Insight Transform File")
    side = read_volume(tmp_path / "f.npy").metadata
    assert side["transform_file"] == "f.tfm"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
