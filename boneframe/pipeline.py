"""Run a validated spec: inputs -> kernel estimations -> super-resolutions -> metrics -> report.

Everything is written into a temporary sibling of the output directory, which
is renamed into place only when the whole run succeeded: a failed run leaves
nothing behind and never touches an existing directory.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from boneframe.io import atomic_path, read_volume, write_json, write_volume
from boneframe.progress import Reporter
from boneframe.volume import Volume

#: The metrics recorded at every super-resolution iteration (the paper's Figs. 2-5).
ITERATION_METRICS = ("psnr", "dice", "bv_tv", "conn_d")
#: Structure metrics recorded every :data:`STRUCTURE_EVERY`-th iteration.
STRUCTURE_ITERATION_METRICS = ("tb_th", "tb_sp")
STRUCTURE_EVERY = 10
_EXT = {"npy": ".npy", "zarr": ".zarr", "tif": ".tif", "nii": ".nii.gz"}


@dataclass
class Inputs:
    """The registered pair and, for a phantom, the truth."""

    hr: Volume
    lr: Volume
    p: tuple[int, int, int]
    true_kernel: np.ndarray | None = None
    true_offset: float | None = None
    registration: Any = None


@dataclass
class PipelineResult:
    """What a run produced (also written to disk)."""

    out: Path
    kernels: dict[str, Any] = field(default_factory=dict)
    superresolutions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def load_inputs(spec: Any) -> Inputs:
    """Read the pair named by the spec, or simulate the phantom."""
    p = (spec.inputs.p,) * 3
    if spec.inputs.phantom is not None:
        from boneframe.phantom import gaussian_kernel, simulate_pair

        ph = spec.inputs.phantom
        h = gaussian_kernel(ph.kernel_sigma, ph.kernel_support, ph.kernel_shift, ph.kernel_gain)
        pair = simulate_pair(
            ph.size,
            ph.seed,
            kernel=h,
            offset=ph.offset,
            noise=ph.noise,
            p=p,
            bv_tv=ph.bv_tv,
            thickness=ph.thickness,
            voxel_size_hr=ph.voxel_size,
            shading=ph.shading,
        )
        hr, lr = pair.volumes()
        return Inputs(hr, lr, p, pair.kernel, pair.offset)
    if spec.inputs.registration is not None:
        from boneframe.registration import register_and_resample

        reg = spec.inputs.registration
        moving = read_volume(reg.moving, reg.voxel_size_moving)
        fixed = read_volume(reg.fixed, reg.voxel_size_fixed)
        result, fine = register_and_resample(moving, fixed, reg.params)
        hr = fine.with_data(np.asarray(fine.numpy(), dtype=np.float32))
        lr = fixed.with_data(np.asarray(fixed.numpy(), dtype=np.float32))
        return Inputs(hr, lr, p, registration=result)
    files = spec.inputs.files
    hr = read_volume(files.hr, files.voxel_size_hr)
    lr = read_volume(files.lr, files.voxel_size_lr)
    hr = hr.with_data(np.asarray(hr.numpy(), dtype=np.float32))
    lr = lr.with_data(np.asarray(lr.numpy(), dtype=np.float32))
    if hr.voxel_size is None and lr.voxel_size is not None:
        fine = tuple(v / q for v, q in zip(lr.voxel_size, p, strict=True))
        hr = hr.with_data(hr.data, voxel_size=fine)
    return Inputs(hr, lr, p)


def kernel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative L2 error of the unit-sum kernels (supports centred and zero-padded)."""
    shape = tuple(max(a, b) for a, b in zip(estimate.shape, truth.shape, strict=True))

    def centred(h: np.ndarray) -> np.ndarray:
        pad = [((s - n) // 2, (s - n) // 2) for s, n in zip(shape, h.shape, strict=True)]
        h = np.pad(h, pad)
        return h / h.sum()

    e, t = centred(estimate), centred(truth)
    return float(np.linalg.norm(e - t) / np.linalg.norm(t))


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Write per-iteration records as CSV (columns: the union of the keys)."""
    keys: list[str] = ["iteration"]
    for rec in history:
        keys += [k for k in rec if k not in keys]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for i, rec in enumerate(history):
        writer.writerow({"iteration": i + 1, **rec})
    path.write_text(buf.getvalue())


def iteration_metric_fn(
    reference: np.ndarray,
    voxel_size: Any,
    threshold: float | None = None,
    structure_every: int = STRUCTURE_EVERY,
) -> Any:
    """``f(x) -> {name: value}`` for a solver's per-iteration history.

    Every call gives :data:`ITERATION_METRICS` against ``reference`` (``conn_d``
    only with a voxel size); every ``structure_every``-th call, starting with the
    first, also Tb.Th and Tb.Sp (mm; local thickness costs about as much as
    several ADMM iterations, so not every time; 0 never; only for isotropic
    voxels). The other calls leave them out, so the history has gaps there.
    """
    from boneframe.metrics import compute_metrics

    names = [n for n in ITERATION_METRICS if voxel_size is not None or n != "conn_d"]
    structure = (
        structure_every > 0
        and voxel_size is not None
        and len(set(np.atleast_1d(np.asarray(voxel_size, dtype=float)).tolist())) == 1
    )
    calls = 0

    def metric_fn(x: np.ndarray) -> dict[str, float]:
        nonlocal calls
        calls += 1
        wanted = list(names)
        if structure and (calls - 1) % structure_every == 0:
            wanted += list(STRUCTURE_ITERATION_METRICS)
        m = compute_metrics(x, reference, voxel_size=voxel_size, threshold=threshold, names=wanted)
        return {k: v for k, v in m.items() if k in wanted}

    return metric_fn


def _kernel_input(volume: Volume, chunk: int) -> Any:
    """A lazy (zarr) volume as a dask array in ``chunk``-sized chunks; else in memory."""
    if not volume.is_lazy:
        return volume.numpy()
    return volume.data.rechunk((chunk,) * 3)


def run_kernel_stage(
    stage: Any,
    inputs: Inputs,
    previous: dict[str, Any],
    reporter: Reporter,
    chunk_size: int = 128,
):
    """Estimate one kernel as the stage says (chunk by chunk for zarr inputs)."""
    from boneframe.kernel import estimate_kernel

    kwargs: dict[str, Any] = {}
    if stage.init_from is not None:
        kwargs["init"] = previous[stage.init_from].kernel
    if stage.init_sigma is not None:
        kwargs["init_sigma"] = stage.init_sigma
    with reporter.stage(f"kernel {stage.name} ({stage.similarity.name})") as cb:
        return estimate_kernel(  # zarr inputs stay lazy: the chunked path, same estimate
            _kernel_input(inputs.hr, chunk_size),
            _kernel_input(inputs.lr, max(1, chunk_size // max(inputs.p))),
            similarity=stage.similarity.name,
            similarity_params=stage.similarity.params.model_dump(),
            regularizer=stage.regularizer.name,
            solver=stage.solver.name,
            solver_params=stage.solver.params.model_dump(),
            support=stage.support,
            alpha=stage.alpha,
            p=inputs.p,
            callback=cb,
            **kwargs,
        )


def run_sr_stage(
    stage: Any, spec: Any, inputs: Inputs, kernels: dict[str, Any], reporter: Reporter
):
    """Super-resolve the low-resolution volume with one kernel."""
    from boneframe.registry import get_registry
    from boneframe.superres import super_resolve

    if stage.kernel in kernels:
        est = kernels[stage.kernel]
        h, offset = est.kernel, est.offset
    else:
        h = np.load(stage.kernel)
        offset = 0.0
    if stage.offset is not None:
        offset = stage.offset
    reg = get_registry().create("regularizer", stage.regularizer.name, stage.regularizer.params)
    solver_params = stage.solver.params.model_dump()
    metric_fn = None
    if spec.metrics.per_iteration:
        metric_fn = iteration_metric_fn(
            inputs.hr.numpy(),
            inputs.hr.voxel_size,
            spec.metrics.threshold,
            structure_every=spec.metrics.structure_every if spec.metrics.structure else 0,
        )

    with reporter.stage(
        f"super-resolution {stage.name}", total=solver_params.get("max_iter")
    ) as cb:
        return super_resolve(
            inputs.lr.numpy(),
            h,
            offset=offset,
            p=inputs.p,
            regularizer=reg,
            reference=inputs.hr.numpy() if metric_fn is not None else None,
            metric_fn=metric_fn,
            callback=cb,
            solver=stage.solver.name,
            solver_params=solver_params,
        )


def run_pipeline(
    spec: Any, out: str | Path, *, overwrite: bool = False, reporter: Reporter | None = None
) -> PipelineResult:
    """Run every stage of ``spec`` and write all artefacts into ``out`` atomically.

    Parameters
    ----------
    spec : PipelineSpec
        A validated spec (:func:`boneframe.spec.load_spec`).
    out : path
        Output directory; an existing one is refused unless ``overwrite``.
    overwrite : bool
        Replace an existing ``out`` (only once the new run has succeeded).
    reporter : Reporter, optional
        Progress reporting (default: bars on a terminal, log lines otherwise).

    Returns
    -------
    PipelineResult
    """
    reporter = reporter or Reporter()
    with contextlib.ExitStack() as stack:
        if spec.compute.scheduler:
            from boneframe.chunked.cluster import active_client, use_scheduler

            if active_client() is None:  # a --scheduler given on the command line wins
                stack.enter_context(use_scheduler(spec.compute.scheduler))
                reporter.message(f"dask scheduler: {spec.compute.scheduler}")
        return _run_stages(spec, out, overwrite, reporter)


def _run_stages(spec: Any, out: str | Path, overwrite: bool, reporter: Reporter) -> PipelineResult:
    """The body of :func:`run_pipeline`, under its scheduler."""
    from boneframe.kernel_summary import summarize_kernel
    from boneframe.metrics import all_metrics
    from boneframe.superres import upsample_spline

    out = Path(out)
    result = PipelineResult(out)
    ext = _EXT[spec.outputs.format]
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        write_json(tmp / "spec.json", spec.model_dump(mode="json"))
        inputs = load_inputs(spec)
        if inputs.registration is not None:
            from boneframe.registration import write_transform

            write_transform(inputs.registration.transform, tmp / "registration.tfm")
            write_json(tmp / "registration.json", inputs.registration.to_json())
            reporter.message(
                f"registered: rotation {inputs.registration.rotation_angle_deg:.3f}°, "
                f"overlap {inputs.registration.overlap:.0%}"
            )
        vs_hr = inputs.hr.require_voxel_size()
        reporter.message(
            f"inputs: high resolution {inputs.hr.shape} at {vs_hr[0]:g} µm, "
            f"low resolution {inputs.lr.shape}"
        )
        kernel_report: dict[str, Any] = {}
        if inputs.true_kernel is not None:
            np.save(tmp / "kernel_true.npy", inputs.true_kernel)
            kernel_report["true"] = {
                **summarize_kernel(inputs.true_kernel, vs_hr),
                "offset": inputs.true_offset,
            }
        for stage in spec.kernels:
            est = run_kernel_stage(stage, inputs, result.kernels, reporter, spec.compute.chunk_size)
            result.kernels[stage.name] = est
            side = est.sidecar(vs_hr)
            if inputs.true_kernel is not None:
                side["kernel_error"] = kernel_error(est.kernel, inputs.true_kernel)
            write_volume(
                Volume(est.kernel, voxel_size=vs_hr), tmp / f"kernel_{stage.name}.npy", sidecar=side
            )
            write_history(tmp / f"history_kernel_{stage.name}.csv", est.history)
            kernel_report[stage.name] = {k: v for k, v in side.items() if k != "history"}
        g = inputs.lr.numpy()
        hr = inputs.hr.numpy()
        volumes: dict[str, np.ndarray] = {"hr": hr}
        if result.kernels:
            first = next(iter(result.kernels.values()))
            gain, offset = first.gain, first.offset
        else:
            gain, offset = 1.0, 0.0
        volumes["lr_upsampled"] = upsample_spline(g, inputs.p, gain=gain, offset=offset)
        for stage in spec.superresolution:
            sr = run_sr_stage(stage, spec, inputs, result.kernels, reporter)
            result.superresolutions[stage.name] = sr
            volumes[f"sr_{stage.name}"] = sr.volume
            write_history(tmp / f"history_sr_{stage.name}.csv", sr.history)
            if spec.outputs.save_volumes:
                write_volume(
                    Volume(sr.volume, voxel_size=vs_hr),
                    tmp / f"sr_{stage.name}{ext}",
                    sidecar={
                        "iterations": sr.iterations,
                        "converged": sr.converged,
                        "kernel": stage.kernel,
                        "history": sr.history,
                    },
                )
        per_volume = {
            label: all_metrics(
                vol,
                None if label == "hr" else hr,
                voxel_size=vs_hr,
                threshold=spec.metrics.threshold,
                structure=spec.metrics.structure,
            )
            for label, vol in volumes.items()
        }
        result.metrics = {"volumes": per_volume, "kernels": kernel_report}
        write_json(tmp / "metrics.json", result.metrics)
        from boneframe.report import write_report

        write_report(tmp, spec, inputs, result, volumes)
        reporter.message(f"wrote {out}")
    return result
