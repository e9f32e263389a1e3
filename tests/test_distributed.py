"""The chunked forward model and kernel estimate on a dask.distributed cluster."""

from __future__ import annotations

import sys

import dask
import dask.array as da
import numpy as np
import pytest

from boneframe.compute import active_client, use_scheduler
from boneframe.errors import InputError
from boneframe.kernel import KernelProblem, estimate_kernel, gaussian_start, project_simplex
from boneframe.operators import forward_model
from boneframe.phantom import gaussian_kernel, simulate_pair
from boneframe.regularizers.gradient_l2 import GradientL2
from boneframe.similarity.mi import MutualInformation

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    # worker processes (not threads): what a real cluster does, pickling included
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",  # every listener on loopback
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(40, seed=4, offset=0.05, noise=0.01, hr_noise=0.01)


def test_no_address_does_nothing() -> None:
    with use_scheduler(None) as client:
        assert client is None
        assert active_client() is None


def test_unreachable_or_malformed_address() -> None:
    with pytest.raises(InputError, match="cannot connect to the dask scheduler"):
        with use_scheduler("tcp://127.0.0.1:9", timeout=0.5):
            pass
    with pytest.raises(InputError, match="tcp://host:port"):
        with use_scheduler("nowhere"):
            pass


def test_missing_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(InputError, match=r"boneframe\[distributed\]"):
        with use_scheduler("tcp://127.0.0.1:9"):
            pass


def test_forward_model_and_l2_estimate_on_the_cluster(cluster, pair) -> None:
    f = da.from_array(pair.hr, chunks=20)
    g = da.from_array(pair.lr, chunks=10)
    h = gaussian_kernel((1.4, 1.2, 1.0), 7)
    with dask.config.set(scheduler="sync"):
        local_u = forward_model(f, h, 0.05).compute()
        local = estimate_kernel(f, g, support=5)
    with use_scheduler(cluster.scheduler_address) as client:
        assert active_client() is client
        with distributed.get_task_stream(client) as stream:
            remote_u = forward_model(f, h, 0.05).compute()
            remote = estimate_kernel(f, g, support=5)
        workers = {t["worker"] for t in stream.data}
    assert active_client() is None
    assert len(stream.data) > 0 and len(workers) == 2  # both workers did the work
    np.testing.assert_allclose(remote_u, local_u, rtol=1e-12, atol=1e-12)
    rel = np.linalg.norm(remote.array - local.array) / np.linalg.norm(local.array)
    # same boxes and tree of sums; the float32 Gram products still round with the
    # BLAS thread count (workers run single-threaded BLAS): ~1e-7 relative
    assert rel < 1e-5
    assert remote.offset == pytest.approx(local.offset, rel=1e-5)
    assert remote.alpha == pytest.approx(local.alpha, rel=1e-5)


def test_mi_value_and_gradient_on_the_cluster_equal_in_memory(cluster, pair) -> None:
    sim, reg = MutualInformation(), GradientL2(weight=10.0)
    mem = KernelProblem(pair.hr.astype(float), pair.lr.astype(float), sim, reg, 5, 2)
    h = project_simplex(gaussian_start(1.3, 5))
    value, grad = mem.value_and_grad(h)
    f, g = da.from_array(pair.hr, chunks=20), da.from_array(pair.lr, chunks=10)
    with use_scheduler(cluster.scheduler_address):
        chk = KernelProblem(f, g, sim, reg, 5, 2)
        remote_value, remote_grad = chk.value_and_grad(h)
    assert remote_value == pytest.approx(value, rel=1e-12)
    assert np.linalg.norm(remote_grad - grad) <= 1e-10 * np.linalg.norm(grad)


def test_a_spec_names_the_scheduler_and_the_run_gives_the_same_kernel(cluster, pair, tmp_path):
    import json

    import yaml

    from boneframe.cli import main
    from boneframe.io import write_volume

    hr, lr = pair.volumes()
    for fmt in ("zarr", "npy"):
        write_volume(hr.with_data(da.from_array(hr.numpy(), chunks=16)), tmp_path / f"hr.{fmt}")
        write_volume(lr.with_data(da.from_array(lr.numpy(), chunks=8)), tmp_path / f"lr.{fmt}")
    runs = {}
    for fmt, scheduler in (("zarr", cluster.scheduler_address), ("npy", None)):
        spec = {
            "version": 1,
            "inputs": {
                "files": {"hr": str(tmp_path / f"hr.{fmt}"), "lr": str(tmp_path / f"lr.{fmt}")}
            },
            "kernels": [{"name": "l2", "similarity": "l2", "solver": "exact", "support": 7}],
            "metrics": {"per_iteration": False, "structure": False},
            "compute": {"chunk_size": 16, "scheduler": scheduler},
        }
        path = tmp_path / f"spec_{fmt}.yaml"
        path.write_text(yaml.safe_dump(spec))
        out = tmp_path / f"run_{fmt}"
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
        runs[fmt] = np.load(out / "kernel_l2.npy")
        assert json.loads((out / "spec.json").read_text())["compute"]["scheduler"] == scheduler
    a, b = runs["zarr"], runs["npy"]
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
    assert active_client() is None  # the run's client is closed again
