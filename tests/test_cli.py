"""The command line: phantom output, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneframe.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_phantom_writes_the_pair(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "phantom", str(out), "--size", "48", "--format", "npy")
    assert code == 0, err
    assert np.load(out / "hr.npy").shape == (48, 48, 48)
    assert np.load(out / "lr.npy").shape == (24, 24, 24)
    params = json.loads((out / "phantom.json").read_text())
    assert params["size"] == [48, 48, 48] and params["seed"] == 0 and params["noise"] == 0.01
    assert json.loads((out / "lr.json").read_text())["voxel_size_um"] == [82.0, 82.0, 82.0]
    kernel = np.load(out / "kernel.npy")
    assert kernel.shape == (9, 9, 9) and kernel.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("fmt", ["zarr", "tif", "nii"])
def test_phantom_formats_are_deterministic(tmp_path, capsys, fmt):
    from boneframe.io import read_volume

    for name in ("a", "b"):
        assert run(capsys, "phantom", str(tmp_path / name), "--size", "16", "--format", fmt)[0] == 0
    ext = {"zarr": ".zarr", "tif": ".tif", "nii": ".nii.gz"}[fmt]
    a, b = (read_volume(tmp_path / n / f"lr{ext}") for n in ("a", "b"))
    assert a.numpy().tobytes() == b.numpy().tobytes() and a.voxel_size == (82.0, 82.0, 82.0)


def test_existing_output_dir_is_refused_then_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    code, _, err = run(capsys, "phantom", str(out), "--size", "16")
    assert code == 2 and "already exists" in err
    assert (out / "mine.txt").read_text() == "precious"
    assert run(capsys, "phantom", str(out), "--size", "16", "--overwrite")[0] == 0
    assert not (out / "mine.txt").exists() and (out / "hr.npy").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["phantom", "{tmp}/x", "--size", "17"], "multiple of p"),
        (["phantom", "{tmp}/x", "--kernel-support", "8"], "odd"),
        (["phantom", "{tmp}/x", "--kernel-sigma", "a,b"], "--kernel-sigma"),
        (["phantom", "{tmp}/x", "--format", "png"], "--format: Input should be"),
        (["info", "{tmp}/corrupt.npy"], "cannot read"),
        (["info", "{tmp}/missing.nii.gz"], "no such file"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err + out
    assert not (tmp_path / "x").exists()


def test_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "phantom")
    assert code == 2 and "Missing argument" in err


def test_info_prints_geometry(tmp_path, capsys):
    assert run(capsys, "phantom", str(tmp_path / "p"), "--size", "16")[0] == 0
    code, out, _ = run(capsys, "info", str(tmp_path / "p" / "hr.npy"))
    assert code == 0 and "(16, 16, 16)" in out and "41, 41, 41 µm" in out
