"""`boneframe contour`: the compartments of a scan as three mask files."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.cli import main
from boneframe.io import read_volume, write_volume
from boneframe.metrics.segmentation import dice
from boneframe.phantom_radius import radius_section

pytest.importorskip("py_aimio")


@pytest.fixture(scope="module")
def section():
    return radius_section((4, 448, 448), seed=2)


def test_contour_writes_the_three_masks_in_the_scans_format(section, tmp_path, capsys) -> None:
    scan = write_volume(section.scan, tmp_path / "C0001.AIM")
    assert main(["contour", str(scan), "--out", str(tmp_path / "masks")]) == 0
    out = capsys.readouterr().out
    assert "periosteal.aim" in out and "mm³" in out
    radius = section.bones.numpy() == 1
    for name in ("periosteal", "trabecular", "cortical"):
        mask = read_volume(tmp_path / "masks" / f"{name}.aim")
        assert mask.voxel_size == section.scan.voxel_size and mask.origin == (0.0, 0.0, 0.0)
        assert set(np.unique(mask.numpy())) <= {0, 1}
        truth = (getattr(section, name).numpy() != 0) & radius
        assert dice(mask.numpy(), truth) >= (0.98 if name != "cortical" else 0.9), name
    # another format on request, parameters validated by the strategy's model
    assert main(["contour", str(scan), "--out", str(tmp_path / "nii"), "--format", "nii.gz",
                 "--param", "bones=all"]) == 0  # fmt: skip
    both = read_volume(tmp_path / "nii" / "periosteal.nii.gz").numpy()
    assert dice(both, section.periosteal.numpy()) >= 0.98
    assert both.sum() > read_volume(tmp_path / "masks" / "periosteal.aim").numpy().sum()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "png"], "not a mask format"),
        (["--param", "peri_low=-5000"], "peri_low"),
        (["--param", "nonsense=1"], "nonsense"),
        (["--method", "nope"], "unknown contour 'nope'"),
    ],
)
def test_bad_options_are_one_error_line(section, tmp_path, capsys, extra, message) -> None:
    scan = write_volume(section.scan, tmp_path / "scan.nii.gz")
    capsys.readouterr()
    assert main(["contour", str(scan), "--out", str(tmp_path / "m"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_an_uncalibrated_scan_and_an_existing_output_are_refused(section, tmp_path, capsys):
    bare = write_volume(section.scan.with_data(section.scan.data, metadata={}), tmp_path / "b.npy")
    (tmp_path / "taken").mkdir()
    capsys.readouterr()
    assert main(["contour", str(bare), "--out", str(tmp_path / "m")]) == 2
    assert "calibration" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main(["contour", str(bare), "--out", str(tmp_path / "taken")]) == 2
    assert "exists" in capsys.readouterr().err
    # native units: the default thresholds (250, 350, 550 mg HA/cm³) in the scan's values
    native = [round((d + 391.209015) / (1603.51904 / 8192)) for d in (250, 350, 550)]
    code = main(["contour", str(bare), "--out", str(tmp_path / "m"), "--param", "units=native",
                 "--param", f"peri_low={native[0]}", "--param", f"peri_high={native[1]}",
                 "--param", f"endo_threshold={native[2]}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    calibrated = write_volume(section.scan, tmp_path / "c.npy")
    assert main(["contour", str(calibrated), "--out", str(tmp_path / "d")]) == 0
    for name in ("periosteal", "trabecular"):
        a = read_volume(tmp_path / "m" / f"{name}.npy").numpy()
        b = read_volume(tmp_path / "d" / f"{name}.npy").numpy()
        assert dice(a, b) > 0.999
