"""Run a validated spec through the API: inputs, kernels, super-resolutions, metrics, report.

An adapter: every computation is a call of the public API (:mod:`boneframe`),
with the stage's parameters; this module decides only what to call in which
order and where to write it. Zarr inputs stay lazy (dask arrays in
``compute.chunk_size`` chunks), so the kernel estimation, the super-resolution
and the metrics run chunk by chunk.

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
from boneframe.kernel import (
    Kernel,
    RegionalKernel,
    estimate_kernel,
    estimate_regional_kernels,
    load_kernel,
    pair_voxel_size,
)
from boneframe.progress import Reporter
from boneframe.superres import SuperResolution, super_resolve, upsample_spline
from boneframe.volume import Volume

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
    #: a phantom whose blur varies: its :class:`~boneframe.phantom.PhantomPair`
    phantom: Any = None


@dataclass
class PipelineResult:
    """What a run produced (also written to disk), read by the report.

    Attributes
    ----------
    out : Path
        The output directory.
    inputs : Inputs
        The pair the stages ran on.
    kernels : dict of Kernel or RegionalKernel
        By stage name (a stage with ``regions`` gives a RegionalKernel).
    superresolutions : dict of SuperResolution
        By stage name.
    volumes : dict of Volume
        Every volume measured: ``hr``, ``lr_upsampled`` and ``sr_<stage>``.
    metrics : dict
        ``volumes`` (per volume, :func:`boneframe.metrics.measure`) and ``kernels``
        (per kernel: summary and, for a phantom, the error against the truth).
    """

    out: Path
    inputs: Inputs | None = None
    kernels: dict[str, Any] = field(default_factory=dict)
    superresolutions: dict[str, SuperResolution] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def load_inputs(spec: Any) -> Inputs:
    """Read the pair named by the spec (lazily for zarr), register raw scans, or
    simulate the phantom."""
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
            kernel_variation=ph.kernel_variation,
        )
        hr, lr = pair.volumes()
        varying = pair if pair.variation is not None else None
        return Inputs(hr, lr, p, pair.kernel, pair.offset, phantom=varying)
    if spec.inputs.registration is not None:
        from boneframe.registration import register_and_resample

        reg = spec.inputs.registration
        moving = read_volume(reg.moving, reg.voxel_size_moving)
        fixed = read_volume(reg.fixed, reg.voxel_size_fixed)
        result, fine = register_and_resample(moving, fixed, reg.params)
        return Inputs(_as_float32(fine), _as_float32(fixed), p, registration=result)
    files = spec.inputs.files
    hr = read_volume(files.hr, files.voxel_size_hr)
    lr = read_volume(files.lr, files.voxel_size_lr)
    vs = pair_voxel_size(hr, lr, p)
    if vs is None:
        from boneframe.errors import InputError

        raise InputError(
            f"neither {files.hr} nor {files.lr} records a voxel size: give "
            "inputs.files.voxel_size_hr or voxel_size_lr (µm)"
        )
    chunk = spec.compute.chunk_size
    hr = _chunked(hr.with_data(hr.data, voxel_size=vs), chunk)
    lr = _chunked(lr, max(1, chunk // max(p)))
    return Inputs(hr, lr, p)


def _as_float32(volume: Volume) -> Volume:
    return volume.with_data(np.asarray(volume.numpy(), dtype=np.float32))


def _chunked(volume: Volume, chunk: int) -> Volume:
    """A lazy volume rechunked to ``chunk`` voxels per axis; an in-memory one as float32."""
    if volume.is_lazy:
        return volume.with_data(volume.data.rechunk((chunk,) * 3))
    return _as_float32(volume)


def kernel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative L2 error of the unit-sum kernels (supports centred and zero-padded)."""
    shape = tuple(max(a, b) for a, b in zip(estimate.shape, truth.shape, strict=True))

    def centred(h: np.ndarray) -> np.ndarray:
        pad = [((s - n) // 2, (s - n) // 2) for s, n in zip(shape, h.shape, strict=True)]
        h = np.pad(h, pad)
        return h / h.sum()

    e, t = centred(estimate), centred(truth)
    return float(np.linalg.norm(e - t) / np.linalg.norm(t))


def history_csv(history: list[dict[str, Any]]) -> str:
    """Per-iteration records as CSV text (columns: the union of the keys)."""
    keys: list[str] = ["iteration"]
    for rec in history:
        keys += [k for k in rec if k not in keys]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for i, rec in enumerate(history):
        writer.writerow({"iteration": i + 1, **rec})
    return buf.getvalue()


def run_kernel_stage(
    stage: Any, inputs: Inputs, previous: dict[str, Any], reporter: Reporter
) -> Kernel | RegionalKernel:
    """Estimate one kernel as the stage says (one per region with ``regions``; with
    bootstrap intervals when ``bootstrap`` > 0)."""
    init = None
    if stage.init_from is not None:
        start = previous[stage.init_from]
        init = start.mean_kernel().array if isinstance(start, RegionalKernel) else start.array
    extra = {} if stage.init_sigma is None else {"init_sigma": stage.init_sigma}
    solver = stage.solver
    reg_params = stage.regularizer.params.model_dump(exclude={"weight"})
    options: dict[str, Any] = dict(
        similarity=stage.similarity.name,
        similarity_params=stage.similarity.params.model_dump(),
        regularizer=stage.regularizer.name,
        regularizer_params=reg_params,
        solver=None if solver is None else solver.name,
        solver_params=None if solver is None else solver.params.model_dump(),
        support=stage.support,
        alpha=stage.alpha,
        p=inputs.p,
        **extra,
    )
    uncertainty = {"replicates": stage.bootstrap} if stage.bootstrap else None
    label = f"kernel {stage.name} ({stage.similarity.name})"
    if stage.regions is not None:
        return estimate_regional_kernels(
            inputs.hr, inputs.lr, stage.regions, uncertainty=uncertainty, init=init,
            progress=lambda done, total: reporter.message(f"{label}: {done} of {total} regions"),
            **options,
        )  # fmt: skip
    with reporter.stage(label) as cb:
        kernel = estimate_kernel(inputs.hr, inputs.lr, init=init, callback=cb, **options)
    if uncertainty is not None:
        from boneframe.kernel.bootstrap import bootstrap_kernel

        with reporter.stage(f"{label}: bootstrap"):
            kernel.uncertainty = bootstrap_kernel(
                inputs.hr, inputs.lr, estimate=kernel, **options, **uncertainty
            ).sidecar()
    return kernel


def stage_kernel(stage: Any, kernels: dict[str, Any]) -> Kernel | RegionalKernel:
    """The kernel a super-resolution stage names: an earlier stage's, or a file's
    (with its sidecar's offset); the stage's ``offset`` wins."""
    from dataclasses import replace

    if stage.kernel in kernels:
        kernel = kernels[stage.kernel]
        if stage.offset is None:
            return kernel
        if isinstance(kernel, RegionalKernel):
            return kernel.with_offset(stage.offset)
        return replace(kernel, offset=stage.offset)
    return load_kernel(stage.kernel, offset=stage.offset)


def run_sr_stage(
    stage: Any, spec: Any, inputs: Inputs, kernels: dict[str, Any], reporter: Reporter
) -> SuperResolution:
    """Super-resolve the low-resolution volume with one kernel."""
    from boneframe.registry import get_registry
    from boneframe.superres.iteration_metrics import iteration_metrics

    reg = get_registry().create("regularizer", stage.regularizer.name, stage.regularizer.params)
    solver_params = stage.solver.params.model_dump()
    metric_fn = None
    if spec.metrics.per_iteration and not inputs.lr.is_lazy:
        from boneframe.registry import get_registry

        further = [
            get_registry().create("segmentation", seg.name, seg.params)
            for seg in spec.metrics.segmentations
        ]
        metric_fn = iteration_metrics(
            inputs.hr.numpy(),
            inputs.hr.voxel_size,
            spec.metrics.threshold,
            structure_every=spec.metrics.structure_every if spec.metrics.structure else 0,
            # those that need no scan (cheap enough for every iteration)
            segmentations=[how for how in further if not hasattr(how, "bind")],
        )
    total = None if inputs.lr.is_lazy else solver_params.get("max_iter")
    with reporter.stage(f"super-resolution {stage.name}", total=total) as cb:
        return super_resolve(
            inputs.lr,
            stage_kernel(stage, kernels),
            p=inputs.p,
            regularizer=reg,
            metric_fn=metric_fn,
            callback=None if inputs.lr.is_lazy else cb,
            solver=stage.solver.name,
            solver_params=solver_params,
            device="cpu" if inputs.lr.is_lazy else spec.compute.device,
        )


def _segmentation_for(
    seg: Any, stage: Any, inputs: Inputs, kernels: dict[str, Any], volume: Volume
) -> Any:
    """The segmentation ``seg`` of the spec for one super-resolution's volume; one
    that needs the scan (``bind``) gets the scan and the stage's kernel (a regional
    kernel's mean), and skips a lazy volume (None)."""
    from boneframe.registry import get_registry

    how = get_registry().create("segmentation", seg.name, seg.params)
    if not hasattr(how, "bind"):
        return how
    if volume.is_lazy or inputs.lr.is_lazy:
        return None
    kernel = stage_kernel(stage, kernels)
    if isinstance(kernel, RegionalKernel):
        kernel = kernel.mean_kernel()
    return how.bind(inputs.lr.numpy(), kernel.array, kernel.offset)


def run_pipeline(
    spec: Any,
    out: str | Path,
    *,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    allow_remote_scheduler: bool = False,
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
    allow_remote_scheduler : bool
        Allow the spec's ``compute.scheduler`` to be a plain ``tcp://`` address off
        this machine (the command line's ``--allow-remote-scheduler``; a spec
        cannot opt in by itself: it may come from someone else).

    Returns
    -------
    PipelineResult
    """
    from boneframe.compute import active_client, use_scheduler

    reporter = reporter or Reporter()
    with contextlib.ExitStack() as stack:
        if spec.compute.scheduler and active_client() is None:  # --scheduler wins
            stack.enter_context(
                use_scheduler(spec.compute.scheduler, allow_remote=allow_remote_scheduler)
            )
            reporter.message(f"dask scheduler: {spec.compute.scheduler}")
        return _run_stages(spec, out, overwrite, reporter)


def _compartments(
    spec: Any, inputs: Inputs, folder: Path, ext: str, reporter: Reporter
) -> Volume | None:
    """Contour the low-resolution scan (the spec's ``compartments``), write the masks
    to ``compartments/``; the mask the metrics are measured in (or None)."""
    if spec.compartments is None:
        return None
    from boneframe.compartments import contour

    how = spec.compartments.contour
    with reporter.stage(f"compartments ({how.name})"):
        masks = contour(inputs.lr, how.name, how.params)
    (folder / "compartments").mkdir()
    for name, mask in masks.items():
        write_volume(mask, folder / "compartments" / f"{name}{ext}")
    which = spec.compartments.measure_in
    return None if which is None else masks[which]


def _run_stages(spec: Any, out: str | Path, overwrite: bool, reporter: Reporter) -> PipelineResult:
    """The body of :func:`run_pipeline`, under its scheduler."""
    from boneframe.metrics import measure

    out = Path(out)
    ext = _EXT[spec.outputs.format]
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        write_json(tmp / "spec.json", spec.model_dump(mode="json"))
        inputs = load_inputs(spec)
        result = PipelineResult(out, inputs)
        if inputs.registration is not None:
            from boneframe.registration import write_transform

            write_transform(inputs.registration.transform, tmp / "registration.tfm")
            write_json(tmp / "registration.json", inputs.registration.to_json())
            reporter.message(
                f"registered: rotation {inputs.registration.rotation_angle_deg:.3f}°, "
                f"overlap {inputs.registration.overlap:.0%}"
            )
        vs_hr = inputs.hr.require_voxel_size()
        lazy = " (chunked)" if inputs.hr.is_lazy or inputs.lr.is_lazy else ""
        reporter.message(
            f"inputs: high resolution {inputs.hr.shape} at {vs_hr[0]:g} µm, "
            f"low resolution {inputs.lr.shape}{lazy}"
        )
        region = _compartments(spec, inputs, tmp, ext, reporter)
        kernel_report: dict[str, Any] = {}
        if inputs.true_kernel is not None and inputs.phantom is None:
            truth = Kernel(inputs.true_kernel, inputs.true_offset or 0.0, vs_hr, inputs.p)
            truth.save(tmp / "kernel_true.npy")
            kernel_report["true"] = truth.summary()
        for stage in spec.kernels:
            kernel = run_kernel_stage(stage, inputs, result.kernels, reporter)
            result.kernels[stage.name] = kernel
            kernel.save(tmp / f"kernel_{stage.name}.npy")
            if isinstance(kernel, RegionalKernel):
                side = kernel.sidecar()
                if inputs.phantom is not None:  # the true blur at the same centres
                    truth_r = inputs.phantom.regional_truth(kernel)
                    side["true_regions"] = truth_r.region_summaries()
                kernel_report[stage.name] = side
                continue
            (tmp / f"history_kernel_{stage.name}.csv").write_text(history_csv(kernel.history))
            side = {k: v for k, v in kernel.sidecar().items() if k != "history"}
            if inputs.true_kernel is not None and inputs.phantom is None:
                side["kernel_error"] = kernel_error(kernel.array, inputs.true_kernel)
            kernel_report[stage.name] = side
        first = next(iter(result.kernels.values()), None)
        if isinstance(first, RegionalKernel):
            first = first.mean_kernel()
        gain, offset = (first.gain, first.offset) if first is not None else (1.0, 0.0)
        result.volumes["hr"] = inputs.hr
        upsampled = upsample_spline(inputs.lr, inputs.p, gain=gain, offset=offset)
        if upsampled.is_lazy:  # computed chunk by chunk as it is written, then read lazily
            upsampled = read_volume(write_volume(upsampled, tmp / "lr_upsampled.zarr"))
        result.volumes["lr_upsampled"] = upsampled
        for stage in spec.superresolution:
            sr = run_sr_stage(stage, spec, inputs, result.kernels, reporter)
            result.superresolutions[stage.name] = sr
            (tmp / f"history_sr_{stage.name}.csv").write_text(history_csv(sr.history))
            volume = sr.volume
            if spec.outputs.save_volumes or volume.is_lazy:
                path = write_volume(
                    volume,
                    tmp / f"sr_{stage.name}{ext if not volume.is_lazy else '.zarr'}",
                    sidecar={
                        "iterations": sr.iterations,
                        "converged": sr.converged,
                        "kernel": stage.kernel,
                        "history": sr.history,
                    },
                )
                if volume.is_lazy:  # solved block by block as it was written; read it back
                    volume = read_volume(path)
            result.volumes[f"sr_{stage.name}"] = volume
        with reporter.stage("metrics"):
            result.metrics = {
                "volumes": {
                    label: measure(
                        vol,
                        None if label == "hr" else inputs.hr,
                        region,
                        threshold=spec.metrics.threshold,
                        structure=spec.metrics.structure,
                    )
                    for label, vol in result.volumes.items()
                },
                "kernels": kernel_report,
            }
            for seg in spec.metrics.segmentations:
                for stage in spec.superresolution:
                    vol = result.volumes[f"sr_{stage.name}"]
                    how = _segmentation_for(seg, stage, inputs, result.kernels, vol)
                    if how is None:
                        continue
                    result.metrics["volumes"][f"sr_{stage.name} · {seg.name}"] = measure(
                        vol, inputs.hr, region, segmentation=how,
                        structure=spec.metrics.structure,
                    )  # fmt: skip
        write_json(tmp / "metrics.json", result.metrics)
        from boneframe.report import write_report

        write_report(tmp, spec, result)
        reporter.message(f"wrote {out}")
    return result
