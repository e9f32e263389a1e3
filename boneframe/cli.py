"""The ``boneframe`` command line (typer).

User errors (:class:`boneframe.errors.BoneframeError`, invalid parameters) print
one line on stderr and exit with code 2; ``--debug`` shows the traceback.
Heavy modules are imported inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

import typer

from boneframe.errors import BoneframeError, InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

app = typer.Typer(
    name="boneframe",
    help="Blurring-kernel estimation and TV super-resolution for bone micro-CT / HR-pQCT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_USER_ERROR = 2


@app.callback()
def _root(
    ctx: typer.Context,
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="BONEFRAME_SCHEDULER",
            help="dask.distributed scheduler address: tcp://127.0.0.1:8786 on this machine, "
            "or tls://host:8786 with dask's TLS settings (needs the distributed package).",
        ),
    ] = None,
    allow_remote_scheduler: Annotated[
        bool,
        typer.Option(
            "--allow-remote-scheduler",
            help="Allow a plain tcp:// scheduler that is not on this machine (or set "
            "BONEFRAME_ALLOW_REMOTE_SCHEDULER=1). The client unpickles what the scheduler "
            "sends: only for a scheduler you trust; prefer tls://.",
        ),
    ] = False,
) -> None:
    """Blurring-kernel estimation and TV super-resolution for bone micro-CT / HR-pQCT."""
    ctx.obj = {"allow_remote_scheduler": allow_remote_scheduler}
    if scheduler:
        from boneframe.compute import use_scheduler

        ctx.with_resource(use_scheduler(scheduler, allow_remote=allow_remote_scheduler))


def _allow_remote(ctx: typer.Context) -> bool:
    """The ``--allow-remote-scheduler`` of this invocation."""
    return bool((ctx.find_root().obj or {}).get("allow_remote_scheduler", False))


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


@overload
def parse_triple(text: str, what: str) -> tuple[float, float, float]: ...


@overload
def parse_triple(text: str | None, what: str) -> tuple[float, float, float] | None: ...


def parse_triple(text: str | None, what: str) -> tuple[float, float, float] | None:
    """Parse ``"41"`` or ``"41,41,82"`` into three floats."""
    if text is None:
        return None
    from boneframe.volume import as_triple

    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(
            f"{what} must be a number or three comma-separated numbers, got {text!r}"
        ) from None
    return as_triple(values, what)


def parse_grid(text: str | None, what: str) -> list[int] | None:
    """``"1,1,4"`` -> ``[1, 1, 4]`` (bounds are the spec model's); None stays None."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{what} must be three integers such as 1,1,4, got {text!r}") from None


def validated(model: type[BaseModel], **values: object) -> BaseModel:
    """The command's options through the spec's model (one bound on both paths);
    a problem names the option (``--kernel-gain``), not the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if not isinstance(p, int)]
            option = "--" + loc[-1].replace("_", "-") if loc else "options"
            problems.append(f"{option}: {e.get('msg')}")
        raise InputError("; ".join(problems)) from None


# --------------------------------------------------------------------------- plugins
@app.command()
def plugins() -> None:
    """List the registered strategies: kind, name, package, version, description."""
    from rich.console import Console
    from rich.table import Table

    from boneframe.registry import get_registry

    registry = get_registry()
    table = Table(title="boneframe strategies")
    for col in ("kind", "name", "package", "version", "description"):
        table.add_column(col)
    for e in registry.entries():
        table.add_row(e.kind, e.name, e.package, e.version, e.description)
    console = Console(width=max(120, Console().width))
    console.print(table)
    for kind, name in registry.conflicts:
        console.print(f"[red]refused:[/red] {registry.conflict_message(kind, name)}")
    for failure in registry.failures:
        console.print(f"[red]failed:[/red] {failure}")


# --------------------------------------------------------------------------- phantom
@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Output directory (must not exist).")],
    size: Annotated[int, typer.Option(help="High-resolution size per axis (multiple of p).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    kernel: Annotated[
        Path | None,
        typer.Option(help="Kernel .npy file (default: a Gaussian, see --kernel-sigma)."),
    ] = None,
    kernel_sigma: Annotated[
        str, typer.Option(help="Gaussian sigma per axis, HR voxels.")
    ] = "1.6,1.3,1.1",
    kernel_shift: Annotated[
        str, typer.Option(help="Gaussian centre offset per axis, HR voxels.")
    ] = "0.3,-0.2,0.1",
    kernel_gain: Annotated[float, typer.Option(help="Kernel sum.")] = 1.0,
    kernel_support: Annotated[int, typer.Option(help="Odd kernel support.")] = 9,
    offset: Annotated[float, typer.Option(help="Grey-level shift c.")] = 0.0,
    noise: Annotated[float, typer.Option(help="Noise SD in the low-resolution scan.")] = 0.01,
    shading: Annotated[
        float, typer.Option(help="LR gain varying by ±shading across the last axis.")
    ] = 0.0,
    kernel_variation: Annotated[
        float,
        typer.Option(
            help="The blur widens S times across the last axis (1: none); the true kernels "
            "of a --regions grid go to kernel_true_regional.npy."
        ),
    ] = 1.0,
    regions: Annotated[
        str, typer.Option(help="Grid NZ,NY,NX of the true regional kernels.")
    ] = "1,1,4",
    bv_tv: Annotated[float, typer.Option(help="Target bone volume fraction.")] = 0.25,
    thickness: Annotated[float, typer.Option(help="Trabecular thickness, HR voxels.")] = 3.0,
    voxel_size: Annotated[float, typer.Option(help="High-resolution voxel size, µm.")] = 41.0,
    p: Annotated[int, typer.Option(help="Decimation factor per axis.")] = 2,
    format: Annotated[str, typer.Option(help="Volume format: zarr, npy, tif or nii.")] = "npy",
    tile: Annotated[
        int,
        typer.Option(
            help="Write zarr chunk by chunk, the structure a periodic tiling of a TILE³ "
            "phantom (0: automatic, 256 above 512³)."
        ),
    ] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Write a synthetic micro-CT / HR-pQCT pair with a known kernel into OUT.

    Above 512³ (or with --tile) the pair is written chunk by chunk to zarr.
    """
    from boneframe.phantom import gaussian_kernel
    from boneframe.phantom_files import write_phantom
    from boneframe.spec import PhantomCommand

    opts = validated(
        PhantomCommand,
        size=size,
        seed=seed,
        noise=noise,
        offset=offset,
        kernel_sigma=parse_triple(kernel_sigma, "--kernel-sigma"),
        kernel_shift=parse_triple(kernel_shift, "--kernel-shift"),
        kernel_gain=kernel_gain,
        kernel_support=kernel_support,
        bv_tv=bv_tv,
        thickness=thickness,
        voxel_size=voxel_size,
        shading=shading,
        kernel_variation=kernel_variation,
        regions=parse_grid(regions, "--regions"),
        p=p,
        format=format,
        tile=tile,
    )
    assert isinstance(opts, PhantomCommand)
    if kernel is not None:
        from boneframe.io import read_volume

        h = read_volume(kernel).numpy().astype("float64")
        how: dict[str, object] = {"kernel": "file", "kernel_file": str(kernel)}
    else:
        h = gaussian_kernel(
            opts.kernel_sigma, opts.kernel_support, opts.kernel_shift, opts.kernel_gain
        )
        how = {
            "kernel": "gaussian",
            "kernel_sigma": list(opts.kernel_sigma),
            "kernel_shift": list(opts.kernel_shift),
        }
    info = write_phantom(
        out,
        size=opts.size,
        seed=opts.seed,
        kernel=h,
        offset=opts.offset,
        noise=opts.noise,
        shading=opts.shading,
        kernel_variation=opts.kernel_variation,
        regions=opts.regions,
        bv_tv=opts.bv_tv,
        thickness=opts.thickness,
        voxel_size=opts.voxel_size,
        p=opts.p,
        format=opts.format,
        tile=opts.tile,
        overwrite=overwrite,
        info=how,
    )
    files = info["files"]
    how_written = " chunk by chunk" if info.get("tile") else ""
    regional = ", kernel_true_regional.npy" if "kernel_true_regional" in files else ""
    typer.echo(
        f"wrote {out}/{files['hr']}, {out}/{files['lr']}, kernel.npy{regional}, "
        f"phantom.json{how_written}"
    )


# --------------------------------------------------------------------------- info
@app.command()
def info(path: Annotated[Path, typer.Argument(help="Volume file.")]) -> None:
    """Print a volume's shape, type, voxel size, origin and metadata."""
    from boneframe.io import read_volume

    vol = read_volume(path)
    if vol.metadata.get("kind") == "regional":
        from boneframe.kernel import RegionalKernel, load_kernel

        regional = load_kernel(path)
        assert isinstance(regional, RegionalKernel)
        grid = "x".join(str(n) for n in regional.grid)
        typer.echo(f"file:        {path}")
        typer.echo(f"regional kernel: {grid} regions, support {regional.support}, p {regional.p}")
        rvs = regional.voxel_size
        typer.echo(
            f"voxel size:  {'unknown' if rvs is None else ', '.join(f'{v:g}' for v in rvs)} µm"
        )
        _print_regional(regional)
        return
    typer.echo(f"file:        {path}")
    typer.echo(f"shape:       {vol.shape}")
    typer.echo(f"dtype:       {vol.dtype}")
    vs = "unknown" if vol.voxel_size is None else ", ".join(f"{v:g}" for v in vol.voxel_size)
    typer.echo(f"voxel size:  {vs} µm")
    typer.echo(f"origin:      {', '.join(f'{v:g}' for v in vol.origin)} µm")
    for key, value in vol.metadata.items():
        typer.echo(f"{key + ':':<12} {value}")


def _print_regional(regional: Any) -> None:
    """The report's table of a regional kernel's regions
    (:func:`boneframe.report.regional_table`), its empty columns left out."""
    from boneframe.report import regional_table

    rows = regional_table(regional.sidecar())
    keep = [c for c in range(len(rows[0])) if any(row[c] for row in rows[1:])]
    _print_rows([[row[c] for c in keep] for row in rows])


# --------------------------------------------------------------------------- helpers
def _params(pairs: list[str] | None) -> dict[str, object]:
    """``["bins=64"]`` -> ``{"bins": 64}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"a parameter must look like KEY=VALUE, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--param {pair!r}: the value is not valid YAML") from None
    return out


def _reporter(quiet: bool):
    from boneframe.progress import Reporter

    return Reporter(quiet=quiet)


def _resolution(p: int) -> int:
    """``--p`` through the spec's bound (``inputs.p``)."""
    from pydantic import TypeAdapter, ValidationError

    from boneframe.spec import Resolution

    try:
        return int(TypeAdapter(Resolution).validate_python(p))
    except ValidationError as exc:
        raise InputError(f"--p: {exc.errors()[0]['msg']}") from None


def _check_outputs(ctx: typer.Context, out: Path, overwrite: bool, volume: bool = True) -> None:
    """Reserve an output for the whole command, before any work is done: an existing
    one is refused (unless ``overwrite``), so is another writer of it, and for a
    volume whatever blocks its sidecar (:mod:`boneframe.io.unit`)."""
    from boneframe.io.atomic import reserve
    from boneframe.io.unit import reserve_volume

    ctx.with_resource(reserve_volume(out, overwrite) if volume else reserve(out, overwrite))


# --------------------------------------------------------------------------- estimate-kernel
@app.command("estimate-kernel")
def estimate_kernel_cmd(
    ctx: typer.Context,
    hr: Annotated[Path, typer.Argument(help="High-resolution (micro-CT) volume, registered.")],
    lr: Annotated[Path, typer.Argument(help="Low-resolution (HR-pQCT) volume.")],
    out: Annotated[
        Path, typer.Option("--out", help="Kernel file (.npy or .zarr); sidecar <stem>.json.")
    ],
    similarity: Annotated[str, typer.Option(help="Similarity: l2, mi, or a plugin's.")] = "l2",
    solver: Annotated[
        str | None,
        typer.Option(help="Solver (default: exact for l2, gradient-descent otherwise)."),
    ] = None,
    support: Annotated[int, typer.Option(help="Odd kernel support per axis.")] = 9,
    alpha: Annotated[
        float | None, typer.Option(help="Regularisation weight (default: scale-free).")
    ] = None,
    max_iter: Annotated[int | None, typer.Option(help="Maximum iterations.")] = None,
    tol: Annotated[float | None, typer.Option(help="Stopping tolerance.")] = None,
    init_sigma: Annotated[
        float | None, typer.Option(help="Sigma of the Gaussian start, HR voxels (default 2).")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="Start from this kernel (e.g. the L2 estimate).")
    ] = None,
    bins: Annotated[int | None, typer.Option(help="MI: histogram bins.")] = None,
    parzen_width: Annotated[float | None, typer.Option(help="MI: Parzen width (bins).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Similarity parameter KEY=VALUE.")] = None,
    p: Annotated[int, typer.Option(help="Resolution factor per axis.")] = 2,
    voxel_size_hr: Annotated[str | None, typer.Option(help="Override HR voxel size, µm.")] = None,
    voxel_size_lr: Annotated[str | None, typer.Option(help="Override LR voxel size, µm.")] = None,
    regions: Annotated[
        str | None,
        typer.Option(
            help="NZ,NY,NX: one kernel per region of this grid over LR's field of view (a "
            "spatially variant kernel; sidecar 'regions')."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap replicates for 95 % FWHM/MTF intervals (0: none).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Estimate the blurring kernel h and offset c of g = U(h * (f + c)) + n."""
    from boneframe.io import no_voxel_size, read_volume
    from boneframe.kernel import estimate_kernel, pair_voxel_size
    from boneframe.registry import get_registry
    from boneframe.spec import stage_model

    sim_params = _params(param)
    if bins is not None:
        sim_params["bins"] = bins
    if parzen_width is not None:
        sim_params["parzen_width"] = parzen_width
    solver_params: dict[str, object] = {}
    if solver is not None:
        fields = get_registry().get("solver", solver).Params.model_fields
        iteration = {"max_iter": max_iter, "tol": tol}
        solver_params = {k: v for k, v in iteration.items() if v is not None and k in fields}
    stage: Any = validated(
        stage_model("kernels"),
        name="cli",
        similarity={"name": similarity, "params": sim_params},
        solver=None if solver is None else {"name": solver, "params": solver_params},
        support=support,
        alpha=alpha,
        init_sigma=init_sigma,
        regions=parse_grid(regions, "--regions"),
        bootstrap=bootstrap,
    )
    p = _resolution(p)
    _check_outputs(ctx, out, overwrite)
    f = read_volume(hr, parse_triple(voxel_size_hr, "--voxel-size-hr"))
    g = read_volume(lr, parse_triple(voxel_size_lr, "--voxel-size-lr"))
    if pair_voxel_size(f, g, p) is None:
        raise no_voxel_size(hr, lr)
    reporter = _reporter(quiet)
    options: dict[str, Any] = dict(
        similarity=stage.similarity.name,
        similarity_params=stage.similarity.params.model_dump(),
        solver=None if stage.solver is None else stage.solver.name,
        solver_params=None if stage.solver is None else stage.solver.params.model_dump(),
        support=stage.support,
        alpha=stage.alpha,
        p=p,
        init=None if init is None else read_volume(init).numpy(),
        **({} if stage.init_sigma is None else {"init_sigma": stage.init_sigma}),
        max_iter=max_iter,
        tol=tol,
    )
    uncertainty = None if not stage.bootstrap else {"replicates": stage.bootstrap, "seed": seed}
    if stage.regions is not None:
        from boneframe.kernel import estimate_regional_kernels

        n_regions = stage.regions[0] * stage.regions[1] * stage.regions[2]
        regional = estimate_regional_kernels(
            f, g, stage.regions, uncertainty=uncertainty, **options,
            progress=lambda done, total: reporter.message(
                f"regional kernels ({similarity}): {done} of {total} regions"
            ),
        )  # fmt: skip
        regional.save(out, overwrite=overwrite)
        typer.echo(f"wrote {out}: {n_regions} regional kernels")
        _print_regional(regional)
        return
    with reporter.stage(f"kernel ({similarity})") as cb:
        kernel = estimate_kernel(f, g, callback=cb, **options)
    if uncertainty is not None:
        from boneframe.kernel.bootstrap import bootstrap_kernel

        with reporter.stage("bootstrap"):
            extra = bootstrap_kernel(
                f, g, estimate=kernel, **{k: v for k, v in options.items() if k != "init"},
                **uncertainty,
            ).sidecar()  # fmt: skip
        kernel.uncertainty = extra
    kernel.save(out, overwrite=overwrite)
    side = kernel.summary()
    fwhm = ", ".join("-" if v is None else f"{v:.0f}" for v in side["fwhm_um"])
    typer.echo(
        f"wrote {out}: gain {kernel.gain:.4g}, offset {kernel.offset:.4g}, "
        f"FWHM {fwhm} µm, {kernel.iterations} iterations ({kernel.solver})"
    )


# --------------------------------------------------------------------------- super-resolve
@app.command("super-resolve")
def super_resolve_cmd(
    ctx: typer.Context,
    lr: Annotated[Path, typer.Argument(help="Low-resolution (HR-pQCT) volume.")],
    kernel: Annotated[
        Path,
        typer.Option(
            help="Kernel file (from estimate-kernel); a regional one (--regions) solves the "
            "spatially variant model."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Super-resolved volume; sidecar <stem>.json.")],
    offset: Annotated[
        float | None,
        typer.Option(help="Offset c (default: the kernel's sidecar; required without one)."),
    ] = None,
    regularizer: Annotated[str, typer.Option(help="tv or gradient-l2 (or a plugin's).")] = "tv",
    mu: Annotated[float, typer.Option(help="Data weight (paper: 10).")] = 10.0,
    beta: Annotated[float, typer.Option(help="ADMM penalty (paper: 7).")] = 7.0,
    tol: Annotated[float, typer.Option(help="Stop at relative change <= tol.")] = 1e-3,
    max_iter: Annotated[int, typer.Option(help="Maximum iterations.")] = 300,
    adapt_iter: Annotated[
        int, typer.Option(help="Iterations with adaptive beta (0: the paper's plain ADMM).")
    ] = 50,
    reference: Annotated[
        Path | None, typer.Option(help="High-resolution reference for per-iteration metrics.")
    ] = None,
    p: Annotated[
        int | None, typer.Option(help="Resolution factor per axis (default: the kernel's).")
    ] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Override LR voxel size, µm.")] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Solve only where this mask is (e.g. contour's periosteal.aim, put on LR's grid "
            "by geometry), plus a halo; elsewhere the spline upsampling."
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="cpu, or cuda (CuPy on an NVIDIA GPU; in-memory LR only).")
    ] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """TV super-resolution of LR with a known kernel (ADMM, exact Fourier step).

    A zarr LR is solved block by block and streamed to OUT (progress: blocks done
    and time left). The result keeps LR's position and density calibration.
    """
    from boneframe.io import read_volume, write_volume
    from boneframe.kernel import RegionalKernel, load_kernel
    from boneframe.masks import read_mask
    from boneframe.spec import ComputeSpec, stage_model
    from boneframe.superres import super_resolve

    stage: Any = validated(
        stage_model("superresolution"),
        name="cli",
        kernel=str(kernel),
        regularizer={"name": regularizer},
        solver={
            "name": "admm",
            "params": {
                "mu": mu,
                "beta": beta,
                "tol": tol,
                "max_iter": max_iter,
                "adapt_iter": adapt_iter,
            },
        },
        offset=offset,
    )
    compute: Any = validated(ComputeSpec, device=device)
    p = None if p is None else _resolution(p)
    _check_outputs(ctx, out, overwrite)
    g = read_volume(lr, parse_triple(voxel_size, "--voxel-size"), require_voxel_size=True)
    k = load_kernel(kernel, offset=stage.offset)
    ref = None if reference is None else read_volume(reference)
    region = None if mask is None else read_mask(mask, like=g)
    reporter = _reporter(quiet)
    with reporter.stage("super-resolution", total=None if g.is_lazy else max_iter) as cb:
        sr = super_resolve(
            g,
            k,
            p=p,
            regularizer=stage.regularizer.name,
            reference=ref,
            callback=None if g.is_lazy else cb,
            solver=stage.solver.name,
            solver_params=stage.solver.params.model_dump(),
            mask=region,
            device=compute.device,
        )
    settings = {
        "kernel": str(kernel),
        "offset": (k.mean_kernel() if isinstance(k, RegionalKernel) else k).offset
        if offset is None
        else offset,
        "regularizer": regularizer,
        "mu": mu,
        "beta": beta,
        "tol": tol,
        "adapt_iter": adapt_iter,
    }
    if mask is not None:
        settings["mask"] = str(mask)
    if g.is_lazy:
        side = {**settings, "blockwise": True, "block": sr.block, "halo": sr.halo}
        side["blocks_solved"] = [sr.solved, sr.blocks]
        how = f"block-wise, block {sr.block} LR voxels, {sr.solved} of {sr.blocks} blocks solved"
    else:
        side = {**settings, "iterations": sr.iterations, "converged": sr.converged}
        side["history"] = sr.history
        how = f"{sr.iterations} iterations, " + (
            "converged" if sr.converged else "stopped at --max-iter"
        )
    from boneframe.superres.blockwise import PROGRESS_TAG

    with reporter.tasks("super-resolution", (sr.solved or 0) if g.is_lazy else 0, PROGRESS_TAG):
        write_volume(sr.volume, out, overwrite=overwrite, sidecar=side)
    typer.echo(f"wrote {out} {sr.volume.shape}: {how}")


# --------------------------------------------------------------------------- metrics
@app.command()
def metrics(
    volume: Annotated[Path, typer.Argument(help="Volume to measure.")],
    reference: Annotated[Path | None, typer.Option(help="Reference for PSNR and DICE.")] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Measure inside this mask (mask AIM, GOBJ contour, NIfTI, npy, zarr), put on "
            "the volume's grid by geometry (a scan's mask applies to its super-resolution)."
        ),
    ] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Bone threshold (default: Otsu).")] = None,
    segmentation: Annotated[
        str | None,
        typer.Option(help="Segment the bone with this strategy: otsu, gauss-threshold, ..."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Segmentation parameter KEY=VALUE (e.g. sigma=0.8).")
    ] = None,
    structure: Annotated[
        bool, typer.Option(help="Also Tb.Th, Tb.Sp, Tb.N, DA (isotropic voxels).")
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Bone metrics: PSNR, DICE, BV/TV, Euler, Betti, Conn.D, BMD, Tb.Th, Tb.Sp, Tb.N, DA.

    Zarr volumes are measured chunk by chunk. Lengths in µm, Tb.N in 1/mm,
    Conn.D in 1/mm³, BMD in mg HA/cm³ (calibrated scans; the table's unit column;
    JSON: the "units" entry). With --mask, inside the mask (TV is its volume).
    """
    from boneframe.io import read_volume
    from boneframe.io.sidecar import to_json
    from boneframe.masks import read_mask
    from boneframe.metrics import measure
    from boneframe.spec import stage_model

    opts: Any = validated(stage_model("metrics"), threshold=threshold, structure=structure)
    seg_params = _params(param)
    if seg_params and segmentation is None:
        raise InputError("--param gives segmentation parameters: name the --segmentation")
    vs = parse_triple(voxel_size, "--voxel-size")
    vol = read_volume(volume, vs, require_voxel_size=True)
    ref_vol = None if reference is None else read_volume(reference)
    region = None if mask is None else read_mask(mask, like=vol)
    result = measure(
        vol,
        ref_vol,
        region,
        threshold=opts.threshold,
        structure=opts.structure,
        segmentation=segmentation,
        segmentation_params=seg_params or None,
    )
    skipped = result.get("skipped") or {}
    for name, why in skipped.items():
        typer.echo(f"note: {name} not computed: {why}", err=True)
    if json_output:
        typer.echo(to_json(result, indent=None), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    units = result.get("units") or {}
    table = Table(title=str(volume) if mask is None else f"{volume} inside {mask}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for key, value in result.items():
        if key in ("units", "skipped"):
            continue
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, list | tuple):
            text = ", ".join(f"{v:g}" for v in value)
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            text = "—" if value is None else str(value)
        unit = "µm" if key == "voxel_size_um" else units.get(key, "")
        table.add_row(key, text, unit)
    Console().print(table)


# --------------------------------------------------------------------------- contour
@app.command()
def contour(
    ctx: typer.Context,
    scan: Annotated[Path, typer.Argument(help="Calibrated HR-pQCT scan (AIM, NIfTI, zarr, ...).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the three masks.")],
    format: Annotated[
        str | None,
        typer.Option(help="Mask format: aim, nii, nii.gz, zarr, npy or tif (default: the scan's)."),
    ] = None,
    method: Annotated[str, typer.Option(help="Contouring strategy.")] = "dual-threshold",
    param: Annotated[
        list[str] | None, typer.Option(help="Strategy parameter KEY=VALUE (e.g. bones=all).")
    ] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Periosteal, trabecular and cortical masks of a scan (uint8, the scan's geometry).

    The dual-threshold method of Buie et al. (2007) with IPL's defaults; see
    `boneframe plugins` for the strategies and their parameters.
    """
    import numpy as np

    from boneframe.compartments import contour as contour_scan
    from boneframe.io import atomic_path, read_volume, write_volume

    suffix = _mask_suffix(scan, format)
    _check_outputs(ctx, out, overwrite, volume=False)
    vs = parse_triple(voxel_size, "--voxel-size")
    vol = read_volume(scan, vs, require_voxel_size=True)
    masks = contour_scan(vol, method, _params(param) or None)
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        for name, mask in masks.items():
            write_volume(mask, tmp / f"{name}{suffix}")
    voxel_mm3 = float(np.prod(vol.require_voxel_size())) * 1e-9
    for name, mask in masks.items():
        count = int(np.count_nonzero(mask.data))
        typer.echo(f"{out / (name + suffix)}: {count} voxels, {count * voxel_mm3:.1f} mm³")


#: ``--format`` names of the mask files ``contour`` writes.
_MASK_FORMATS = {"aim": ".aim", "nii": ".nii", "nii.gz": ".nii.gz", "zarr": ".zarr",
                 "npy": ".npy", "tif": ".tif", "tiff": ".tif"}  # fmt: skip


def _mask_suffix(scan: Path, format: str | None) -> str:
    """The file suffix of the masks: ``format``'s, else the scan's (``.aim;1`` as ``.aim``)."""
    if format is not None:
        key = format.lower().lstrip(".")
        if key not in _MASK_FORMATS:
            known = ", ".join(sorted(_MASK_FORMATS))
            raise InputError(f"--format {format!r} is not a mask format; choose {known}")
        return _MASK_FORMATS[key]
    name = scan.name.lower()
    for suffix in sorted(set(_MASK_FORMATS.values()), key=len, reverse=True):
        if name.endswith(suffix) or name.endswith(suffix + ";1"):
            return suffix
    raise InputError(f"{scan.name}: the masks need a --format (aim, nii.gz, zarr, npy, tif)")


# --------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    ctx: typer.Context,
    scans: Annotated[list[Path], typer.Argument(metavar="SCAN...", help="Calibrated scans.")],
    masks: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the compartments' masks (periosteal/trabecular/cortical, alone or "
            "after '<scan stem>_'; Scanco _TRAB_MASK/_CORT_MASK AIMs; <scan stem>.gobj). "
            "Default: contour each scan."
        ),
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Also write the rows to this CSV file.")] = None,
    segmentation: Annotated[
        str | None,
        typer.Option(help="Bone segmentation (default: XtremeCT II gauss-threshold, 450/320)."),
    ] = None,
    param: Annotated[list[str] | None, typer.Option(help="Segmentation KEY=VALUE.")] = None,
    structure: Annotated[bool, typer.Option(help="Also Tb.Th, Tb.Sp, Tb.N.")] = True,
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --csv file.")] = False,
) -> None:
    """Standard per-compartment evaluation: vBMD (mg HA/cm³), areas (mm²), Ct.Th (µm), Ct.Po.

    One JSON object per scan on stdout (a row: every key carries its unit), and
    with --csv one CSV row per scan.
    """
    from boneframe.evaluation import UNITS, find_masks
    from boneframe.evaluation import evaluate as run_evaluation
    from boneframe.io import read_volume
    from boneframe.io.sidecar import to_json
    from boneframe.masks import read_mask

    seg_params = _params(param)
    if seg_params and segmentation is None:
        raise InputError("--param gives segmentation parameters: name the --segmentation")
    if csv is not None:
        _check_outputs(ctx, csv, overwrite, volume=False)
    vs = parse_triple(voxel_size, "--voxel-size")
    rows = []
    for path in scans:
        scan = read_volume(path, vs, require_voxel_size=True)
        given = None
        if masks is not None:
            given = {n: read_mask(f, like=scan) for n, f in find_masks(masks, path).items()}
        row = run_evaluation(
            scan,
            given,
            segmentation=segmentation,
            segmentation_params=seg_params or None,
            structure=structure,
        )
        for key, why in row["skipped"].items():
            typer.echo(f"note: {path.name}: {key} not computed: {why}", err=True)
        values = {k: v for k, v in row.items() if k in UNITS}
        rows.append({"scan": str(path), **values})
        typer.echo(to_json({"scan": str(path), **row}, indent=None))
    if csv is not None:
        _write_csv(csv, rows, overwrite)


def _write_csv(path: Path, rows: list[dict[str, Any]], overwrite: bool) -> None:
    """``rows`` as CSV (a header of the keys, empty cells for None), written atomically."""
    import csv as csvlib

    from boneframe.io.atomic import atomic_path

    header = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csvlib.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


@app.command()
def thickness(
    ctx: typer.Context,
    volume: Annotated[Path, typer.Argument(help="Volume (binary, or grey: Otsu).")],
    out: Annotated[Path, typer.Option("--out", help="Thickness map (µm, NaN outside).")],
    phase: Annotated[str, typer.Option(help="bone (Tb.Th) or marrow (Tb.Sp).")] = "bone",
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Bone threshold (default: Otsu).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Local thickness map (Hildebrand & Rüegsegger; BoneJ conventions).

    A zarr volume is mapped chunk by chunk (halo from a first distance pass).
    """
    from boneframe.io import read_volume, write_volume
    from boneframe.metrics import local_thickness_map, measure, thickness_statistics

    if phase not in ("bone", "marrow"):
        raise InputError(f"--phase must be bone or marrow, got {phase!r}")
    which: Literal["bone", "marrow"] = "bone" if phase == "bone" else "marrow"
    from boneframe.spec import stage_model

    opts: Any = validated(stage_model("metrics"), threshold=threshold)
    threshold = opts.threshold
    _check_outputs(ctx, out, overwrite)
    vs = parse_triple(voxel_size, "--voxel-size")
    vol = read_volume(volume, vs, require_voxel_size=True)
    t = threshold if threshold is not None else measure(vol, names=["bv_tv"])["threshold"]
    tmap = local_thickness_map(vol.data > t, vol.require_voxel_size(), phase=which)
    side = {"phase": phase, "unit": "µm", "threshold": float(t)}
    path = write_volume(vol.with_data(tmap), out, overwrite=overwrite, sidecar=side)
    stats = thickness_statistics(read_volume(path).data)
    typer.echo(f"wrote {out}: mean {stats.mean:.1f} µm over {stats.count} {phase} voxels")


# --------------------------------------------------------------------------- register
@app.command()
def register(
    moving: Annotated[Path, typer.Argument(help="Micro-CT scan (moving).")],
    fixed: Annotated[Path, typer.Argument(help="HR-pQCT scan (fixed).")],
    out: Annotated[Path, typer.Option("--out", help="Resampled micro-CT; also <stem>.tfm/.json.")],
    p: Annotated[int, typer.Option(help="Resolution factor of the output grid.")] = 2,
    pad: Annotated[int, typer.Option(help="HR-pQCT voxels of margin around the grid.")] = 0,
    interp: Annotated[str, typer.Option(help="linear or bspline.")] = "linear",
    bins: Annotated[int, typer.Option(help="Mattes MI histogram bins.")] = 32,
    sampling: Annotated[float, typer.Option(help="Fraction of voxels sampled.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    init: Annotated[str, typer.Option(help="geometry, moments, or a .tfm file.")] = "geometry",
    voxel_size_moving: Annotated[str | None, typer.Option(help="Override, µm.")] = None,
    voxel_size_fixed: Annotated[str | None, typer.Option(help="Override, µm.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Register the micro-CT to the HR-pQCT and resample it onto the p-times finer grid."""
    from boneframe.registration import RegistrationParams, run_registration

    params = RegistrationParams(
        p=p, pad=pad, interp=interp, bins=bins, sampling=sampling, seed=seed, init=init
    )
    result = run_registration(
        moving,
        fixed,
        out,
        params,
        overwrite=overwrite,
        moving_voxel_size=parse_triple(voxel_size_moving, "--voxel-size-moving"),
        fixed_voxel_size=parse_triple(voxel_size_fixed, "--voxel-size-fixed"),
    )
    typer.echo(
        f"wrote {out}: rotation {result.rotation_angle_deg:.3f}°, metric "
        f"{result.metric_initial:.4f} -> {result.metric_final:.4f}, overlap {result.overlap:.0%}, "
        f"{sum(result.iterations)} iterations ({result.stop_reason})"
    )


# --------------------------------------------------------------------------- schema, run, demo
@app.command()
def schema(
    out: Annotated[Path, typer.Option(help="Folder of the JSON Schemas.")] = Path("schemas"),
    check: Annotated[bool, typer.Option(help="Exit 1 when the folder is stale.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing schema file.")] = False,
) -> None:
    """Write (or --check) the JSON Schema of the pipeline spec."""
    from boneframe.io import write_json
    from boneframe.io.sidecar import to_json
    from boneframe.spec import spec_json_schema

    path = out / "pipeline.schema.json"
    text = to_json(spec_json_schema())
    if check:
        if not path.is_file() or path.read_text() != text:
            fix = f"boneframe schema --out {out} --overwrite"
            typer.echo(f"{path} is stale: run `{fix}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give the folder the schema goes into")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, spec_json_schema(), overwrite=overwrite)
    typer.echo(f"wrote {path}")


def _run_spec(ctx: typer.Context, spec: Any, out: Path, overwrite: bool, quiet: bool) -> Any:
    """:func:`boneframe.pipeline.run_pipeline` with this invocation's options."""
    from boneframe.pipeline import run_pipeline

    return run_pipeline(
        spec,
        out,
        overwrite=overwrite,
        reporter=_reporter(quiet),
        allow_remote_scheduler=_allow_remote(ctx),
    )


def _print_summary(metrics_: dict) -> None:
    from boneframe.demo import summary_rows

    for rows in summary_rows(metrics_):
        _print_rows(rows)


def _print_rows(rows: list[list[str]]) -> None:
    """A header row and the rows under it, as a table on standard output."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in rows[0]:
        table.add_column(col)
    for row in rows[1:]:
        table.add_row(*row)
    Console().print(table)


@app.command()
def run(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec (.yaml, .toml, .json).")],
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: <spec stem>-out).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Run a pipeline from a validated spec file."""
    from boneframe.spec import load_spec

    out = out or Path(f"{spec_file.stem}-out")
    _check_outputs(ctx, out, overwrite, volume=False)
    spec = load_spec(spec_file)
    result = _run_spec(ctx, spec, out, overwrite, quiet)
    if not quiet:
        _print_summary(result.metrics)


@app.command()
def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-out"),
    size: Annotated[int, typer.Option(help="Phantom size (200: the paper's setting).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    moving: Annotated[
        Path | None, typer.Option(help="Raw micro-CT: run on real scans (with --fixed).")
    ] = None,
    fixed: Annotated[Path | None, typer.Option(help="HR-pQCT scan of the same sample.")] = None,
    whole_scan: Annotated[
        bool,
        typer.Option(
            help="Instead: a synthetic calibrated distal-radius scan through contour, "
            "super-resolution inside the periosteal mask and the per-compartment evaluation."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """The paper's experiment: L2 and MI kernels, TV SR, metrics, report.

    On a phantom with a known kernel, or on raw scans (--moving/--fixed), which
    are registered first; with --whole-scan, a whole-scan walk-through instead.
    """
    from boneframe.demo import demo_spec
    from boneframe.spec import validate_spec

    _check_outputs(ctx, out, overwrite, volume=False)
    if whole_scan:
        if moving is not None or fixed is not None:
            raise InputError("--whole-scan simulates its scan: it takes no --moving/--fixed")
        _whole_scan_demo(out, seed, overwrite, quiet)
        return
    data = demo_spec(size, seed)
    if (moving is None) != (fixed is None):
        raise InputError("give both --moving (micro-CT) and --fixed (HR-pQCT), or neither")
    if moving is not None and fixed is not None:
        data["inputs"] = {
            "registration": {"moving": str(moving.resolve()), "fixed": str(fixed.resolve())},
            "p": data["inputs"]["p"],
        }
    spec = validate_spec(data, "demo")
    result = _run_spec(ctx, spec, out, overwrite, quiet)
    _print_summary(result.metrics)
    typer.echo(f"report: {out / 'report.md'}")


def _whole_scan_demo(out: Path, seed: int, overwrite: bool, quiet: bool) -> None:
    """``demo --whole-scan``: run it, then a table of the three evaluations."""
    from rich.console import Console
    from rich.table import Table

    from boneframe.evaluation import UNITS
    from boneframe.whole_scan import run_whole_scan

    result = run_whole_scan(out, seed=seed, overwrite=overwrite, reporter=_reporter(quiet))
    rows = result["evaluation"]
    table = Table(title="per-compartment evaluation (82 µm scan, 41 µm SR and truth)")
    for column in ("quantity", "unit", "HR-pQCT", "SR", "truth"):
        table.add_column(column, justify="left" if column in ("quantity", "unit") else "right")
    for key in UNITS:
        if key in rows["scan"]:
            cells = [rows[v].get(key) for v in ("scan", "sr", "truth")]
            text = ["—" if c is None else f"{c:.4g}" for c in cells]
            table.add_row(key, UNITS[key], *text)
    Console().print(table)
    dice = ", ".join(f"{k} {v:.3f}" for k, v in result["dice"].items())
    blocks = result["blocks"]
    typer.echo(f"contours against the truth (DICE): {dice}")
    typer.echo(f"super-resolution: {blocks['solved']} of {blocks['total']} blocks solved")
    typer.echo(f"figure: {out / 'whole_scan.png'}; numbers: {out / 'evaluation.json'}")


# --------------------------------------------------------------------------- entry point

#: ``errno`` values of an ``OSError`` the user can act on (a path, a permission,
#: the disk): one ``error:`` line and exit 2, not a defect.
USER_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENAMETOOLONG,
        errno.EXDEV,
        errno.EMFILE,
        errno.ELOOP,
    }
)


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a defect."""
    from pydantic import ValidationError

    if isinstance(exc, BoneframeError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return format_validation_error(exc)
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        where = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or os.strerror(exc.errno or 0)
        hint = {
            errno.ENOSPC: ": free space or write elsewhere",
            errno.EDQUOT: ": free space or write elsewhere",
            errno.EACCES: ": check the folder's permissions",
            errno.EROFS: ": write elsewhere",
        }.get(exc.errno or 0, "")
        return f"{where}: {reason}{hint}" if where else f"{reason}{hint}"
    if isinstance(exc, MemoryError):
        return "not enough memory: use zarr volumes (read chunk by chunk) or a larger machine"
    usage = getattr(exc, "format_message", None)
    if usage is not None and getattr(exc, "exit_code", None) == EXIT_USER_ERROR:
        return str(usage())  # the command line's own usage errors
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit code.

    0: done. 2: something the user can fix (a bad value, file, permission, no
    space, a conflict): one ``error:`` line on stderr, nothing left behind.
    1: a defect of boneframe: one line asking for a report (``--debug`` shows the
    traceback). 130: interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    code = 0
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.showwarning = _show_warning
    try:
        returned = app(args=args, prog_name="boneframe", standalone_mode=False)
        if isinstance(returned, int):  # typer.Exit(code) returns its code here
            code = returned
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _err("interrupted")
        code = 130
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed: not an error
            return _exit(0, argv)
        exit_code = getattr(exc, "exit_code", None)
        if type(exc).__name__ in ("Exit", "Abort") and isinstance(exit_code, int):
            return _exit(exit_code if type(exc).__name__ == "Exit" else 130, argv)
        message = user_message(exc)
        if debug:
            raise
        if message is not None:
            _err(message)
            code = EXIT_USER_ERROR
        else:
            _err(
                f"internal error: {type(exc).__name__}: {exc} — this is a defect of boneframe: "
                "please report it with the output of the same command run with --debug"
            )
            code = 1
    finally:
        stack.close()
    return _exit(code, argv)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A data warning as one ``warning:`` line on stderr (no source location)."""
    from boneframe.errors import DataWarning

    if issubclass(category, DataWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _exit(code: int, argv: list[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code


def format_validation_error(exc: object) -> str:
    """One readable line per pydantic problem, with its field path."""
    lines = []
    for e in exc.errors():  # type: ignore[attr-defined]
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(input)"
        lines.append(f"{loc}: {e.get('msg')}")
    return "invalid parameters: " + "; ".join(lines)


if __name__ == "__main__":
    main()
