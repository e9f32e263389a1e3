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
imported when a scheduler address is given. A client unpickles what its
scheduler sends, so :func:`use_scheduler` connects with plain ``tcp://`` only to
this machine (loopback) unless the caller opts in, and anywhere with ``tls://``
and dask's TLS settings; the address is checked before any connection or name
lookup.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from boneframe.errors import InputError

__all__ = [
    "ALLOW_REMOTE_ENV",
    "DEFAULT_TIMEOUT",
    "SchedulerAddress",
    "active_client",
    "add",
    "allow_remote_from_env",
    "check_scheduler_address",
    "compute",
    "is_lazy",
    "map_reduce",
    "map_reduce_delayed",
    "parse_scheduler_address",
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
    (out,) = compute(map_reduce_delayed(fn, parts, *shared, combine=combine))
    return out


def map_reduce_delayed(
    fn: Callable[..., Any],
    parts: Sequence[Sequence[Any]],
    *shared: Any,
    combine: Callable[[Any, Any], Any] = add,
) -> Any:
    """:func:`map_reduce` as one ``dask.delayed`` value, not computed yet.

    Several of them passed to :func:`compute` together run as one graph: a
    chunk (or any task) they share is computed once for all.
    """
    if not parts:
        raise InputError("nothing to compute: no blocks")
    import dask

    once = [dask.delayed(s) if _is_array(s) else s for s in shared]
    tasks = [dask.delayed(fn)(*part, *once) for part in parts]
    return _tree(tasks, combine)


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
#: Environment variable that allows plain ``tcp://`` to a scheduler off this machine.
ALLOW_REMOTE_ENV = "BONEFRAME_ALLOW_REMOTE_SCHEDULER"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
#: Schemes that carry the scheduler's messages unencrypted and unauthenticated.
_PLAIN = frozenset({"tcp"})
_SCHEMES = ("tcp", "tls", "inproc")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TLS_SETTINGS = (
    "distributed.comm.tls.ca-file (DASK_DISTRIBUTED__COMM__TLS__CA_FILE), "
    "distributed.comm.tls.client.cert (DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT) and "
    "distributed.comm.tls.client.key (DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY)"
)
_FORM = "'tcp://host:port' (loopback), 'tls://host:port' or 'inproc://...'"


@dataclass(frozen=True)
class SchedulerAddress:
    """A parsed scheduler address (:func:`parse_scheduler_address`).

    Attributes
    ----------
    scheme : str
        ``"tcp"``, ``"tls"`` or ``"inproc"``.
    host : str
        Host name or IP literal as written (IPv6 without brackets); ``""`` for
        ``inproc``.
    port : int or None
        ``None`` for ``inproc``.
    address : str
        The full address handed to dask, scheme included.
    """

    scheme: str
    host: str
    port: int | None
    address: str

    @property
    def is_loopback(self) -> bool:
        """The scheduler is on this machine: ``inproc``, ``localhost`` or a loopback
        IP literal (127.0.0.0/8, ::1). Any other name is not resolved (no DNS
        query) and counts as remote."""
        if self.scheme == "inproc":
            return True
        if self.host.lower() == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback


def parse_scheduler_address(address: str) -> SchedulerAddress:
    """Parse a scheduler address without any network use.

    Accepted: ``tcp://host:port``, ``tls://host:port``, ``inproc://...`` and a
    bare ``host:port`` (which takes dask's default scheme,
    ``distributed.comm.default-scheme``, ``tcp`` unless configured). ``host``
    is a host name, an IPv4 literal or a bracketed IPv6 literal (``[::1]``);
    ``port`` is 1 to 65535.

    Raises
    ------
    InputError
        Any other scheme or form.
    """
    if not isinstance(address, str) or not address.strip():
        raise InputError(f"scheduler address must look like {_FORM}, got {address!r}")
    text = address.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
    else:
        import dask

        scheme = str(dask.config.get("distributed.comm.default-scheme", "tcp")).lower()
        rest = text
    if scheme not in _SCHEMES:
        raise InputError(
            f"scheduler address {address!r}: scheme {scheme + '://'!r} is not supported; "
            f"use {_FORM}"
        )
    if scheme == "inproc":
        if not rest or any(c.isspace() for c in rest):
            raise InputError(f"scheduler address must look like {_FORM}, got {address!r}")
        return SchedulerAddress("inproc", "", None, f"inproc://{rest}")
    host, port_text = _split_host_port(rest, address)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(
            f"scheduler address {address!r}: the port must be a number from 1 to 65535 "
            f"(e.g. {scheme}://host:8786)"
        )
    shown = f"[{host}]" if ":" in host else host
    return SchedulerAddress(scheme, host, int(port_text), f"{scheme}://{shown}:{int(port_text)}")


def _split_host_port(rest: str, address: str) -> tuple[str, str]:
    """``host, port`` of ``host:port`` or ``[ipv6]:port``; the host is a host name
    or an IP literal, nothing else (no user, path or query)."""
    bad = InputError(f"scheduler address must look like {_FORM}, got {address!r}")
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise bad
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(
                f"scheduler address {address!r}: {host!r} is not an IPv6 address"
            ) from None
        return host, tail[1:]
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise bad
    if ":" in host:
        raise InputError(
            f"scheduler address {address!r}: write an IPv6 address in brackets, "
            "e.g. tcp://[::1]:8786"
        )
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise bad
    return host, port


def allow_remote_from_env() -> bool:
    """Whether :data:`ALLOW_REMOTE_ENV` opts in to plain ``tcp://`` off this machine.

    ``1``, ``true``, ``yes``, ``on`` (any case) opt in; unset, empty, ``0``,
    ``false``, ``no``, ``off`` do not; anything else is an :class:`InputError`.
    """
    value = os.environ.get(ALLOW_REMOTE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(
        f"{ALLOW_REMOTE_ENV}={os.environ[ALLOW_REMOTE_ENV]!r}: set it to 1 (allow) or 0 (refuse)"
    )


def check_scheduler_address(address: str, *, allow_remote: bool = False) -> SchedulerAddress:
    """Parse ``address`` and refuse a plain connection off this machine.

    No network use (no connection, no DNS query): a plain ``tcp://`` address is
    allowed to ``localhost`` and loopback IP literals only, unless
    ``allow_remote`` or the environment variable
    ``BONEFRAME_ALLOW_REMOTE_SCHEDULER=1`` opts in; ``tls://`` and ``inproc://``
    are allowed to any host.

    Returns
    -------
    SchedulerAddress

    Raises
    ------
    InputError
        A malformed or unsupported address, or plain ``tcp://`` to a host that is
        not loopback without the opt-in.
    """
    parsed = parse_scheduler_address(address)
    if parsed.scheme in _PLAIN and not parsed.is_loopback:
        if not (allow_remote or allow_remote_from_env()):
            raise InputError(
                f"refusing the plain {parsed.scheme}:// scheduler address {address!r}: "
                f"{parsed.host!r} is not this machine (only localhost and 127.0.0.0/8, ::1 "
                "count as such; host names are not looked up). A plain connection is "
                "neither encrypted nor authenticated and dask.distributed unpickles what "
                "the scheduler sends, so anyone who can answer there can run code here: "
                f"connect only to a scheduler you trust, over TLS "
                f"(tls://{_shown_host(parsed)}:{parsed.port} with dask's TLS settings). "
                "To connect anyway, pass allow_remote=True (command line: "
                "--allow-remote-scheduler; a spec cannot opt in by itself) "
                f"or set {ALLOW_REMOTE_ENV}=1."
            )
    return parsed


def _shown_host(parsed: SchedulerAddress) -> str:
    return f"[{parsed.host}]" if ":" in parsed.host else parsed.host


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(
            "a scheduler address needs the 'distributed' package: "
            "pip install 'boneframe[distributed]'"
        ) from None
    return distributed


def _tls_security(distributed: Any, security: Any, address: str) -> Any:
    """The ``distributed.Security`` of a ``tls://`` connection: ``security`` or
    dask's configuration, checked (files read, contexts built) before connecting."""
    if security is None:
        where = "dask's configuration"
        try:
            security = distributed.Security()  # distributed.comm.tls.* of dask's config
        except ValueError as exc:
            raise InputError(f"invalid TLS settings in dask's configuration: {exc}") from None
    elif isinstance(security, distributed.Security):
        where = "security"
    else:
        raise InputError(f"security must be a distributed.Security, got {type(security).__name__}")
    missing = [
        name
        for name, attr in (
            ("distributed.comm.tls.ca-file", "tls_ca_file"),
            ("distributed.comm.tls.client.cert", "tls_client_cert"),
        )
        if not getattr(security, attr, None)
    ]
    if missing:
        raise InputError(
            f"the tls:// scheduler address {address!r} needs TLS settings: the CA that "
            "signed the scheduler's certificate and this client's certificate and key; "
            f"{where} lacks {' and '.join(missing)}. Pass "
            "security=distributed.Security(tls_ca_file=..., tls_client_cert=..., "
            f"tls_client_key=...) or set dask's configuration {_TLS_SETTINGS}."
        )
    try:
        security.get_connection_args("client")  # reads the files: errors here, not later
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InputError(
            f"invalid TLS settings for the scheduler address {address!r} ({where}): {exc}"
        ) from None
    return security


@contextmanager
def use_scheduler(
    address: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    allow_remote: bool = False,
    security: Any = None,
) -> Iterator[Any | None]:
    """Connect a ``distributed.Client`` to ``address`` for the ``with`` block.

    ``dask.distributed`` unpickles what the scheduler sends: a scheduler can run
    any code in this process. So a plain ``tcp://`` address (neither encrypted
    nor authenticated) is refused, before any connection, unless it is on this
    machine (``localhost``, 127.0.0.0/8, ``[::1]``; no other host name is looked
    up) or the caller opts in. ``tls://`` connects to any host with mutual TLS
    authentication: ``security``, or dask's configuration
    (``distributed.comm.tls.ca-file``, ``distributed.comm.tls.client.cert``,
    ``distributed.comm.tls.client.key``; environment variables
    ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``,
    ``DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT``,
    ``DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY``).

    Parameters
    ----------
    address : str or None
        Scheduler address: ``"tcp://127.0.0.1:8786"``, ``"tls://10.0.0.5:8786"``,
        ``"inproc://..."``, or a bare ``"host:port"`` (dask's default scheme,
        ``tcp``); ``None`` does nothing (the local scheduler runs the
        computations).
    timeout : float
        Seconds to wait for the connection.
    allow_remote : bool
        Allow plain ``tcp://`` to a host that is not loopback; the environment
        variable ``BONEFRAME_ALLOW_REMOTE_SCHEDULER=1`` does the same. Only for
        a scheduler you trust on a network you trust.
    security : distributed.Security, optional
        TLS credentials of a ``tls://`` address (default: dask's configuration);
        refused with any other scheme, where it would protect nothing.

    Yields
    ------
    distributed.Client or None
        The connected client (the default scheduler of every computation in the
        block), or ``None``.

    Raises
    ------
    InputError
        ``distributed`` is not installed; the address is malformed or its scheme
        unsupported; plain ``tcp://`` off this machine without the opt-in;
        ``tls://`` without TLS settings, or with unreadable ones; no scheduler
        answers within ``timeout``.

    Examples
    --------
    ::

        with use_scheduler("tls://10.0.0.5:8786", security=sec):
            kernel = boneframe.estimate_kernel(hr_zarr, lr_zarr)   # runs on the cluster
    """
    if address is None:
        yield None
        return
    parsed = check_scheduler_address(address, allow_remote=allow_remote)  # before any import
    distributed = _distributed()
    kwargs: dict[str, Any] = {}
    if parsed.scheme == "tls":
        kwargs["security"] = _tls_security(distributed, security, parsed.address)
    else:
        if security is not None:
            raise InputError(
                "security (TLS settings) applies to a tls:// scheduler address only, "
                f"got {address!r}"
            )
        import dask

        if parsed.scheme in _PLAIN and dask.config.get("distributed.comm.require-encryption", None):
            raise InputError(
                f"dask's configuration requires encryption (distributed.comm.require-encryption)"
                f" but the scheduler address {address!r} is plain {parsed.scheme}://: use tls://"
            )
    try:
        client = distributed.Client(parsed.address, timeout=timeout, set_as_default=True, **kwargs)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot connect to the dask scheduler at {parsed.address!r} "
            f"within {timeout:g} s: {exc}"
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
