"""boneframe: blurring-kernel estimation and TV super-resolution for bone micro-CT / HR-pQCT.

The Python API follows the data path; the command line and ``boneframe run`` are
thin adapters over exactly these calls::

    import boneframe as bf

    hr = bf.read_volume("f.zarr")                      # Volume: array + voxel size (µm) + origin
    lr = bf.read_volume("hrpqct.aim")
    kernel = bf.estimate_kernel(hr, lr, similarity="mi")
    kernel.save("k.npy")                               # kernel + sidecar (offset, FWHM, MTF)
    sr = bf.super_resolve(lr, kernel)                  # zarr input: solved block by block
    bf.write_volume(sr.volume, "sr.zarr")
    print(bf.measure(sr.volume, reference=hr))         # PSNR, DICE, BV/TV, Conn.D, Tb.Th, ...
    trab = bf.read_mask("hrpqct_TRAB_MASK.aim")         # on the scan's grid, by geometry
    print(bf.measure(sr.volume, mask=trab))            # inside the mask, on the SR grid
    print(bf.evaluate(lr))                             # Tt/Tb/Ct.vBMD, areas, Ct.Th, Ct.Po

Every function takes numpy arrays, dask arrays (chunk by chunk, on the active
dask scheduler; :func:`use_scheduler` connects a cluster) or :class:`Volume`
objects. Names are imported on first use, so ``import boneframe`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "Volume": "boneframe.volume",
    "read_volume": "boneframe.io",
    "write_volume": "boneframe.io",
    "register": "boneframe.registration",
    "simulate_pair": "boneframe.phantom",
    "estimate_kernel": "boneframe.kernel",
    "Kernel": "boneframe.kernel",
    "RegionalKernel": "boneframe.kernel",
    "estimate_regional_kernels": "boneframe.kernel",
    "load_kernel": "boneframe.kernel",
    "super_resolve": "boneframe.superres",
    "SuperResolution": "boneframe.superres",
    "upsample_spline": "boneframe.superres",
    "measure": "boneframe.metrics",
    "read_mask": "boneframe.masks",
    "mask_on_grid": "boneframe.masks",
    "evaluate": "boneframe.evaluation",
    "to_density": "boneframe.calibration",
    "from_density": "boneframe.calibration",
    "is_calibrated": "boneframe.calibration",
    "use_scheduler": "boneframe.compute",
    "get_registry": "boneframe.registry",
    "BoneframeError": "boneframe.errors",
    "InputError": "boneframe.errors",
}

__all__ = [
    "BoneframeError",
    "InputError",
    "Kernel",
    "RegionalKernel",
    "SuperResolution",
    "Volume",
    "__version__",
    "estimate_kernel",
    "estimate_regional_kernels",
    "evaluate",
    "from_density",
    "get_registry",
    "is_calibrated",
    "load_kernel",
    "mask_on_grid",
    "measure",
    "read_mask",
    "read_volume",
    "register",
    "simulate_pair",
    "super_resolve",
    "to_density",
    "upsample_spline",
    "use_scheduler",
    "write_volume",
]

if TYPE_CHECKING:
    from boneframe.calibration import from_density, is_calibrated, to_density
    from boneframe.compute import use_scheduler
    from boneframe.errors import BoneframeError, InputError
    from boneframe.evaluation import evaluate
    from boneframe.io import read_volume, write_volume
    from boneframe.kernel import (
        Kernel,
        RegionalKernel,
        estimate_kernel,
        estimate_regional_kernels,
        load_kernel,
    )
    from boneframe.masks import mask_on_grid, read_mask
    from boneframe.metrics.measure import measure
    from boneframe.phantom import simulate_pair
    from boneframe.registration import register
    from boneframe.registry import get_registry
    from boneframe.superres import SuperResolution, super_resolve, upsample_spline
    from boneframe.volume import Volume


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'boneframe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
