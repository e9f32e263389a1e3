"""A volume and its sidecar as one unit (boneframe.io.unit), the lock that reserves a
name (boneframe.io.atomic) and the fingerprint that ties a sidecar to its volume —
each case from the fresh-reader review of issue 20."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from faults import run_forked

import boneframe.io.atomic as atomic
import boneframe.io.sidecar as sidecar
from boneframe.cli import main
from boneframe.errors import VolumeIOError
from boneframe.io import read_volume, write_volume
from boneframe.io.atomic import rename_noreplace, reserve
from boneframe.io.unit import reserve_volume
from boneframe.volume import Volume


def _vol(value: float = 1.0, vs: float = 41.0) -> Volume:
    return Volume(np.full((4, 5, 6), value, np.float32), voxel_size=(vs, vs, vs))


# -- one sidecar name, two volumes -------------------------------------------------------
def test_a_volume_never_takes_the_sidecar_of_another(tmp_path) -> None:
    """Writing k.tif deleted (or replaced) the sidecar of k.npy."""
    npy, tif = tmp_path / "k.npy", tmp_path / "k.tif"
    write_volume(_vol(vs=41.0), npy)
    before = (tmp_path / "k.json").read_text()
    for overwrite in (False, True):
        with pytest.raises(VolumeIOError, match="holds the metadata of .*k.npy"):
            write_volume(_vol(vs=82.0), tif, overwrite=overwrite)
    assert not tif.exists()
    assert (tmp_path / "k.json").read_text() == before
    assert read_volume(npy).voxel_size == (41.0, 41.0, 41.0)


def test_a_sidecar_of_another_volume_is_not_read(tmp_path) -> None:
    write_volume(_vol(vs=41.0), tmp_path / "k.npy")
    np.save(tmp_path / "other.npy", np.zeros((4, 5, 6), np.float32))
    os.replace(tmp_path / "other.npy", tmp_path / "k2.npy")
    (tmp_path / "k2.json").write_text((tmp_path / "k.json").read_text())  # copied by hand
    assert read_volume(tmp_path / "k2.npy").voxel_size is None


def test_the_sidecar_of_an_absent_volume_is_a_leftover(tmp_path) -> None:
    write_volume(_vol(vs=41.0), tmp_path / "k.npy")
    (tmp_path / "k.npy").unlink()  # as a writer killed between the two commits leaves it
    write_volume(_vol(vs=82.0), tmp_path / "k.npy")
    assert read_volume(tmp_path / "k.npy").voxel_size == (82.0, 82.0, 82.0)


def test_a_foreign_json_needs_overwrite(tmp_path) -> None:
    (tmp_path / "k.json").write_text('{"mine": 1}')
    with pytest.raises(VolumeIOError, match="not the sidecar"):
        write_volume(_vol(), tmp_path / "k.npy")
    assert json.loads((tmp_path / "k.json").read_text()) == {"mine": 1}
    write_volume(_vol(), tmp_path / "k.npy", overwrite=True)
    assert read_volume(tmp_path / "k.npy").voxel_size == (41.0, 41.0, 41.0)


def test_a_sidecar_that_appears_meanwhile_is_kept(tmp_path) -> None:
    """The sidecar was written with overwrite=True: one appearing mid-command was lost."""
    out = tmp_path / "k.npy"
    for overwrite, message in ((False, "not the sidecar"), (True, "appeared while")):
        with reserve_volume(out, overwrite):
            (tmp_path / "k.json").write_text('{"theirs": 1}')  # not through boneframe
            with pytest.raises(VolumeIOError, match=message):
                write_volume(_vol(), out, overwrite=overwrite)
        assert json.loads((tmp_path / "k.json").read_text()) == {"theirs": 1}
        assert not out.exists()
        (tmp_path / "k.json").unlink()


def test_overwrite_replaces_the_pair(tmp_path) -> None:
    out = tmp_path / "k.npy"
    write_volume(_vol(1.0, vs=41.0), out)
    write_volume(_vol(2.0, vs=82.0), out, overwrite=True)
    vol = read_volume(out)
    assert vol.voxel_size == (82.0, 82.0, 82.0) and float(vol.numpy().max()) == 2.0
    side = json.loads((tmp_path / "k.json").read_text())
    assert side["volume_file"] == "k.npy" and "previous" not in side
    assert "volume_file" not in vol.metadata and "volume_fingerprint" not in vol.metadata


def test_a_folder_output_does_not_reserve_a_sidecar(tmp_path, capsys) -> None:
    """``demo --out D`` was refused when D.json (the user's) was there."""
    (tmp_path / "D.json").write_text('{"mine": 1}')
    with reserve_volume(tmp_path / "D") as held:
        assert held.sidecar is None
    assert (tmp_path / "D.json").read_text() == '{"mine": 1}'


def test_the_cli_refuses_the_sidecar_of_another_volume(tmp_path, capsys) -> None:
    write_volume(_vol(), tmp_path / "k.npy")
    code = main(["thickness", str(tmp_path / "k.npy"), "--out", str(tmp_path / "k.tif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds the metadata" in err[0], err
    assert not (tmp_path / "k.tif").exists()


# -- the lock -------------------------------------------------------------------------------
def test_a_lock_file_nobody_holds_is_taken(tmp_path) -> None:
    """An empty lock file (a writer killed before writing its pid) blocked forever;
    one naming a live process that holds nothing (pid reuse) too."""
    out = tmp_path / "k.npy"
    for content in ("", f"{os.getppid()} {os.uname().nodename}\n", "1 elsewhere\n"):
        (tmp_path / ".k.npy.lock").write_text(content)
        with reserve(out):
            pass
        assert not (tmp_path / ".k.npy.lock").exists()


def test_a_held_lock_refuses_another_process(tmp_path) -> None:
    out = tmp_path / "k.npy"
    with reserve(out):
        assert run_forked(["phantom", str(out), "--size", "8"]) == 2
    assert not out.exists()


def test_a_second_thread_is_refused(tmp_path) -> None:
    """Two threads of one process both passed the re-entrant check."""
    out, errors = tmp_path / "k.npy", []

    def other() -> None:
        try:
            with reserve(out):
                pass
        except VolumeIOError as exc:
            errors.append(str(exc))

    with reserve(out):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "being written" in errors[0]
    other()  # free again
    assert len(errors) == 1


def test_reentrant_in_one_thread(tmp_path) -> None:
    out = tmp_path / "k.npy"
    with reserve(out) as outer, reserve(out) as inner:
        assert outer is False and inner is False
        write_volume(_vol(), out)
    assert out.exists()


# -- rename without replacing -------------------------------------------------------------
def test_rename_noreplace_without_hard_links(tmp_path, monkeypatch) -> None:
    """On file systems without hard links (some SMB/NFS mounts) every commit failed."""
    monkeypatch.setattr(atomic, "_RENAMEAT2", None)

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("new")
    rename_noreplace(src, dst)
    assert dst.read_text() == "new" and not src.exists()
    src.write_text("newer")
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert dst.read_text() == "new"
    write_volume(_vol(), tmp_path / "k.npy")
    assert read_volume(tmp_path / "k.npy").voxel_size == (41.0, 41.0, 41.0)


# -- the fingerprint ------------------------------------------------------------------------
def test_large_files_are_fingerprinted_from_samples(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sidecar, "SAMPLED_ABOVE", 2**20)
    monkeypatch.setattr(sidecar, "_SAMPLE_BLOCK", 4096)
    out = tmp_path / "big.npy"
    write_volume(Volume(np.zeros((64, 64, 128), np.float32), voxel_size=(41.0,) * 3), out)
    side = json.loads((tmp_path / "big.json").read_text())
    assert side["volume_fingerprint"].startswith("blake2b-sampled:")
    assert read_volume(out).voxel_size == (41.0,) * 3
    data = np.load(out)
    data[-1, -1, -1] = 1.0  # the last block is always sampled
    np.save(out, data)
    assert read_volume(out).voxel_size is None


def test_a_full_fingerprint_still_matches(tmp_path, monkeypatch) -> None:
    """Sidecars of earlier releases hold the full digest: it is checked as such."""
    out = tmp_path / "k.npy"
    write_volume(_vol(), out)
    side_file = tmp_path / "k.json"
    side = json.loads(side_file.read_text())
    assert side["volume_fingerprint"].startswith("blake2b:")
    monkeypatch.setattr(sidecar, "SAMPLED_ABOVE", 0)  # new digests would be sampled now
    assert read_volume(out).voxel_size == (41.0,) * 3
    del side["volume_file"]  # and a sidecar from before it named its volume
    side_file.write_text(json.dumps(side))
    assert read_volume(out).voxel_size == (41.0,) * 3
    with pytest.raises(VolumeIOError, match="holds the metadata"):
        write_volume(_vol(), tmp_path / "k.tif")


def test_fingerprints_differ_in_one_sampled_byte(tmp_path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(bytes(3 * 2**20 + 17))
    first = sidecar.fingerprint(path, sampled=True)
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(b"\x01")
    assert sidecar.fingerprint(path, sampled=True) != first
    assert Path(path).stat().st_size == 3 * 2**20 + 17
