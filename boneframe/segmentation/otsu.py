"""Otsu's threshold as a segmentation strategy (the paper's): the metrics' own Otsu.

The threshold is :func:`boneframe.metrics.thresholds.otsu_of` of the whole
volume (256 bins over its ``[min, max]``, summed chunk by chunk for a dask
volume), the same number ``measure`` reports as ``threshold`` by default; bone
is ``volume > threshold``, inside the mask when one is given.
"""

from __future__ import annotations

from typing import Any, ClassVar

from boneframe.interfaces import Segmentation
from boneframe.segmentation.region import bone_of
from boneframe.volume import Volume


class OtsuSegmentation(Segmentation):
    """Bone above Otsu's threshold of the whole volume (256 bins over its [min, max])."""

    name: ClassVar[str] = "otsu"
    description: ClassVar[str] = "Otsu's threshold of the whole volume (the paper's)"

    def threshold(self, volume: Volume) -> float:
        """Otsu's threshold of ``volume``, in its stored values."""
        from boneframe.metrics.thresholds import otsu_of

        return otsu_of(volume)

    def segment(self, volume: Volume, mask: Any = None) -> Any:
        """``volume > threshold`` (a boolean volume is its own bone), False outside ``mask``.

        Parameters
        ----------
        volume : Volume
            Numpy or dask data; the result is of the same kind.
        mask : array or Volume, optional
            The region: an array of the volume's shape, or a Volume put on the
            volume's grid by geometry.

        Returns
        -------
        numpy or dask array of bool
        """
        return bone_of(volume, mask, lambda data: data > self.threshold(volume))
