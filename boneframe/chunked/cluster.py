"""Run the chunked computations on a ``dask.distributed`` cluster.

The chunked code (:mod:`boneframe.chunked`) computes with ``dask.compute`` and
``.compute()`` and never names a scheduler, so whatever scheduler is active
runs it: dask's local thread pool by default, a cluster while a
``distributed.Client`` is connected. :func:`use_scheduler` connects one for the
duration of a ``with`` block::

    with use_scheduler("tcp://10.0.0.5:8786"):
        est = estimate_kernel(f_lazy, g_lazy)   # runs on the cluster

``distributed`` is the optional extra ``boneframe[distributed]``; it is only
imported when an address is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from boneframe.errors import InputError

__all__ = ["DEFAULT_TIMEOUT", "active_client", "use_scheduler"]

#: Seconds to wait for the scheduler before giving up.
DEFAULT_TIMEOUT = 10.0


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
