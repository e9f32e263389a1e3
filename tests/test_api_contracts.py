"""The seams between the CLI, the spec and the library: one voxel-size rule, one unit
per quantity, solvers that say which problems they take."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
from conftest import lab_plugin_registry
from pydantic import BaseModel, ConfigDict

from boneframe.cli import main
from boneframe.errors import InputError
from boneframe.hookspecs import hookimpl
from boneframe.interfaces import Solver, SolverResult
from boneframe.io import write_volume
from boneframe.phantom import simulate_pair
from boneframe.registry import Registry
from boneframe.solvers.admm import SplitProblem
from boneframe.superres import super_resolve


class _FewIterationsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iterations: int = 3


class FewIterations(Solver):
    """A lab's split solver that knows neither mu, beta nor tol: f-steps only."""

    name: ClassVar[str] = "few-iterations"
    Params: ClassVar[type[BaseModel]] = _FewIterationsParams
    accepts: ClassVar[type] = SplitProblem

    def solve(self, problem, x0, callback=None) -> SolverResult:
        x = np.asarray(x0)
        for _ in range(self.params.iterations):
            x = problem.solve_split(problem.gradient(x), 10.0, 7.0)
        return SolverResult(x, self.params.iterations, True)


@hookimpl
def boneframe_solvers() -> list[type]:
    return [FewIterations]


@pytest.fixture
def lab_registry(monkeypatch) -> Registry:
    """The installed entry points plus this module as the plugin ``lab``."""
    return lab_plugin_registry(monkeypatch, __name__)


def test_super_resolve_passes_a_solver_only_the_parameters_it_has(lab_registry) -> None:
    """mu, beta and tol went to every solver, and a solver without them failed."""
    pair = simulate_pair(16, seed=0)
    sr = super_resolve(pair.lr, pair.kernel, solver="few-iterations", mu=5.0, tol=1e-2)
    assert sr.iterations == 3 and sr.array.shape == (16, 16, 16)
    with pytest.raises(InputError, match="gradient-descent.*GradientProblem"):
        super_resolve(pair.lr, pair.kernel, solver="gradient-descent")


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A phantom pair as bare .npy files (no sidecar: no voxel size) and a kernel."""
    folder = tmp_path_factory.mktemp("bare")
    pair = simulate_pair(24, seed=1, offset=0.05)
    np.save(folder / "hr.npy", pair.hr)
    np.save(folder / "lr.npy", pair.lr)
    np.save(folder / "k.npy", pair.kernel)
    return folder


@pytest.mark.parametrize(
    "argv",
    [
        ["metrics", "{d}/hr.npy"],
        ["thickness", "{d}/hr.npy", "--out", "{o}/t.npy"],
        ["estimate-kernel", "{d}/hr.npy", "{d}/lr.npy", "--out", "{o}/k.npy", "--support", "5"],
        ["super-resolve", "{d}/lr.npy", "--kernel", "{d}/k.npy", "--offset", "0",
         "--out", "{o}/sr.npy"],
    ],  # fmt: skip
    ids=["metrics", "thickness", "estimate-kernel", "super-resolve"],
)
def test_one_rule_for_a_volume_without_voxel_size(bare, tmp_path, capsys, argv) -> None:
    """Every command refuses a bare .npy with the same message, writes nothing, and
    runs once --voxel-size is given."""
    args = [a.format(d=bare, o=tmp_path) for a in argv]
    assert main([*args, "--quiet"] if argv[0] in ("estimate-kernel", "super-resolve")
                else args) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a voxel size: give it in µm (--voxel-size" in err[0], err
    assert list(tmp_path.iterdir()) == []
    flag = "--voxel-size-lr" if argv[0] == "estimate-kernel" else "--voxel-size"
    size = "41" if argv[0] in ("metrics", "thickness") else "82"
    extra = ["--quiet", "--max-iter", "2"] if argv[0] == "super-resolve" else []
    extra += ["--quiet"] if argv[0] == "estimate-kernel" else []
    assert main([*args, flag, size, *extra]) == 0


def test_lengths_are_micrometres_everywhere(bare, tmp_path, capsys) -> None:
    """Tb.Th is in µm in metrics --json (with its unit) and in the thickness map."""
    vol = tmp_path / "hr.npy"
    pair = simulate_pair(32, seed=2)
    write_volume(pair.volumes()[0], vol)
    capsys.readouterr()
    assert main(["metrics", str(vol), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["units"] == {**m["units"], "tb_th": "µm", "tb_sp": "µm", "tb_n": "1/mm",
                          "conn_d": "1/mm³", "tv_mm3": "mm³"}  # fmt: skip
    assert 41.0 < m["tb_th"] < 41.0 * 10  # a few voxels of 41 µm, not mm
    assert m["tv_mm3"] == pytest.approx((32 * 0.041) ** 3)
    assert main(["thickness", str(vol), "--out", str(tmp_path / "t.npy")]) == 0
    out = capsys.readouterr().out
    tmap = np.load(tmp_path / "t.npy")
    assert float(np.nanmean(tmap)) == pytest.approx(m["tb_th"], rel=1e-6)
    assert "µm" in out
    capsys.readouterr()
    assert main(["metrics", str(vol)]) == 0
    table = capsys.readouterr().out
    assert "unit" in table and "1/mm³" in table


def test_one_rule_for_lazy() -> None:
    """A Volume and the engines agree on what is lazy: dask is, anything else is
    read into memory (a zarr array handed over directly used to be lazy to the
    Volume and in memory to the kernel engine)."""
    import dask.array as da
    import zarr

    from boneframe.compute import is_lazy
    from boneframe.volume import Volume

    x = np.zeros((4, 4, 4))
    z = zarr.create_array(store={}, shape=x.shape, dtype=x.dtype)
    for data, lazy in ((x, False), (da.from_array(x), True), (z, False)):
        assert Volume(data).is_lazy is lazy and is_lazy(Volume(data)) is lazy
        assert is_lazy(data) is lazy


def test_a_kernel_of_another_grid_is_refused(tmp_path, capsys) -> None:
    """A kernel estimated at 41 µm was used on a 60 µm scan (or with another p), silently."""
    from boneframe.kernel import Kernel
    from boneframe.volume import Volume

    g = Volume(np.random.default_rng(0).random((6, 6, 6)), voxel_size=(82.0,) * 3)
    k = Kernel(np.full((3, 3, 3), 1 / 27), offset=0.0, voxel_size=(41.0,) * 3)
    assert super_resolve(g, k, max_iter=1).volume.voxel_size == (41.0,) * 3
    with pytest.raises(InputError, match="60 µm"):
        super_resolve(Volume(g.data, voxel_size=(120.0,) * 3), k, max_iter=1)
    with pytest.raises(InputError, match="differs from the kernel's"):
        super_resolve(g, k, p=3, max_iter=1)
    bare = Kernel(k.array, offset=0.0)  # no voxel size: p is the user's to say
    assert super_resolve(g.data, bare, p=3, max_iter=1).volume.shape == (18,) * 3
    write_volume(Volume(g.data, voxel_size=(120.0,) * 3), tmp_path / "lr.npy")
    k.save(tmp_path / "k.npy")
    argv = ["super-resolve", str(tmp_path / "lr.npy"), "--kernel", str(tmp_path / "k.npy"),
            "--out", str(tmp_path / "sr.npy"), "--quiet"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "60 µm" in err[0], err
    assert not (tmp_path / "sr.npy").exists()
