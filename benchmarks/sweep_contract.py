"""Bad inputs against the command line's contract, counted (issue 20's picture, redone).

Every case runs ``boneframe ...`` in a forked child (with a time limit) in a fresh
folder, and the contract is: exit 0, or exit 2 with exactly one ``error:`` line
on stderr and no traceback, nothing written or left behind when it failed, and
no hang. Cases: every numeric option of every command with impossible values,
every file argument with broken files, broken specs and sidecars, zarr volumes
with missing or corrupt chunks, outputs that exist, sit in a missing, read-only
or full folder, or are the current folder.

Usage: ``python benchmarks/sweep_contract.py [-v]`` (about a minute); prints the
number of cases per group and every case that breaks the contract.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from faults import _fresh_thread_pools  # noqa: E402

LIMIT_S = 120


def run_case(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``boneframe ARGV`` in a forked child in ``cwd``: exit code (or -signal), stderr."""
    err_file = cwd.parent / f"{cwd.name}.stderr"
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            fd = os.open(err_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.chdir(cwd)
            signal.alarm(LIMIT_S)
            _fresh_thread_pools()
            from boneframe.cli import main

            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, err_file.read_text(errors="replace")


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def broken_files(folder: Path) -> dict[str, Path]:
    """Files that cannot be volumes, each next to nothing else."""
    out: dict[str, Path] = {}

    def put(name: str, content: bytes | None = None, array: np.ndarray | None = None) -> None:
        path = folder / name
        if array is not None:
            np.save(path, array)
        elif content is not None:
            path.write_bytes(content)
        out[name] = path

    put("missing.npy")
    put("empty.npy", b"")
    put("garbage.npy", b"\x93NUMPY" + os.urandom(200))
    put("text.npy", b"not an array at all")
    put("truncated.npy", _npy_bytes(np.ones((8, 8, 8), np.float32))[:150])
    put("two_d.npy", array=np.ones((8, 8), np.float32))
    put("four_d.npy", array=np.ones((2, 4, 4, 4), np.float32))
    put("complex.npy", array=np.ones((8, 8, 8), np.complex64))
    put("nan.npy", array=np.full((8, 8, 8), np.nan, np.float32))
    put("inf.npy", array=np.full((8, 8, 8), np.inf, np.float32))
    put("zero_size.npy", array=np.ones((0, 8, 8), np.float32))
    put("object.npy", _npy_bytes(np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True))
    put("strings.npy", array=np.array([["ab"] * 4] * 4).reshape(2, 2, 4))
    put("constant.npy", array=np.ones((16, 16, 16), np.float32))
    put("garbage.nii.gz", os.urandom(300))
    put("garbage.tif", b"II*\x00" + os.urandom(300))
    put("unknown.xyz", b"data")
    (folder / "dir.npy").mkdir()
    out["dir.npy"] = folder / "dir.npy"
    os.mkfifo(folder / "fifo.npy")
    out["fifo.npy"] = folder / "fifo.npy"
    os.symlink(folder / "loop_b.npy", folder / "loop_a.npy")
    os.symlink(folder / "loop_a.npy", folder / "loop_b.npy")
    out["symlink_loop.npy"] = folder / "loop_a.npy"
    good = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    np.save(folder / "bad_sidecar.npy", good)
    (folder / "bad_sidecar.json").write_text("{not json")
    out["bad_sidecar.npy"] = folder / "bad_sidecar.npy"
    np.save(folder / "zero_direction.npy", good)
    (folder / "zero_direction.json").write_text(
        json.dumps({"voxel_size_um": [41] * 3, "direction": [[0] * 3] * 3})
    )
    out["zero_direction.npy"] = folder / "zero_direction.npy"
    np.save(folder / "negative_voxel.npy", good)
    (folder / "negative_voxel.json").write_text(json.dumps({"voxel_size_um": [-41, 41, 41]}))
    out["negative_voxel.npy"] = folder / "negative_voxel.npy"
    return out


def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def broken_zarrs(folder: Path, lr: Path) -> dict[str, Path]:
    """Zarr volumes written by boneframe, then damaged."""
    from boneframe.io import read_volume, write_volume

    vol = read_volume(lr)
    out = {}
    for name in ("missing_chunk", "garbage_chunk", "no_metadata", "bad_checksums"):
        import dask.array as da

        path = folder / f"{name}.zarr"
        write_volume(vol.with_data(da.from_array(vol.numpy(), chunks=4)), path)
        chunk = next(p for p in (path / "0" / "c").rglob("*") if p.is_file())
        if name == "missing_chunk":
            chunk.unlink()
        elif name == "garbage_chunk":
            chunk.write_bytes(os.urandom(64))
        elif name == "no_metadata":
            (path / "zarr.json").unlink()
        else:
            meta = json.loads((path / "zarr.json").read_text())
            meta["attributes"]["boneframe"]["chunks"]["crc32"] = {"0.0.0": 1}
            (path / "zarr.json").write_text(json.dumps(meta))
        out[f"{name}.zarr"] = path
    return out


def bad_specs(folder: Path, good: dict[str, Path]) -> dict[str, Path]:
    base = "version: 1\ninputs: {phantom: {size: 16, kernel_support: 5}}\n"
    texts = {
        "not_yaml.yaml": "version: [1\n",
        "latin1.yaml": None,
        "list.yaml": "- 1\n- 2\n",
        "empty.yaml": "",
        "no_version.yaml": "inputs: {phantom: {}}\n",
        "version_2.yaml": "version: 2\ninputs: {phantom: {}}\n",
        "two_inputs.yaml": base + "  files: {hr: a.npy, lr: b.npy}\n",
        "unknown_key.yaml": base + "colour: blue\n",
        "unknown_similarity.yaml": base + "kernels: [{name: k, similarity: nope}]\n",
        "unknown_param.yaml": base
        + "kernels: [{name: k, similarity: {name: mi, params: {x: 1}}}]\n",
        "nan_alpha.yaml": base + "kernels: [{name: k, alpha: .nan}]\n",
        "inf_offset.yaml": base.replace("size: 16", "size: 16, offset: .inf"),
        "even_support.yaml": base + "kernels: [{name: k, support: 4}]\n",
        "tv_kernel.yaml": base + "kernels: [{name: k, regularizer: tv}]\n",
        "exact_mi.yaml": base + "kernels: [{name: k, similarity: mi, solver: exact}]\n",
        "chunk_17.yaml": base + "compute: {chunk_size: 17}\n",
        "missing_files.yaml": "version: 1\ninputs: {files: {hr: no.npy, lr: no.npy}}\n",
        "bad_kernel_file.yaml": base
        + f"superresolution: [{{name: s, kernel: {good['text.npy']}, offset: 0}}]\n",
        "kernel_no_offset.yaml": base
        + f"superresolution: [{{name: s, kernel: {good['kernel_bare.npy']}}}]\n",
        "dup_stage.yaml": base + "kernels: [{name: k, support: 5}, {name: k, support: 5}]\n",
        "bad_init_from.yaml": base + "kernels: [{name: k, init_from: nope}]\n",
        "bad_scheduler.yaml": base + "compute: {scheduler: 'tcp://192.0.2.1:8786'}\n",
        "nonsense_scheduler.yaml": base + "compute: {scheduler: 'ftp://x'}\n",
        "size_17.yaml": base.replace("size: 16", "size: 17"),
        "negative_mu.yaml": base + "kernels: [{name: k, support: 5}]\n"
        "superresolution: [{name: s, kernel: k, solver: {name: admm, params: {mu: -1}}}]\n",
    }
    out = {}
    for name, text in texts.items():
        path = folder / name
        if text is None:
            path.write_bytes("version: 1 # é\n".encode("latin-1"))
        else:
            path.write_text(text)
        out[name] = path
    return out


def cases(folder: Path) -> dict[str, list[list[str]]]:
    """The argument lists, by group; ``{o}`` is the case's own output folder."""
    from boneframe.cli import main

    data = folder / "data"
    data.mkdir()
    assert main(["phantom", str(data / "ph"), "--size", "24"]) == 0
    hr, lr, k = data / "ph" / "hr.npy", data / "ph" / "lr.npy", data / "k.npy"
    assert main(["estimate-kernel", str(hr), str(lr), "--out", str(k), "--support", "5",
                 "--quiet"]) == 0  # fmt: skip
    files = broken_files(data)
    bare = data / "kernel_bare.npy"
    np.save(bare, np.load(k))
    files["kernel_bare.npy"] = bare
    zarrs = broken_zarrs(data, lr)
    specs = bad_specs(data, files)
    groups: dict[str, list[list[str]]] = {}
    bad_numbers = ["nan", "inf", "-inf", "-1", "0", "1e308", "abc", ""]
    numeric = {
        "phantom": ["--size", "--seed", "--kernel-gain", "--kernel-support", "--offset",
                    "--noise", "--shading", "--bv-tv", "--thickness", "--voxel-size", "--p",
                    "--tile"],
        "estimate-kernel": ["--support", "--alpha", "--max-iter", "--tol", "--init-sigma",
                            "--bins", "--parzen-width", "--p"],
        "super-resolve": ["--offset", "--mu", "--beta", "--tol", "--max-iter", "--adapt-iter",
                          "--p"],
        "metrics": ["--threshold"],
        "thickness": ["--threshold"],
        "register": ["--p", "--pad", "--bins", "--sampling", "--seed"],
        "demo": ["--size", "--seed"],
    }  # fmt: skip
    base = {
        "phantom": ["phantom", "{o}/out"],
        "estimate-kernel": ["estimate-kernel", str(hr), str(lr), "--out", "{o}/k.npy",
                            "--support", "5", "--quiet"],
        "super-resolve": ["super-resolve", str(lr), "--kernel", str(k), "--out", "{o}/sr.npy",
                          "--max-iter", "2", "--quiet"],
        "metrics": ["metrics", str(hr)],
        "thickness": ["thickness", str(hr), "--out", "{o}/t.npy"],
        "register": ["register", str(hr), str(lr), "--out", "{o}/r.npy"],
        "demo": ["demo", "--out", "{o}/d", "--quiet"],
    }  # fmt: skip
    groups["impossible option values"] = [
        [*base[cmd], opt, value] for cmd, opts in numeric.items() for opt in opts
        for value in bad_numbers
    ]  # fmt: skip
    groups["triples"] = [
        [*base[cmd], opt, value]
        for cmd, opt in (("phantom", "--kernel-sigma"), ("phantom", "--kernel-shift"),
                         ("metrics", "--voxel-size"), ("super-resolve", "--voxel-size"),
                         ("estimate-kernel", "--voxel-size-hr"))
        for value in ("1,2", "a,b,c", "nan", "-1", "0,0,0", "1,2,3,4", "")
    ]  # fmt: skip
    volume_args = [
        ("info", lambda f: ["info", f]),
        ("metrics", lambda f: ["metrics", f, "--voxel-size", "41"]),
        ("metrics --reference", lambda f: ["metrics", str(hr), "--reference", f]),
        ("thickness", lambda f: ["thickness", f, "--out", "{o}/t.npy", "--voxel-size", "41"]),
        ("estimate-kernel HR", lambda f: ["estimate-kernel", f, str(lr), "--out", "{o}/k.npy",
                                          "--support", "5", "--quiet"]),
        ("estimate-kernel LR", lambda f: ["estimate-kernel", str(hr), f, "--out", "{o}/k.npy",
                                          "--support", "5", "--quiet"]),
        ("super-resolve LR", lambda f: ["super-resolve", f, "--kernel", str(k), "--out",
                                        "{o}/sr.npy", "--voxel-size", "82", "--max-iter", "2",
                                        "--quiet"]),
        ("super-resolve kernel", lambda f: ["super-resolve", str(lr), "--kernel", f, "--out",
                                            "{o}/sr.npy", "--max-iter", "2", "--quiet"]),
        ("estimate-kernel --init", lambda f: ["estimate-kernel", str(hr), str(lr), "--out",
                                              "{o}/k.npy", "--support", "5", "--init", f,
                                              "--quiet"]),
        ("phantom --kernel", lambda f: ["phantom", "{o}/out", "--size", "16", "--kernel", f]),
    ]  # fmt: skip
    every_file = {**files, **zarrs}
    groups["broken files"] = [make(str(p)) for _, make in volume_args for p in every_file.values()]
    groups["broken specs"] = [["run", str(p), "--out", "{o}/run", "--quiet"]
                              for p in specs.values()]  # fmt: skip
    groups["outputs"] = [
        ["phantom", str(data / "ph"), "--size", "16"],  # exists
        ["phantom", "{o}/no/such/folder/out", "--size", "16"],
        ["estimate-kernel", str(hr), str(lr), "--out", str(k), "--quiet"],  # exists
        ["run", str(specs["unknown_key.yaml"]), "--out", ".", "--overwrite", "--quiet"],
        ["schema", "--out", str(k)],
        ["schema", "--out", str(ROOT / "schemas")],  # exists: needs --overwrite
        ["thickness", str(hr), "--out", "{o}/t.unknown"],
        ["super-resolve", str(lr), "--kernel", str(k), "--out", "{o}/sr.aim", "--max-iter", "1",
         "--quiet"],
    ]  # fmt: skip
    groups["usage"] = [[], ["nope"], ["metrics"], ["metrics", "--bogus"], ["--scheduler"],
                       ["--scheduler", "tcp://192.0.2.1:1", "info", str(hr)],
                       ["--scheduler", "garbage", "info", str(hr)]]  # fmt: skip
    return groups


def check(argv: list[str], work: Path) -> str | None:
    """Why ``argv`` breaks the contract, or None."""
    before = snapshot(work)
    code, err = run_case(argv, work)
    lines = [line for line in err.splitlines() if line.strip()]
    if code < 0:
        return f"killed by signal {-code} (hang or crash)"
    if code == 0:
        return None
    if code != 2:
        return f"exit {code}: {lines[-1] if lines else ''}"
    errors = [line for line in lines if line.startswith("error: ")]
    if "Traceback" in err:
        return "a traceback"
    if len(errors) != 1:
        return f"{len(errors)} error: lines: {lines[:3]}"
    if snapshot(work) != before:
        return f"left {sorted(snapshot(work) - before)[:3]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", action="store_true", help="print every case")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweep-"))
    os.chdir(folder)
    groups = cases(folder)
    total = broken = 0
    for group, argvs in groups.items():
        bad = []
        for i, template in enumerate(argvs):
            work = folder / "cases" / f"{group.replace(' ', '_')}-{i}"
            work.mkdir(parents=True)
            argv = [a.format(o=work) for a in template]
            why = check(argv, work)
            if args.v:
                print(f"  {'ok ' if why is None else 'BAD'} boneframe {' '.join(argv)}")
            if why is not None:
                bad.append((argv, why))
        total += len(argvs)
        broken += len(bad)
        print(f"{group}: {len(argvs)} cases, {len(bad)} break the contract")
        for argv, why in bad:
            print(f"    boneframe {' '.join(argv)}\n      -> {why}")
    print(f"total: {total} cases, {broken} break the contract (target 0)")
    subprocess.run(["chmod", "-R", "u+rwx", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
