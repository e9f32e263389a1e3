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
    bv_tv: Annotated[float, typer.Option(help="Target bone volume fraction.")] = 0.25,
    thickness: Annotated[float, typer.Option(help="Trabecular thickness, HR voxels.")] = 3.0,
    voxel_size: Annotated[float, typer.Option(help="High-resolution voxel size, µm.")] = 41.0,
    p: Annotated[int, typer.Option(help="Decimation factor per axis.")] = 2,
    format: Annotated[str, typer.Option(help="Volume format: zarr, npy, tif or nii.")] = "npy",
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
