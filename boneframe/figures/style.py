"""The look every report figure shares: fonts, resolution, axis colours, the scale bar.

Figures are drawn inside :func:`figure_style` (matplotlib's Agg backend and
:data:`RC`, restored afterwards, so the report leaves no global state behind)
and written by :func:`save`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

#: Resolution of the written PNGs (dots per inch): a 10-pt font is 14 pixels high.
DPI = 130
#: Fonts of every report figure: nothing under 9 pt at the saved size.
RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
#: Names of the array axes (arrays are indexed z, y, x; see :mod:`boneframe.volume`).
AXIS_NAMES = ("z", "y", "x")
#: One colour per array axis, the same in every figure (matplotlib's first three).
AXIS_COLOURS = ("C0", "C1", "C2")
#: One marker per array axis, so that the axes differ in grey print too.
AXIS_MARKERS = ("o", "s", "^")
#: How the truth is drawn: on top of everything else, black dashed
#: (thinner than the estimates' lines, so that both show where they coincide).
TRUTH_STYLE: dict[str, Any] = {"color": "black", "ls": (0, (3, 2)), "lw": 1.3, "zorder": 5}


def axis_name(axis: int) -> str:
    """``"axis 0 (z)"``: an array axis and its world direction."""
    return f"axis {axis} ({AXIS_NAMES[axis]})"


@contextlib.contextmanager
def figure_style() -> Iterator[Any]:
    """``matplotlib.pyplot`` on the Agg backend with :data:`RC` in force for the block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(cast(Any, RC)):  # matplotlib types its keys as literals
        yield plt


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG at :data:`DPI` and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)


def nice_length(width_um: float) -> float:
    """A round scale-bar length (1, 2 or 5 times a power of ten, in µm) of about a
    fifth of ``width_um``."""
    import math

    target = max(width_um, 1e-9) / 5.0
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= target)


def length_text(um: float) -> str:
    """``"500 µm"`` below a millimetre, ``"2 mm"`` from one."""
    return f"{um / 1000.0:g} mm" if um >= 1000.0 else f"{um:g} µm"


def scale_bar(ax: Any, voxel_um: float, width: int) -> None:
    """A scale bar in the lower left of an image ``width`` pixels wide with
    ``voxel_um`` µm per pixel column (black on a white box: legible on any image)."""
    from mpl_toolkits.axes_grid1.anchored_artists import (  # type: ignore[import-untyped]
        AnchoredSizeBar,
    )

    um = nice_length(width * voxel_um)
    bar = AnchoredSizeBar(
        ax.transData,
        um / voxel_um,
        length_text(um),
        "lower left",
        pad=0.3,
        borderpad=0.4,
        sep=3,
        color="black",
        frameon=True,
        size_vertical=max(width / 80.0, 0.5),
        fontproperties={"size": 9},
    )
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)
