"""The demo: the paper's experiment on a phantom pair with a known kernel.

:func:`demo_spec` is the whole experiment as a pipeline spec;
``examples/paper.yaml`` is ``demo_spec(200)`` (a test keeps them equal), so
``boneframe run examples/paper.yaml`` reproduces ``boneframe demo --size 200``.
"""

from __future__ import annotations

from typing import Any

#: Default demo size: small enough for a few minutes on 2 cores.
DEMO_SIZE = 64


def demo_spec(size: int = DEMO_SIZE, seed: int = 0) -> dict[str, Any]:
    """The paper's experiment (§3) as a spec: a phantom, L2 and MI kernels, TV SR of each;
    every volume also measured on the bone of the ``partial-volume`` segmentation (the
    sharper-than-Otsu reading of the same super-resolution, issue #24)."""
    kernels: list[dict[str, Any]] = [
        {"name": "l2", "similarity": "l2", "solver": "exact", "support": 9},
    ]
    superresolution: list[dict[str, Any]] = [{"name": "l2", "kernel": "l2"}]
    from boneframe.registry import get_registry

    if "mi" in get_registry().names("similarity"):
        kernels.append(
            {
                "name": "mi",
                "similarity": "mi",
                "solver": "gradient-descent",
                "support": 9,
                "init_from": "l2",
            }
        )
        superresolution.append({"name": "mi", "kernel": "mi"})
    return {
        "version": 1,
        "inputs": {
            "phantom": {
                "size": size,
                "seed": seed,
                "noise": 0.01,
                "offset": 0.05,
                "kernel_gain": 0.9,
            },
            "p": 2,
        },
        "kernels": kernels,
        "superresolution": superresolution,
        "metrics": {"per_iteration": True, "segmentations": ["partial-volume"]},
        "outputs": {"format": "npy", "save_volumes": True},
    }


def summary_rows(metrics: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the terminal summary: kernels, then volumes."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list | tuple):
            return ", ".join("-" if x is None else f"{x:.0f}" for x in v)
        return "-" if v is None else str(v)

    kernels = [["kernel", "error", "FWHM (µm)", "gain", "offset"]]
    for name, k in metrics["kernels"].items():
        if "regions" in k:  # a regional kernel: the range of its regions
            fw = [[r["fwhm_um"][a] for r in k["regions"]] for a in range(3)]
            span = ", ".join("-" if None in v else f"{min(v):.0f}–{max(v):.0f}" for v in fw)
            grid = "×".join(str(n) for n in k["grid"])
            kernels.append([f"{name} ({grid})", "-", span, "-", fmt(k.get("offset"))])
            continue
        err = k.get("kernel_error")
        kernels.append(
            [
                name,
                "-" if err is None else f"{100 * err:.1f} %",
                fmt(k.get("fwhm_um")),
                fmt(k.get("gain")),
                fmt(k.get("offset")),
            ]
        )
    volumes = [
        [
            "volume",
            "PSNR (dB)",
            "DICE (–)",
            "BV/TV (–)",
            "Conn.D (1/mm³)",
            "Tb.Th (µm)",
            "Tb.Sp (µm)",
        ]  # fmt: skip
    ]
    for name, m in metrics["volumes"].items():
        volumes.append(
            [
                name,
                fmt(m.get("psnr")),
                fmt(m.get("dice")),
                fmt(m.get("bv_tv")),
                fmt(m.get("conn_d")),
                _fmt0(m.get("tb_th")),
                _fmt0(m.get("tb_sp")),
            ]
        )
    return kernels, volumes


def _fmt0(um: float | None) -> str:
    return "-" if um is None else f"{um:.0f}"
