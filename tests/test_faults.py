"""Fault injection: every writing command killed (SIGKILL) at each of its write
boundaries leaves, under every output name, nothing or a complete output — and the
next run of the same command cleans up and succeeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from faults import KILLED, hidden_leftovers, kill_points, run_forked, sidecar_matches

from boneframe.io import read_volume, write_volume
from boneframe.kernel import Kernel
from boneframe.phantom import simulate_pair
from boneframe.volume import Volume


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    hr, lr = simulate_pair(24, seed=0, offset=0.05).volumes()
    for name, vol, chunks in (("hr", hr, 12), ("lr", lr, 6)):
        write_volume(vol, folder / f"{name}.npy")
        write_volume(Volume(da.from_array(vol.data, chunks=chunks), voxel_size=vol.voxel_size),
                     folder / f"{name}.zarr")  # fmt: skip
    Kernel(simulate_pair(24, seed=0).kernel[2:-2, 2:-2, 2:-2], offset=0.05,
           voxel_size=hr.voxel_size).save(folder / "k.npy")  # fmt: skip
    spec = {
        "version": 1,
        "inputs": {"phantom": {"size": 16, "kernel_support": 5}},
        "kernels": [{"name": "l2", "support": 5}],
        "superresolution": [
            {"name": "l2", "kernel": "l2", "solver": {"name": "admm", "params": {"max_iter": 2}}}
        ],
        "metrics": {"structure": False, "per_iteration": False},
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def _pair_complete(path: Path) -> bool:
    vol = read_volume(path)
    return vol.voxel_size is not None and sidecar_matches(path)


def _info_reads(path: Path) -> bool:
    """``boneframe info`` reads a volume output (in a fresh child: nothing cached)."""
    return not path.name.endswith((".npy", ".zarr")) or run_forked(["info", str(path)]) == 0


def _dir_complete(path: Path, names: tuple[str, ...]) -> bool:
    return all((path / n).exists() for n in names) and all(
        read_volume(path / n).shape for n in names if n.endswith((".npy", ".zarr"))
    )


#: A command with more kill points than this is tried at a deterministic sample of them.
SAMPLE_ABOVE = 12

COMMANDS = {
    "phantom": (["phantom", "{o}/ph", "--size", "24"], "ph",
                lambda p: _dir_complete(p, ("hr.npy", "lr.npy", "kernel.npy", "phantom.json"))),
    "phantom-zarr": (["phantom", "{o}/pz", "--size", "32", "--tile", "16", "--format", "zarr"],
                     "pz", lambda p: _dir_complete(p, ("hr.zarr", "lr.zarr", "phantom.json"))),
    "estimate-kernel": (["estimate-kernel", "{i}/hr.npy", "{i}/lr.npy", "--out", "{o}/k.npy",
                         "--support", "5", "--quiet"], "k.npy",
                        lambda p: _pair_complete(p) and Kernel.load(p).offset is not None),
    "estimate-kernel-zarr": (["estimate-kernel", "{i}/hr.zarr", "{i}/lr.zarr", "--out",
                              "{o}/k.zarr", "--support", "5", "--quiet"], "k.zarr",
                             lambda p: Kernel.load(p).offset is not None),
    "super-resolve": (["super-resolve", "{i}/lr.npy", "--kernel", "{i}/k.npy", "--out",
                       "{o}/sr.npy", "--max-iter", "2", "--quiet"], "sr.npy", _pair_complete),
    "super-resolve-zarr": (["super-resolve", "{i}/lr.zarr", "--kernel", "{i}/k.npy", "--out",
                            "{o}/sr.zarr", "--max-iter", "2", "--quiet"], "sr.zarr",
                           lambda p: np.isfinite(read_volume(p).numpy()).all()),
    "thickness": (["thickness", "{i}/hr.npy", "--out", "{o}/t.npy"], "t.npy", _pair_complete),
    "run": (["run", "{i}/spec.json", "--out", "{o}/run", "--quiet"], "run",
            lambda p: _dir_complete(p, ("metrics.json", "report.md", "kernel_l2.npy",
                                        "sr_l2.npy", "slices.png"))),
    "schema": (["schema", "--out", "{o}"], "pipeline.schema.json",
               lambda p: json.loads(p.read_text())["title"] == "boneframe pipeline spec"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(COMMANDS))
def test_killed_at_every_write_boundary(name, inputs, tmp_path) -> None:
    template, output, complete = COMMANDS[name]

    def argv(folder: Path) -> list[str]:
        return [a.format(i=inputs, o=folder) for a in template]

    (tmp_path / "count").mkdir()
    points = kill_points(argv(tmp_path / "count"), tmp_path / "log")
    assert len(points) >= 2, points  # at least: start writing, commit
    tried = list(enumerate(points, start=1))
    if len(tried) > SAMPLE_ABOVE and not os.environ.get("BONEFRAME_ALL_KILL_POINTS"):
        # inside a run's temporary folder the points are alike: every third, and the
        # last few (the commits); BONEFRAME_ALL_KILL_POINTS=1 tries them all
        tried = tried[::3] + [t for t in tried[-4:] if t not in tried[::3]]
    print(f"{name}: {len(points)} kill points, {len(tried)} tried")
    for n, label in tried:
        folder = tmp_path / f"kill{n}"
        folder.mkdir()
        assert run_forked(argv(folder), kill_at=n) == KILLED, (n, label)
        target = folder / output
        if target.exists():
            assert complete(target), f"{name} killed at {n} ({label}): {output} is incomplete"
            assert _info_reads(target), (name, n, label)
        # the next run cleans what the killed one left, and succeeds
        code = run_forked([*argv(folder), "--overwrite"] if target.exists() else argv(folder))
        assert code == 0, f"{name} after a kill at {n} ({label}) exited {code}"
        assert complete(target), (name, n, label)
        assert hidden_leftovers(folder) == [], (name, n, label, hidden_leftovers(folder))


OVERWRITES = {
    "estimate-kernel": (["estimate-kernel", "{i}/hr.npy", "{i}/lr.npy", "--out", "{o}/k.npy",
                         "--quiet", "--support"], ("3", "5"), "k.npy"),
    "thickness": (["thickness", "{i}/hr.npy", "--out", "{o}/t.npy", "--phase"],
                  ("marrow", "bone"), "t.npy"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OVERWRITES))
def test_an_overwrite_killed_leaves_the_old_or_the_new(name, inputs, tmp_path) -> None:
    """``--overwrite`` over an existing pair, killed at each boundary: the old pair or
    the new one, each whole (its volume with its own metadata), never a mix."""
    template, (old_arg, new_arg), output = OVERWRITES[name]

    def argv(folder: Path, arg: str) -> list[str]:
        return [a.format(i=inputs, o=folder) for a in template] + [arg]

    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_forked(argv(ref, old_arg)) == 0
    old_side = json.loads((ref / output).with_suffix(".json").read_text())
    old = np.load(ref / output)
    points = kill_points([*argv(ref, new_arg), "--overwrite"], tmp_path / "log")
    new_side = json.loads((ref / output).with_suffix(".json").read_text())
    new = np.load(ref / output)
    assert old.shape != new.shape or not np.array_equal(old, new, equal_nan=True)
    for n, label in enumerate(points, start=1):
        folder = tmp_path / f"kill{n}"
        folder.mkdir()
        assert run_forked(argv(folder, old_arg)) == 0
        assert run_forked([*argv(folder, new_arg), "--overwrite"], kill_at=n) == KILLED
        target = folder / output
        got = np.load(target)
        side = read_volume(target).metadata
        is_old = got.shape == old.shape and np.array_equal(got, old, equal_nan=True)
        is_new = got.shape == new.shape and np.array_equal(got, new, equal_nan=True)
        assert is_old or is_new, (name, n, label)
        expected = old_side if is_old else new_side
        assert read_volume(target).voxel_size == tuple(expected["voxel_size_um"]), (n, label)
        for key in ("command", "support", "phase", "offset"):
            if key in expected:
                assert side.get(key) == expected[key], (name, n, label, key)
        assert _info_reads(target), (name, n, label)
        assert run_forked([*argv(folder, new_arg), "--overwrite"]) == 0, (name, n, label)
        assert np.array_equal(np.load(target), new, equal_nan=True)
        assert sidecar_matches(target) and hidden_leftovers(folder) == [], (name, n, label)
