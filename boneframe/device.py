r"""Where the arrays of a solve live: the CPU (numpy) or an NVIDIA GPU (CuPy).

The generic code paths (the exact Fourier f-step, the periodic differences, TV's
shrinkage, ADMM's generic iteration, the kernel design's FFT correlations) are
written once against the `array API standard <https://data-apis.org/array-api/>`_:
they take the namespace ``xp`` of their arrays from
:func:`array_api_compat.array_namespace` (or from :func:`array_namespace_for`
for a device name), so numpy, CuPy and the strict reference namespace
``array_api_strict`` (the tests) all run the same formulas. Only two things
depend on the namespace:

* :func:`fft_functions`: :mod:`scipy.fft` with ``workers`` threads for numpy (the
  array API's ``numpy.fft`` is single-threaded), ``xp.fft`` otherwise (cuFFT for
  CuPy);
* :func:`real_dot`: BLAS ``vdot`` for numpy and CuPy, ``sum(a * b)`` elsewhere.

The compiled (numba) CPU passes stay numpy-only and are chosen only for numpy
arrays. CuPy is imported lazily, only when ``device="cuda"`` is asked for
(``pip install 'boneframe[gpu]'``).
"""

from __future__ import annotations

import importlib
from functools import partial
from types import ModuleType, SimpleNamespace
from typing import Any, Literal, get_args

import array_api_compat
import numpy as np

from boneframe.errors import InputError

__all__ = [
    "DEVICES",
    "GPU_HINT",
    "Device",
    "array_namespace",
    "array_namespace_for",
    "check_device",
    "cuda_available",
    "device_of",
    "dtype_of",
    "fft_functions",
    "is_numpy_namespace",
    "namespace",
    "real_dot",
    "to_device",
    "to_numpy",
]

#: ``"cpu"``: numpy (and the compiled CPU passes); ``"cuda"``: CuPy on an NVIDIA GPU.
Device = Literal["cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)
#: What to do when ``device="cuda"`` cannot be honoured.
GPU_HINT = "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'boneframe[gpu]'"


def check_device(device: str) -> Device:
    """``device`` if it names a supported device (``"cpu"`` or ``"cuda"``).

    Raises
    ------
    InputError
        Any other value.
    """
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(map(repr, DEVICES))}, got {device!r}")
    return device  # type: ignore[return-value]


def _cupy() -> ModuleType:
    """CuPy with at least one visible device, or an :class:`InputError` with the hint."""
    try:
        cupy = importlib.import_module("cupy")  # optional: not a typed import
    except ImportError as exc:  # the usual case on a machine without the extra
        raise InputError(f"{GPU_HINT} (CuPy is not installed)") from exc
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no device: cupy raises its own runtime errors
        raise InputError(f"{GPU_HINT} (no CUDA device: {exc})") from exc
    if count < 1:
        raise InputError(f"{GPU_HINT} (no CUDA device found)")
    return cupy


def cuda_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device (never raises)."""
    try:
        _cupy()
    except Exception:
        return False
    return True


def array_namespace_for(device: str) -> Any:
    """The array-API namespace of ``device``.

    Parameters
    ----------
    device : {"cpu", "cuda"}
        ``"cpu"``: :mod:`array_api_compat.numpy` (numpy arrays);
        ``"cuda"``: :mod:`array_api_compat.cupy` (CuPy arrays on the current GPU).

    Returns
    -------
    module
        The namespace; its functions take and return that library's arrays.

    Raises
    ------
    InputError
        An unknown device, or ``"cuda"`` without CuPy or without a GPU (the
        message carries :data:`GPU_HINT`).
    """
    if check_device(device) == "cpu":
        import array_api_compat.numpy as xnp

        return xnp
    _cupy()
    import array_api_compat.cupy as xcp

    return xcp


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (:func:`array_api_compat.array_namespace`;
    lists and scalars count as numpy)."""
    objs = [a for a in arrays if array_api_compat.is_array_api_obj(a)]
    if not objs:
        import array_api_compat.numpy as xnp

        return xnp
    return array_api_compat.array_namespace(*objs)


def namespace(xp: Any = None) -> Any:
    """A namespace as the generic code uses it: ``None`` and :mod:`numpy` become
    :mod:`array_api_compat.numpy`, :mod:`cupy` becomes :mod:`array_api_compat.cupy`,
    anything else (e.g. ``array_api_strict``) is kept."""
    if xp is None or xp is np:
        import array_api_compat.numpy as xnp

        return xnp
    if getattr(xp, "__name__", "") == "cupy":
        import array_api_compat.cupy as xcp

        return xcp
    return xp


def is_numpy_namespace(xp: Any) -> bool:
    """True for numpy's namespace (plain or :mod:`array_api_compat`'s wrapper)."""
    return bool(array_api_compat.is_numpy_namespace(xp))


def device_of(xp: Any) -> str:
    """``"cpu"`` or ``"cuda"`` for numpy or CuPy namespaces, else the namespace's name."""
    if is_numpy_namespace(xp):
        return "cpu"
    if array_api_compat.is_cupy_namespace(xp):
        return "cuda"
    return str(getattr(xp, "__name__", xp))


def dtype_of(xp: Any, dtype: Any) -> Any:
    """The dtype of namespace ``xp`` named like the numpy ``dtype`` (``float32`` ...)."""
    return getattr(xp, np.dtype(dtype).name)


def to_device(x: Any, xp: Any, dtype: Any = None) -> Any:
    """``x`` (numpy or any array) as an array of namespace ``xp`` (a host-to-device copy
    for CuPy), in the numpy ``dtype`` when given."""
    xp = namespace(xp)
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
        if array_namespace(x) is not xp:  # e.g. a CuPy array for numpy: through the host
            x = to_numpy(x)
    else:
        x = np.asarray(x)
    out = xp.asarray(x)
    return out if dtype is None else xp.astype(out, dtype_of(xp, dtype), copy=False)


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (a device-to-host copy for CuPy; numpy arrays as they are)."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return np.asarray(x.get())
    if array_api_compat.is_array_api_obj(x):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, AttributeError):
            pass
    return np.asarray(x)


def real_dot(a: Any, b: Any) -> float:
    """``sum(a * b)`` of two real arrays of the same shape, as a Python float.

    Parameters
    ----------
    a, b : array
        Arrays of one namespace.

    Returns
    -------
    float
        BLAS ``vdot`` for numpy and CuPy (no temporary); the array API's
        ``sum(a * b)`` elsewhere.
    """
    if isinstance(a, np.ndarray):
        return float(np.vdot(a, b).real)
    if array_api_compat.is_cupy_array(a):
        return float(importlib.import_module("cupy").vdot(a, b).real)
    xp = array_namespace(a, b)
    return float(xp.sum(a * b))


def _scipy_fft(name: str, workers: int) -> Any:
    import scipy.fft

    fn = getattr(scipy.fft, name)

    def call(x: Any, *args: Any, overwrite: bool = False, **kwargs: Any) -> Any:
        return fn(x, *args, workers=workers, overwrite_x=overwrite, **kwargs)

    call.__name__ = name
    return call


def _xp_fft(fn: Any, x: Any, *args: Any, overwrite: bool = False, **kwargs: Any) -> Any:
    return fn(x, *args, **kwargs)


def _xp_complex_fft(
    xp: Any, fn: Any, x: Any, *args: Any, overwrite: bool = False, **kwargs: Any
) -> Any:
    """A complex transform of ``xp``; real input is made complex first (the standard's
    ``fft``/``fftn`` take complex arrays only)."""
    if not xp.isdtype(x.dtype, "complex floating"):
        x = xp.astype(x, xp.complex64 if x.dtype == xp.float32 else xp.complex128)
    return fn(x, *args, **kwargs)


_FFT_NAMES = ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn")


def fft_functions(xp: Any, workers: int = -1) -> SimpleNamespace:
    """The FFTs of namespace ``xp`` with the array API's signatures.

    ``fft``, ``ifft``, ``rfft``, ``irfft`` (``n``, ``axis``) and ``fftn``,
    ``ifftn``, ``rfftn``, ``irfftn`` (``s``, ``axes``); each also takes
    ``overwrite=True`` (a hint: the input may be destroyed). numpy runs
    :mod:`scipy.fft` with ``workers`` threads; other namespaces their ``fft``
    extension (cuFFT for CuPy, whose plans CuPy caches).
    """
    xp = namespace(xp)
    if is_numpy_namespace(xp):
        return SimpleNamespace(**{n: _scipy_fft(n, workers) for n in _FFT_NAMES})
    if not hasattr(xp, "fft"):
        raise InputError(f"the array namespace {device_of(xp)} has no fft extension")
    return SimpleNamespace(
        **{
            n: partial(_xp_complex_fft, xp, getattr(xp.fft, n))
            if not n.startswith(("r", "ir"))
            else partial(_xp_fft, getattr(xp.fft, n))
            for n in _FFT_NAMES
        }
    )
