"""The output contract: nothing lost, nothing half-written, one ``error:`` line and
exit 2 for everything a user can fix — each case the fault injector found (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from faults import hidden_leftovers, run_forked
from test_registry import make_package, run_cli

import boneframe.io.atomic as atomic
from boneframe.cli import main
from boneframe.io import read_volume, write_volume
from boneframe.io.atomic import clean_leftovers, reserve
from boneframe.kernel import Kernel
from boneframe.phantom import simulate_pair
from boneframe.volume import Volume


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pair")
    hr, lr = simulate_pair(24, seed=1, offset=0.05).volumes()
    write_volume(hr, folder / "hr.npy")
    write_volume(lr, folder / "lr.npy")
    Kernel(np.full((3, 3, 3), 1 / 27), offset=0.05, voxel_size=hr.voxel_size).save(
        folder / "k.npy"
    )
    return folder


def _one_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- nothing lost --------------------------------------------------------------------------
def test_an_output_that_appears_meanwhile_is_kept(tmp_path, monkeypatch, capsys) -> None:
    """It used to be deleted: the existence check ran only at the start."""
    out = tmp_path / "ph"
    real = atomic.checkpoint

    def someone_else_writes_it(label: str) -> None:
        if label == "committing ph":
            out.mkdir()
            (out / "precious.txt").write_text("mine")
        real(label)

    monkeypatch.setattr(atomic, "checkpoint", someone_else_writes_it)
    code = main(["phantom", str(out), "--size", "16"])
    _one_error(capsys, code, "appeared while this command was running")
    assert (out / "precious.txt").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["precious.txt"]
    assert hidden_leftovers(tmp_path) == []


def test_a_second_writer_of_one_output_is_refused(tmp_path) -> None:
    """Two ``run --out O`` at once both exited 0; the last won."""
    out = tmp_path / "ph"
    with reserve(out):  # this process is writing ph
        assert run_forked(["phantom", str(out), "--size", "16"]) == 2
    assert not out.exists()
    assert run_forked(["phantom", str(out), "--size", "16"]) == 0


def test_a_killed_writers_leftovers_are_cleaned_by_the_next(tmp_path) -> None:
    out = tmp_path / "k.npy"
    dead = 2**22 + 12345  # no such process
    for name in (f".tmp-{dead}-0123abcd-k.npy", f".old-{dead}-89abcdef-k.npy"):
        (tmp_path / name).mkdir()
    (tmp_path / ".k.npy.lock").write_text(f"{dead} {os.uname().nodename}\n")
    alive = tmp_path / f".tmp-{os.getpid()}-01234567-k.npy"  # ours: not a leftover
    alive.write_text("")
    with reserve(out):
        pass
    assert hidden_leftovers(tmp_path) == [alive.name]
    assert clean_leftovers(out) == []


def test_a_kernel_without_its_sidecar_needs_an_explicit_offset(pair, tmp_path, capsys) -> None:
    """A kernel whose sidecar was lost was used with offset 0, silently."""
    kernel = tmp_path / "k.npy"
    np.save(kernel, np.load(pair / "k.npy"))
    argv = ["super-resolve", str(pair / "lr.npy"), "--kernel", str(kernel),
            "--out", str(tmp_path / "sr.npy"), "--quiet"]  # fmt: skip
    _one_error(capsys, main(argv), "offset")
    assert main([*argv, "--offset", "0.05", "--max-iter", "2"]) == 0


def test_a_sidecar_of_another_volume_is_not_used(pair, tmp_path, capsys) -> None:
    """A volume replaced by hand keeps its old sidecar: its fingerprint says so."""
    vol = tmp_path / "lr.npy"
    write_volume(read_volume(pair / "lr.npy"), vol)
    assert read_volume(vol).voxel_size == (82.0, 82.0, 82.0)
    np.save(vol, np.zeros((4, 4, 4), np.float32))  # the sidecar stays, unmatched
    assert read_volume(vol).voxel_size is None
    _one_error(capsys, main(["metrics", str(vol)]), "records a voxel size")


# -- impossible values -------------------------------------------------------------------
IMPOSSIBLE = [
    (["super-resolve", "{p}/lr.npy", "--kernel", "{p}/k.npy", "--out", "{o}/sr.npy",
      "--mu", "inf"], "--mu"),
    (["phantom", "{o}/x", "--size", "0"], "--size"),
    (["phantom", "{o}/x", "--noise", "-1"], "--noise"),
    (["phantom", "{o}/x", "--offset", "inf"], "--offset"),
    (["phantom", "{o}/x", "--kernel-gain", "0"], "--kernel-gain"),
    (["phantom", "{o}/x", "--p", "0"], "--p"),
    (["thickness", "{p}/hr.npy", "--out", "{o}/t.npy", "--threshold", "nan"], "--threshold"),
    (["estimate-kernel", "{p}/hr.npy", "{p}/lr.npy", "--out", "{o}/k.npy", "--p", "0"], "--p"),
    (["estimate-kernel", "{p}/hr.npy", "{p}/lr.npy", "--out", "{o}/k.npy", "--support", "4"],
     "odd"),
    (["estimate-kernel", "{p}/hr.npy", "{p}/lr.npy", "--out", "{o}/k.npy", "--param", "bins"],
     "KEY=VALUE"),
    (["estimate-kernel", "{p}/hr.npy", "{p}/lr.npy", "--out", "{o}/k.npy", "--param",
      "bins=[1"], "--param"),
    (["super-resolve", "{o}/empty.npy", "--kernel", "{p}/k.npy", "--out", "{o}/sr.npy",
      "--voxel-size", "82"], "empty"),
    (["schema", "--out", "{o}/file.txt"], "is a file"),
    (["run", "{o}/latin1.yaml", "--quiet"], "UTF-8"),
    (["run", "{o}/tv-kernel.yaml", "--quiet"], "not differentiable"),
    (["run", "{o}/chunk.yaml", "--quiet"], "multiple of inputs.p"),
    (["run", "{o}/text-kernel.yaml", "--quiet"], "cannot read"),
    (["metrics", "{o}/flat.npy"], "direction"),
    (["info", "{o}/fifo.npy"], "not a regular file"),
    (["metrics", "--bogus"], "No such option"),
    (["phantom", "{o}/x", "--seed", "-1"], "--seed"),
    (["super-resolve", "{p}/lr.npy", "--kernel", "{p}/k.npy", "--out", "{o}/sr.npy",
      "--mu", "1e308"], "--mu"),
    (["phantom", "{o}/x", "--size", "16", "--kernel", "{o}/strings.npy"], "not numbers"),
]  # fmt: skip


@pytest.fixture
def bad_files(tmp_path: Path, pair: Path) -> Path:
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), np.float32))
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "latin1.yaml").write_bytes("version: 1 # é\n".encode("latin-1"))
    base = "version: 1\ninputs: {phantom: {size: 16}}\n"
    (tmp_path / "tv-kernel.yaml").write_text(base + "kernels: [{name: k, regularizer: tv}]\n")
    (tmp_path / "chunk.yaml").write_text(base + "compute: {chunk_size: 17}\n")
    (tmp_path / "text.npy").write_text("not numbers")
    (tmp_path / "text-kernel.yaml").write_text(
        base + f"superresolution: [{{name: s, kernel: {tmp_path / 'text.npy'}, offset: 0}}]\n"
    )
    np.save(tmp_path / "flat.npy", np.zeros((4, 4, 4), np.float32))
    (tmp_path / "flat.json").write_text(
        json.dumps({"voxel_size_um": [41, 41, 41], "direction": [[0] * 3] * 3})
    )
    os.mkfifo(tmp_path / "fifo.npy")
    np.save(tmp_path / "strings.npy", np.array(["ab"] * 8).reshape(2, 2, 2))
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "needle"), IMPOSSIBLE, ids=[" ".join(a[:3]) for a, _ in IMPOSSIBLE]
)
def test_impossible_values_and_files_exit_2_with_one_line(
    argv, needle, bad_files, pair, capsys
) -> None:
    before = sorted(os.listdir(bad_files))
    code = main([a.format(p=pair, o=bad_files) for a in argv])
    _one_error(capsys, code, needle)
    assert sorted(os.listdir(bad_files)) == before  # nothing written, nothing left


def test_run_refuses_to_replace_the_current_folder(tmp_path, monkeypatch, capsys) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\ninputs: {phantom: {size: 16}}\n")
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    _one_error(capsys, main(["run", str(spec), "--out", ".", "--overwrite"]), "current directory")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_schema_is_not_replaced_without_overwrite(tmp_path, capsys) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    _one_error(capsys, main(["schema", "--out", str(tmp_path)]), "--overwrite")
    assert main(["schema", "--out", str(tmp_path), "--overwrite"]) == 0


# -- the disk and the folders ---------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root: skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_no_space_left_exits_2_and_leaves_nothing(small_disk, capsys) -> None:
    out = small_disk / "ph"
    _one_error(capsys, main(["phantom", str(out), "--size", "64"]), "No space left")
    assert os.listdir(small_disk) == []


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (a root user ignores permission bits; skipped without mount)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        mount.chmod(0o555)
    yield mount
    subprocess.run(["umount", str(mount)], check=False, capture_output=True)
    mount.chmod(0o755)


def test_a_read_only_folder_exits_2(read_only, pair, capsys) -> None:
    argv = ["estimate-kernel", str(pair / "hr.npy"), str(pair / "lr.npy"),
            "--out", str(read_only / "k.npy"), "--support", "5", "--quiet"]  # fmt: skip
    line = _one_error(capsys, main(argv))
    assert "Read-only" in line or "Permission denied" in line, line
    assert os.listdir(read_only) == []


# -- plugins and metrics ---------------------------------------------------------------------
def test_a_plugin_that_exits_on_import_silences_nothing(tmp_path) -> None:
    """``sys.exit()`` in a plugin made ``info`` and ``plugins`` exit 1 with no output."""
    make_package(tmp_path, "exitpkg", {"exitmod": "import sys\nsys.exit(3)\n"},
                 {"quitter": "exitmod"})  # fmt: skip
    res = run_cli("plugins", env_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "quitter" in res.stdout and "exitpkg" in res.stdout and "SystemExit" in res.stdout
    np.save(tmp_path / "v.npy", np.zeros((2, 2, 2)))
    res = run_cli("info", str(tmp_path / "v.npy"), env_path=tmp_path)
    assert res.returncode == 0 and "shape" in res.stdout, res.stderr


def test_a_clash_is_named_where_it_blocks_a_run(tmp_path) -> None:
    dup = """
        from boneframe.hookspecs import hookimpl
        from boneframe.similarity.l2 import L2

        class AnotherL2(L2):
            pass

        @hookimpl
        def boneframe_similarities():
            return [AnotherL2]
    """
    make_package(tmp_path, "clashpkg", {"clashmod": dup}, {"clash": "clashmod"})
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\ninputs: {phantom: {size: 16}}\nkernels: [{name: k}]\n")
    res = run_cli("run", str(spec), "--out", str(tmp_path / "o"), env_path=tmp_path)
    assert res.returncode == 2
    assert "similarity 'l2' is registered twice" in res.stderr and "clashpkg" in res.stderr
    assert not (tmp_path / "o").exists()


def test_bonej_stack_filling_cube(tmp_path, capsys) -> None:
    """A full 3³ volume: DA has no phase change and is null with its reason; χ = 1 and
    BoneJ's Conn.D = 1/27 (per mm³ at 1 mm voxels) are still reported — also with no
    threshold given (Otsu's of a constant was its value: nothing was bone)."""
    from boneframe.metrics import measure

    m = measure(np.ones((3, 3, 3)), voxel_size=1000.0, threshold=0.5)
    assert m["euler"] == 1.0
    assert m["conn_d_bonej"] == pytest.approx(1 / 27)
    assert m["bv_tv"] == 1.0
    assert m["da"] is None and "da" in m["skipped"]
    cube = tmp_path / "cube.npy"
    write_volume(Volume(np.ones((3, 3, 3), np.uint8), voxel_size=(1000.0,) * 3), cube)
    capsys.readouterr()
    assert main(["metrics", str(cube), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["bv_tv"] == 1.0 and m["euler"] == 1.0
    assert m["conn_d_bonej"] == pytest.approx(1 / 27)


def test_an_internal_error_exits_1_and_asks_for_a_report(monkeypatch, capsys) -> None:
    def broken() -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("boneframe.registry.get_registry", broken)
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error: ZeroDivisionError") and "report" in err


def test_a_data_warning_is_one_line(tmp_path, capsys) -> None:
    """A foreign zarr with absent chunks: read as the fill value, counted, said once."""
    import zarr

    path = tmp_path / "foreign.zarr"
    arr = zarr.create_array(str(path), shape=(8, 8, 8), chunks=(4, 4, 4), dtype="f4")
    arr[...] = np.arange(512, dtype="f4").reshape(8, 8, 8) + 1
    os.remove(path / "c" / "1" / "1" / "1")
    assert main(["info", str(path)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and err[0].startswith("warning: ") and "1 of 8 chunks" in err[0]
