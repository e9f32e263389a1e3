"""Where blocks of work run: here in one piece, or as dask tasks on the active scheduler.

Every computation over a volume in boneframe is written once, as a function of
one block (a box of the valid region in kernel estimation, a chunk in the
metrics) whose results add up. :func:`map_reduce` runs it:

* on in-memory (numpy) input the volume is one block and the function is called
  here, directly;
* on lazy (dask) input every block is a task, the results are summed by a binary
  tree of tasks and ``dask.compute`` runs the graph on the active scheduler:
  dask's thread pool by default, a ``dask.distributed`` cluster while
  :func:`use_scheduler` has one connected.

So the formula never knows how it is executed, and chunked results equal the
in-memory ones up to the order of floating-point sums.

``distributed`` is the optional extra ``boneframe[distributed]``; it is only
imported when a scheduler address is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from boneframe.errors import InputError

__all__ = [
    "DEFAULT_TIMEOUT",
    "active_client",
    "add",
    "compute",
    "is_lazy",
    "map_reduce",
    "use_scheduler",
]

#: Seconds to wait for a scheduler before giving up.
DEFAULT_TIMEOUT = 10.0


def is_lazy(x: Any) -> bool:
    """``x`` is a dask collection (or a Volume holding one): its blocks run as tasks."""
    data = getattr(x, "data", x) if hasattr(x, "voxel_size") else x
    return type(data).__module__.split(".")[0] == "dask"


def add(x: Any, y: Any) -> Any:
    """Sum of two block results: numbers, arrays, objects with ``+``, or dicts and
    tuples of them (key by key, item by item)."""
    if isinstance(x, dict):
        return {k: add(x[k], y[k]) for k in x}
    if isinstance(x, tuple):
        return tuple(add(a, b) for a, b in zip(x, y, strict=True))
    if x is None:
        return y
    return x + y


def _tree(parts: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """A binary tree of delayed ``combine`` over ``parts`` (one delayed result)."""
    import dask

    level = list(parts)
    while len(level) > 1:
        nxt = [dask.delayed(combine)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def map_reduce(
    fn: Callable[..., Any],
    parts: Sequence[Sequence[Any]],
    *shared: Any,
    combine: Callable[[Any, Any], Any] = add,
    lazy: bool | None = None,
) -> Any:
    """``combine`` over the parts of ``fn(*part, *shared)``.

    Parameters
    ----------
    fn : callable
        The work on one block; module-level (picklable) for a cluster.
    parts : sequence of tuples
        The per-block arguments. Lazy parts hold dask objects (delayed crops,
        chunks).
    *shared
        Arguments common to every block (a kernel, global statistics); sent once
        per computation, not once per block.
    combine : callable
        Associative ``combine(a, b)`` of two block results (default :func:`add`).
    lazy : bool, optional
        Run as dask tasks; default: when any part holds a dask object.

    Returns
    -------
    The combined result (computed).
    """
    if not parts:
        raise InputError("nothing to compute: no blocks")
    if lazy is None:
        lazy = any(is_lazy(a) for part in parts for a in part)
    if not lazy:
        out = fn(*parts[0], *shared)
        for part in parts[1:]:
            out = combine(out, fn(*part, *shared))
        return out
    import dask

    once = [dask.delayed(s) if _is_array(s) else s for s in shared]
    tasks = [dask.delayed(fn)(*part, *once) for part in parts]
    (out,) = dask.compute(_tree(tasks, combine))
    return out


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not is_lazy(x)


def compute(*values: Any) -> tuple[Any, ...]:
    """``dask.compute`` of the lazy values in one pass (eager values pass through)."""
    lazy = [i for i, v in enumerate(values) if is_lazy(v)]
    if not lazy:
        return tuple(values)
    import dask

    done = dask.compute(*(values[i] for i in lazy))
    out = list(values)
    for i, v in zip(lazy, done, strict=True):
        out[i] = v
    return tuple(out)


# -- a dask.distributed cluster ------------------------------------------------------
def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(
            "a scheduler address needs the 'distributed' package: "
            "pip install 'boneframe[distributed]'"
        ) from None
    return distributed


@contextmanager
def use_scheduler(address: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Any | None]:
    """Connect a ``distributed.Client`` to ``address`` for the ``with`` block.

    Parameters
    ----------
    address : str or None
        Scheduler address, e.g. ``"tcp://10.0.0.5:8786"``; ``None`` does nothing
        (the local scheduler runs the computations).
    timeout : float
        Seconds to wait for the connection.

    Yields
    ------
    distributed.Client or None
        The connected client (the default scheduler of every computation in the
        block), or ``None``.

    Raises
    ------
    InputError
        ``distributed`` is not installed, the address is malformed or no
        scheduler answers there within ``timeout``.

    Examples
    --------
    ::

        with use_scheduler("tcp://10.0.0.5:8786"):
            kernel = boneframe.estimate_kernel(hr_zarr, lr_zarr)   # runs on the cluster
    """
    if address is None:
        yield None
        return
    if not isinstance(address, str) or "://" not in address and ":" not in address:
        raise InputError(f"scheduler address must look like 'tcp://host:port', got {address!r}")
    distributed = _distributed()
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot connect to the dask scheduler at {address!r} within {timeout:g} s: {exc}"
        ) from None
    try:
        yield client
    finally:
        client.close()


def active_client() -> Any | None:
    """The ``distributed.Client`` that runs computations now, or ``None``.

    ``None`` also when ``distributed`` is not installed.
    """
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None
