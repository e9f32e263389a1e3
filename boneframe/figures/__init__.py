"""The figures of a pipeline run's report, one module per figure.

``style`` (fonts, resolution, colours, the scale bar) and ``quantities`` (names and
units, shared with the report's tables) serve them all; :func:`boneframe.report.write_report`
draws them.
"""

from boneframe.figures.iterations import history_arrays, iteration_figure
from boneframe.figures.kernels import axis_mtf, kernel_figure
from boneframe.figures.regional import regional_fwhm_figure
from boneframe.figures.registration import overlay_figure
from boneframe.figures.slices import central_slice, slices_figure
from boneframe.figures.thickness import thickness_figure

__all__ = [
    "axis_mtf",
    "central_slice",
    "history_arrays",
    "iteration_figure",
    "kernel_figure",
    "overlay_figure",
    "regional_fwhm_figure",
    "slices_figure",
    "thickness_figure",
]
