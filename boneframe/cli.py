"""The ``boneframe`` command line (typer).

User errors (:class:`boneframe.errors.BoneframeError`, invalid parameters) print
one line on stderr and exit with code 2; ``--debug`` shows the traceback.
Heavy modules are imported inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from boneframe.errors import BoneframeError, InputError

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
            help="dask.distributed scheduler address (tcp://host:8786): chunked work on "
            "zarr volumes runs on that cluster (needs the distributed package).",
        ),
    ] = None,
) -> None:
    """Blurring-kernel estimation and TV super-resolution for bone micro-CT / HR-pQCT."""
    if scheduler:
        from boneframe.chunked.cluster import use_scheduler

        ctx.with_resource(use_scheduler(scheduler))


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


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
    """Write a synthetic micro-CT / HR-pQCT pair with a known kernel into OUT."""
    import numpy as np

    from boneframe.io import atomic_path, write_json, write_volume
    from boneframe.phantom import gaussian_kernel, simulate_pair

    ext = {"zarr": ".zarr", "npy": ".npy", "tif": ".tif", "tiff": ".tif", "nii": ".nii.gz"}.get(
        format
    )
    if ext is None:
        raise InputError(f"unknown --format {format!r}; choose zarr, npy, tif or nii")
    if kernel is not None:
        from boneframe.io import read_volume

        h = read_volume(kernel).numpy().astype(np.float64)
    else:
        h = gaussian_kernel(
            parse_triple(kernel_sigma, "--kernel-sigma"),
            kernel_support,
            parse_triple(kernel_shift, "--kernel-shift"),
            kernel_gain,
        )
    if tile == 0 and size > LARGE_PHANTOM:
        tile = 256
    if tile:
        _large_phantom(
            out, size, seed, h, offset, noise, shading, p, voxel_size, tile, format, overwrite
        )
        return
    pair = simulate_pair(
        size,
        seed,
        kernel=h,
        offset=offset,
        noise=noise,
        p=p,
        bv_tv=bv_tv,
        thickness=thickness,
        voxel_size_hr=voxel_size,
        shading=shading,
    )
    hr, lr = pair.volumes()
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        write_volume(hr, tmp / f"hr{ext}")
        write_volume(lr, tmp / f"lr{ext}")
        np.save(tmp / "kernel.npy", pair.kernel)
        write_json(
            tmp / "phantom.json",
            {
                **pair.params,
                "kernel": "file" if kernel is not None else "gaussian",
                "kernel_file": None if kernel is None else str(kernel),
                "kernel_sigma": None
                if kernel is not None
                else list(parse_triple(kernel_sigma, "sigma")),
                "kernel_shift": None
                if kernel is not None
                else list(parse_triple(kernel_shift, "shift")),
                "voxel_size_lr_um": list(pair.voxel_size_lr),
                "format": format,
                "files": {"hr": f"hr{ext}", "lr": f"lr{ext}", "kernel": "kernel.npy"},
            },
        )
    typer.echo(
        f"wrote {out}/hr{ext} {hr.shape}, {out}/lr{ext} {lr.shape}, kernel.npy, phantom.json"
    )


#: Phantoms larger than this (per axis) are written chunk by chunk.
LARGE_PHANTOM = 512


def _large_phantom(
    out: Path,
    size: int,
    seed: int,
    h: object,
    offset: float,
    noise: float,
    shading: float,
    p: int,
    voxel_size: float,
    tile: int,
    format: str,
    overwrite: bool,
) -> None:
    """``phantom`` chunk by chunk: a tiled micro-CT and its simulated HR-pQCT, in zarr."""
    import numpy as np

    from boneframe.chunked.phantom import write_large_acquisition, write_large_phantom
    from boneframe.io import atomic_path, write_json

    if format != "zarr":
        raise InputError(
            f"a {size}³ phantom is written chunk by chunk, which needs --format zarr "
            f"(or give --size <= {LARGE_PHANTOM})"
        )
    if shading:
        raise InputError("--shading is not available for phantoms written chunk by chunk")
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        hr = write_large_phantom(
            tmp / "hr.zarr", size, seed, tile=tile, voxel_size=voxel_size, noise=0.0
        )
        lr = write_large_acquisition(
            hr, tmp / "lr.zarr", kernel=h, offset=offset, noise=noise, p=p, seed=seed
        )
        np.save(tmp / "kernel.npy", h)
        write_json(
            tmp / "phantom.json",
            {
                "size": [size] * 3,
                "seed": seed,
                "tile": tile,
                "offset": offset,
                "noise": noise,
                "p": [p] * 3,
                "voxel_size_lr_um": [voxel_size * p] * 3,
                "format": "zarr",
                "files": {"hr": "hr.zarr", "lr": "lr.zarr", "kernel": "kernel.npy"},
            },
        )
    typer.echo(f"wrote {out}/hr.zarr {hr.shape}, {out}/lr.zarr {lr.shape} chunk by chunk")


# --------------------------------------------------------------------------- info
@app.command()
def info(path: Annotated[Path, typer.Argument(help="Volume file.")]) -> None:
    """Print a volume's shape, type, voxel size, origin and metadata."""
    from boneframe.io import read_volume

    vol = read_volume(path)
    typer.echo(f"file:        {path}")
    typer.echo(f"shape:       {vol.shape}")
    typer.echo(f"dtype:       {vol.dtype}")
    vs = "unknown" if vol.voxel_size is None else ", ".join(f"{v:g}" for v in vol.voxel_size)
    typer.echo(f"voxel size:  {vs} µm")
    typer.echo(f"origin:      {', '.join(f'{v:g}' for v in vol.origin)} µm")
    for key, value in vol.metadata.items():
        typer.echo(f"{key + ':':<12} {value}")


# --------------------------------------------------------------------------- helpers
def _params(pairs: list[str] | None) -> dict[str, object]:
    """``["bins=64"]`` -> ``{"bins": 64}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"a parameter must look like KEY=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def _reporter(quiet: bool):
    from boneframe.progress import Reporter

    return Reporter(quiet=quiet)


def _check_outputs(out: Path, overwrite: bool) -> None:
    """Refuse an existing output or sidecar before any work is done."""
    from boneframe.io import sidecar_path
    from boneframe.io.atomic import check_writable

    check_writable(out, overwrite)
    check_writable(sidecar_path(out), overwrite)


def _voxel(volume, override: str | None, what: str):
    vs = parse_triple(override, what)
    return volume if vs is None else volume.with_data(volume.data, voxel_size=vs)


# --------------------------------------------------------------------------- estimate-kernel
@app.command("estimate-kernel")
def estimate_kernel_cmd(
    hr: Annotated[Path, typer.Argument(help="High-resolution (micro-CT) volume, registered.")],
    lr: Annotated[Path, typer.Argument(help="Low-resolution (HR-pQCT) volume.")],
    out: Annotated[
        Path, typer.Option("--out", help="Kernel file (.npy or .zarr); sidecar <stem>.json.")
    ],
    similarity: Annotated[str, typer.Option(help="Similarity: l2, mi, or a plugin's.")] = "l2",
    solver: Annotated[str, typer.Option(help="Solver: exact (L2 only) or gradient-descent.")] = "",
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
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Estimate the blurring kernel h and offset c of g = U(h * (f + c)) + n."""
    from boneframe.io import read_volume, write_volume
    from boneframe.kernel import estimate_kernel
    from boneframe.volume import Volume

    _check_outputs(out, overwrite)
    f = _voxel(read_volume(hr), voxel_size_hr, "--voxel-size-hr")
    g = _voxel(read_volume(lr), voxel_size_lr, "--voxel-size-lr")
    vs_hr = f.voxel_size
    if vs_hr is None and g.voxel_size is not None:
        vs_hr = tuple(v / p for v in g.voxel_size)
    if vs_hr is None:
        raise InputError("voxel sizes unknown: give --voxel-size-hr (µm)")
    sim_params = _params(param)
    if bins is not None:
        sim_params["bins"] = bins
    if parzen_width is not None:
        sim_params["parzen_width"] = parzen_width
    if not solver:
        solver = "exact" if similarity == "l2" else "gradient-descent"
    reporter = _reporter(quiet)
    with reporter.stage(f"kernel ({similarity}, {solver})") as cb:
        est = estimate_kernel(  # zarr volumes stay lazy: the chunked path
            f.data if f.is_lazy else f.numpy(),
            g.data if g.is_lazy else g.numpy(),
            similarity=similarity,
            solver=solver,
            support=support,
            alpha=alpha,
            p=p,
            init=None if init is None else read_volume(init).numpy().astype("float64"),
            **({} if init_sigma is None else {"init_sigma": init_sigma}),
            max_iter=max_iter,
            tol=tol,
            callback=cb,
            similarity_params=sim_params,
        )
    side = est.sidecar(vs_hr)
    write_volume(Volume(est.kernel, voxel_size=vs_hr), out, overwrite=overwrite, sidecar=side)
    fwhm = ", ".join("-" if v is None else f"{v:.0f}" for v in side["fwhm_um"])
    typer.echo(
        f"wrote {out}: gain {side['gain']:.4g}, offset {side['offset']:.4g}, "
        f"FWHM {fwhm} µm, {est.iterations} iterations"
    )


# --------------------------------------------------------------------------- super-resolve
@app.command("super-resolve")
def super_resolve_cmd(
    lr: Annotated[Path, typer.Argument(help="Low-resolution (HR-pQCT) volume.")],
    kernel: Annotated[Path, typer.Option(help="Kernel file (from estimate-kernel).")],
    out: Annotated[Path, typer.Option("--out", help="Super-resolved volume; sidecar <stem>.json.")],
    offset: Annotated[
        float | None, typer.Option(help="Offset c (default: the kernel's sidecar, else 0).")
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
        Path | None, typer.Option(help="High-resolution reference for metrics.")
    ] = None,
    p: Annotated[int, typer.Option(help="Resolution factor per axis.")] = 2,
    voxel_size: Annotated[str | None, typer.Option(help="Override LR voxel size, µm.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """TV super-resolution of LR with a known kernel (ADMM, exact Fourier step)."""
    from boneframe.io import read_json, read_volume, sidecar_path, write_volume
    from boneframe.registry import get_registry
    from boneframe.superres import super_resolve
    from boneframe.volume import Volume

    _check_outputs(out, overwrite)
    g = _voxel(read_volume(lr), voxel_size, "--voxel-size")
    h = read_volume(kernel).numpy().astype("float64")
    if offset is None:
        side = sidecar_path(kernel)
        offset = float(read_json(side).get("offset", 0.0)) if side.is_file() else 0.0
    ref = None
    metric_fn = None
    vs_hr = None if g.voxel_size is None else tuple(v / p for v in g.voxel_size)
    if reference is not None:
        from boneframe.pipeline import iteration_metric_fn

        ref = read_volume(reference).numpy()
        metric_fn = iteration_metric_fn(ref, vs_hr)

    reg = get_registry().create("regularizer", regularizer)
    settings = {
        "kernel": str(kernel),
        "offset": offset,
        "regularizer": regularizer,
        "mu": mu,
        "beta": beta,
        "tol": tol,
        "adapt_iter": adapt_iter,
    }
    if g.is_lazy:  # zarr: overlapping blocks, each solved exactly, streamed to OUT
        from boneframe.chunked.superres import super_resolve_blockwise
        from boneframe.io import write_json

        if reference is not None:
            raise InputError("--reference (per-iteration metrics) needs an in-memory volume")
        blocks = super_resolve_blockwise(
            g,
            h,
            offset=offset,
            p=p,
            out=out,
            overwrite=overwrite,
            regularizer=reg,
            mu=mu,
            beta=beta,
            tol=tol,
            max_iter=max_iter,
            solver_params={"adapt_iter": adapt_iter},
        )
        write_json(
            sidecar_path(out),
            {**settings, "blockwise": True, "block": blocks.block, "halo": blocks.halo},
        )
        typer.echo(f"wrote {out} {blocks.volume.shape}: block-wise, block {blocks.block} LR voxels")
        return
    with _reporter(quiet).stage("super-resolution", total=max_iter) as cb:
        sr = super_resolve(
            g.numpy(),
            h,
            offset=offset,
            p=p,
            regularizer=reg,
            mu=mu,
            beta=beta,
            tol=tol,
            max_iter=max_iter,
            reference=ref,
            metric_fn=metric_fn,
            callback=cb,
            solver_params={"adapt_iter": adapt_iter},
        )
    write_volume(
        Volume(sr.volume, voxel_size=vs_hr, origin=g.origin, direction=g.direction),
        out,
        overwrite=overwrite,
        sidecar={
            **settings,
            "iterations": sr.iterations,
            "converged": sr.converged,
            "history": sr.history,
        },
    )
    typer.echo(
        f"wrote {out} {sr.volume.shape}: {sr.iterations} iterations, "
        f"{'converged' if sr.converged else 'stopped at --max-iter'}"
    )


# --------------------------------------------------------------------------- metrics
@app.command()
def metrics(
    volume: Annotated[Path, typer.Argument(help="Volume to measure.")],
    reference: Annotated[Path | None, typer.Option(help="Reference for PSNR and DICE.")] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Bone threshold (default: Otsu).")] = None,
    structure: Annotated[
        bool, typer.Option(help="Also Tb.Th, Tb.Sp, Tb.N, DA (isotropic voxels).")
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Bone metrics: PSNR, DICE, BV/TV, Euler, Betti, Conn.D, Tb.Th, Tb.Sp, Tb.N, DA."""
    from boneframe.io import read_volume
    from boneframe.io.sidecar import to_json
    from boneframe.metrics import all_metrics

    vol = _voxel(read_volume(volume), voxel_size, "--voxel-size")
    ref_vol = None if reference is None else read_volume(reference)
    if ref_vol is not None and ref_vol.shape != vol.shape:
        raise InputError(f"reference shape {ref_vol.shape} differs from the volume's {vol.shape}")
    if vol.is_lazy:  # zarr: chunk by chunk, never the whole volume in memory
        from boneframe.chunked.metrics import all_metrics_chunked

        result = all_metrics_chunked(
            vol.data,
            None if ref_vol is None else ref_vol.data,
            voxel_size=vol.voxel_size,
            threshold=threshold,
            structure=structure,
        )
    else:
        result = all_metrics(
            vol.numpy(),
            None if ref_vol is None else ref_vol.numpy(),
            voxel_size=vol.voxel_size,
            threshold=threshold,
            structure=structure,
        )
    skipped = result.pop("structure_skipped", None)
    if skipped:
        typer.echo(f"note: structure metrics left out: {skipped}", err=True)
    if json_output:
        typer.echo(to_json(result, indent=None), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(volume))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(key, text)
    Console().print(table)


@app.command()
def thickness(
    volume: Annotated[Path, typer.Argument(help="Volume (binary, or grey: Otsu).")],
    out: Annotated[Path, typer.Option("--out", help="Thickness map (µm, NaN outside).")],
    phase: Annotated[str, typer.Option(help="bone (Tb.Th) or marrow (Tb.Sp).")] = "bone",
    voxel_size: Annotated[str | None, typer.Option(help="Override voxel size, µm.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Bone threshold (default: Otsu).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Local thickness map (Hildebrand & Rüegsegger; BoneJ conventions)."""
    import numpy as np

    from boneframe.io import read_volume, write_volume
    from boneframe.metrics import otsu_threshold, thickness_map

    if phase not in ("bone", "marrow"):
        raise InputError(f"--phase must be bone or marrow, got {phase!r}")
    _check_outputs(out, overwrite)
    vol = _voxel(read_volume(volume), voxel_size, "--voxel-size")
    vs = vol.require_voxel_size()
    side = {"phase": phase, "unit": "µm"}
    if vol.is_lazy:  # zarr: chunk by chunk (halo from a first distance pass)
        from boneframe.chunked.metrics import compute_metrics_chunked
        from boneframe.chunked.thickness import local_thickness_chunked, thickness_statistics

        t = threshold
        if t is None:
            t = compute_metrics_chunked(vol.data, names=["otsu"])["threshold"]  # 2 passes
        tmap = local_thickness_chunked(vol.data > t, vs, phase=phase)
        write_volume(
            vol.with_data(tmap), out, overwrite=overwrite, sidecar={**side, "threshold": t}
        )
        stats = thickness_statistics(read_volume(out).data)
        mean, count = stats.mean, stats.count
    else:
        data = vol.numpy()
        t = threshold if threshold is not None else otsu_threshold(data)
        tmap = thickness_map(np.asarray(data) > t, vs, phase=phase)
        write_volume(
            vol.with_data(tmap), out, overwrite=overwrite, sidecar={**side, "threshold": float(t)}
        )
        inside = tmap[np.isfinite(tmap)]
        mean = float(inside.mean()) if inside.size else float("nan")
        count = inside.size
    typer.echo(f"wrote {out}: mean {mean:.1f} µm over {count} {phase} voxels")


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
) -> None:
    """Write (or --check) the JSON Schema of the pipeline spec."""
    from boneframe.io import write_json
    from boneframe.io.sidecar import to_json
    from boneframe.spec import spec_json_schema

    path = out / "pipeline.schema.json"
    text = to_json(spec_json_schema())
    if check:
        if not path.is_file() or path.read_text() != text:
            typer.echo(f"{path} is stale: run `boneframe schema --out {out}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, spec_json_schema())
    typer.echo(f"wrote {path}")


def _print_summary(metrics_: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from boneframe.demo import summary_rows

    console = Console()
    for rows in summary_rows(metrics_):
        table = Table()
        for col in rows[0]:
            table.add_column(col)
        for row in rows[1:]:
            table.add_row(*row)
        console.print(table)


@app.command()
def run(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec (.yaml, .toml, .json).")],
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: <spec stem>-out).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Run a pipeline from a validated spec file."""
    from boneframe.io.atomic import check_writable
    from boneframe.pipeline import run_pipeline
    from boneframe.spec import load_spec

    spec = load_spec(spec_file)
    out = out or Path(f"{spec_file.stem}-out")
    check_writable(out, overwrite)
    result = run_pipeline(spec, out, overwrite=overwrite, reporter=_reporter(quiet))
    if not quiet:
        _print_summary(result.metrics)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-out"),
    size: Annotated[int, typer.Option(help="Phantom size (200: the paper's setting).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    moving: Annotated[
        Path | None, typer.Option(help="Raw micro-CT: run on real scans (with --fixed).")
    ] = None,
    fixed: Annotated[Path | None, typer.Option(help="HR-pQCT scan of the same sample.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """The paper's experiment: L2 and MI kernels, TV SR, metrics, report.

    On a phantom with a known kernel, or on raw scans (--moving/--fixed), which
    are registered first.
    """
    from boneframe.demo import demo_spec
    from boneframe.io.atomic import check_writable
    from boneframe.pipeline import run_pipeline
    from boneframe.spec import validate_spec

    check_writable(out, overwrite)
    data = demo_spec(size, seed)
    if (moving is None) != (fixed is None):
        raise InputError("give both --moving (micro-CT) and --fixed (HR-pQCT), or neither")
    if moving is not None:
        data["inputs"] = {
            "registration": {"moving": str(moving.resolve()), "fixed": str(fixed.resolve())},
            "p": data["inputs"]["p"],
        }
    spec = validate_spec(data, "demo")
    result = run_pipeline(spec, out, overwrite=overwrite, reporter=_reporter(quiet))
    _print_summary(result.metrics)
    typer.echo(f"report: {out / 'report.md'}")


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    code = 0
    try:
        # standalone mode: typer reports usage errors itself (exit 2) and exits
        app(args=args, prog_name="boneframe")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BoneframeError as exc:
        if debug:
            raise
        _err(str(exc))
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        code = 130
    except Exception as exc:
        from pydantic import ValidationError

        if debug:
            raise
        if isinstance(exc, ValidationError):
            _err(format_validation_error(exc))
            code = EXIT_USER_ERROR
        else:
            _err(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            )
            code = 1
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
