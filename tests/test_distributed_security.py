"""Which dask schedulers :func:`boneframe.compute.use_scheduler` connects to (issue #20).

dask.distributed unpickles what a scheduler sends, so plain ``tcp://`` goes to
loopback only unless the caller opts in, and is refused before any socket is
opened; ``tls://`` goes anywhere with dask's TLS settings (tested on a local TLS
cluster). Every connection here is to 127.0.0.1; the remote addresses are
TEST-NET literals (RFC 5737, RFC 3849) and ``.example`` names (RFC 2606), never
contacted.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest

from boneframe.compute import (
    ALLOW_REMOTE_ENV,
    check_scheduler_address,
    parse_scheduler_address,
    use_scheduler,
)
from boneframe.errors import InputError
from boneframe.metrics import measure

distributed = pytest.importorskip("distributed")

REMOTE = [
    "tcp://192.0.2.10:8786",  # TEST-NET-1
    "192.0.2.10:8786",  # bare host:port: dask's default scheme, tcp
    "tcp://198.51.100.7:8786",  # TEST-NET-2
    "tcp://10.0.0.5:8786",  # private ranges are not this machine either
    "tcp://scheduler.example:8786",  # a name: never looked up, so remote
    "tcp://localhost.example:8786",
    "tcp://127.1:8786",  # not a canonical IP literal: a name, so remote
    "tcp://0.0.0.0:8786",
    "tcp://[2001:db8::1]:8786",  # IPv6 documentation prefix
]
LOOPBACK = [
    ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    (" tcp://127.0.0.1:8786\n", "tcp://127.0.0.1:8786"),
    ("tcp://127.8.9.10:1", "tcp://127.8.9.10:1"),
    ("tcp://localhost:8786", "tcp://localhost:8786"),
    ("TCP://LocalHost:8786", "tcp://LocalHost:8786"),
    ("tcp://[::1]:8786", "tcp://[::1]:8786"),
    ("tcp://[::ffff:127.0.0.1]:8786", "tcp://[::ffff:127.0.0.1]:8786"),
]
MALFORMED = [
    "",
    "   ",
    "nowhere",
    "tcp://",
    "tcp://127.0.0.1",
    "tcp://:8786",
    "tcp://127.0.0.1:0",
    "tcp://127.0.0.1:65536",
    "tcp://127.0.0.1:port",
    "tcp://127.0.0.1:\u00b2",  # a digit to str.isdigit, not to int()
    "tcp://127.0.0.1:\uff18\uff17\uff18\uff16",  # full-width digits
    "tcp://127.0.0.1@scheduler.example:8786",
    "tcp://user@127.0.0.1:8786",
    "tcp://127.0.0.1:8786/path",
    "tcp://127.0.0.1:8786?x=1",
    "tcp://::1:8786",
    "tcp://[::1]",
    "tcp://[::1]8786",
    "tcp://[127.0.0.1]:8786",
    "tcp://loc_alhost:8786",
    "tcp://-bad.example:8786",
    "tls://127.0.0.1",
    "inproc://",
]
UNSUPPORTED = [
    "ucx://127.0.0.1:8786",
    "ws://127.0.0.1:8786",
    "wss://127.0.0.1:8786",
    "http://127.0.0.1:8786",
    "udp://127.0.0.1:8786",
]


# -- guards: nothing connects, nothing opens a socket ---------------------------------
def _is_loopback(host: Any) -> bool:
    host = str(host).strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """Fails any connection or name lookup to a host that is not loopback, from any
    thread, and counts the sockets this test's thread creates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offending: list[tuple[str, Any]] = []
        self.sockets = 0
        test_thread = threading.get_ident()
        guard = self

        def check(what: str, host: Any) -> None:
            if not _is_loopback(host):
                guard.offending.append((what, host))
                raise AssertionError(f"network use off loopback: {what} {host!r}")

        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_init = socket.socket.__init__

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            check("getaddrinfo", host)
            return real_getaddrinfo(host, *args, **kwargs)

        def gethostbyname(host: Any) -> Any:
            check("gethostbyname", host)
            raise AssertionError("unexpected gethostbyname")

        def connect(self: socket.socket, address: Any) -> Any:
            if isinstance(address, tuple):
                check("connect", address[0])
            return real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> Any:
            if isinstance(address, tuple):
                check("connect_ex", address[0])
            return real_connect_ex(self, address)

        def init(self: socket.socket, *args: Any, **kwargs: Any) -> None:
            if threading.get_ident() == test_thread:
                guard.sockets += 1
            real_init(self, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket.socket, "__init__", init)


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    return NetworkGuard(monkeypatch)


@pytest.fixture
def no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        pytest.fail(f"distributed.Client was called: {args} {kwargs}")

    monkeypatch.setattr(distributed, "Client", refuse)


class FakeClient:
    """Stands in for ``distributed.Client``: records its arguments, connects nowhere."""

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FakeClient.calls.append((args, kwargs))
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.calls = []
    monkeypatch.setattr(distributed, "Client", FakeClient)
    return FakeClient


@pytest.fixture(autouse=True)
def _no_opt_in_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_REMOTE_ENV, raising=False)


# -- TLS credentials -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sec() -> Any:
    """One self-signed certificate for every role, in memory, as dask makes it:
    ``Security.temporary()`` (needs ``cryptography``), else the same made with the
    ``openssl`` command."""
    try:
        return distributed.Security.temporary()
    except ImportError:
        pass
    cert, key = _openssl_pair()
    return distributed.Security(
        require_encryption=True,
        tls_ca_file=cert,
        tls_client_key=key,
        tls_client_cert=cert,
        tls_scheduler_key=key,
        tls_scheduler_cert=cert,
        tls_worker_key=key,
        tls_worker_cert=cert,
    )


def _openssl_pair() -> tuple[str, str]:
    """A self-signed (cert, key) PEM pair: ``cryptography`` or the openssl command."""
    try:
        other = distributed.Security.temporary()
        return other.tls_client_cert, other.tls_client_key
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the cryptography package or the openssl command")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", "/CN=dask-internal",
             "-addext", "subjectAltName=DNS:dask-internal"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert.read_text(), key.read_text()


def _write_client_files(sec: Any, folder: Path) -> dict[str, str]:
    """The client's TLS settings of ``sec`` as files, keyed by dask config name."""
    files = {}
    for name, attr in (
        ("ca-file", "tls_ca_file"),
        ("client.cert", "tls_client_cert"),
        ("client.key", "tls_client_key"),
    ):
        path = folder / f"{attr}.pem"
        path.write_text(getattr(sec, attr))
        files[f"distributed.comm.tls.{name}"] = str(path)
    return files


# -- clusters on loopback --------------------------------------------------------------
@pytest.fixture(scope="module")
def tcp_cluster() -> Any:
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # every listener on loopback
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def tls_cluster(sec: Any) -> Any:
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=sec,
        dashboard_address="127.0.0.1:0",  # every listener on loopback
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(20).random((16, 16, 16))


def _same_measure(volume: np.ndarray, client: Any) -> None:
    """``measure`` of a chunked volume, run by ``client``, equals the in-memory one."""
    names = ["bv_tv", "tv_mm3", "euler"]
    lazy = da.from_array(volume, chunks=8)
    with distributed.get_task_stream(client) as stream:
        remote = measure(lazy, voxel_size=10.0, names=names)
    assert len(stream.data) > 0  # the cluster ran the blocks
    local = measure(volume, voxel_size=10.0, names=names)
    for name in names:
        assert remote[name] == pytest.approx(local[name], rel=1e-12), name


# -- (a) plain tcp to loopback ---------------------------------------------------------
def test_plain_tcp_to_loopback_runs_the_computation(tcp_cluster, volume) -> None:
    address = tcp_cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    with use_scheduler(address) as client:
        assert distributed.default_client() is client
        _same_measure(volume, client)
    with use_scheduler(address.removeprefix("tcp://")) as client:  # bare host:port
        assert client.scheduler.address == address
    with use_scheduler(address.replace("127.0.0.1", "localhost")) as client:
        assert client.status == "running"


def test_inproc_is_this_process(guard, fake_client) -> None:
    # no live inproc cluster here: LocalCluster names it after distributed.utils.get_ip(),
    # which connects a UDP socket towards a public address to learn this machine's IP
    parsed = check_scheduler_address("inproc://192.0.2.2/4242/1")
    assert parsed.is_loopback and parsed.address == "inproc://192.0.2.2/4242/1"
    with use_scheduler("inproc://192.0.2.2/4242/1"):
        pass
    assert fake_client.calls == [
        (("inproc://192.0.2.2/4242/1",), {"timeout": 10.0, "set_as_default": True})
    ]
    assert guard.offending == [] and guard.sockets == 0


@pytest.mark.parametrize(("address", "normalized"), LOOPBACK)
def test_loopback_forms_are_allowed_and_parsed_as_dask_parses_them(address, normalized):
    from distributed.comm.addressing import parse_address, parse_host_port

    parsed = check_scheduler_address(address)
    assert parsed.is_loopback and parsed.scheme == "tcp"
    assert parsed.address == normalized
    scheme, location = parse_address(parsed.address)
    assert scheme == "tcp"
    assert parse_host_port(location) == (parsed.host, parsed.port)  # dask connects there


# -- (b) plain tcp off this machine: refused before any connection ----------------------
@pytest.mark.parametrize("address", REMOTE)
def test_plain_tcp_off_loopback_is_refused_before_any_connection(address, guard, no_client) -> None:
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        with use_scheduler(address, timeout=30):
            pytest.fail("connected")
    assert time.perf_counter() - start < 0.5
    message = str(info.value)
    assert "unpickles" in message and "tls://" in message
    assert "allow_remote=True" in message and f"{ALLOW_REMOTE_ENV}=1" in message
    assert "--allow-remote-scheduler" in message
    assert guard.offending == [] and guard.sockets == 0


@pytest.mark.parametrize("address", REMOTE)
def test_remote_forms_are_parsed_as_dask_parses_them(address) -> None:
    from distributed.comm.addressing import parse_address, parse_host_port

    parsed = parse_scheduler_address(address)
    assert not parsed.is_loopback
    scheme, location = parse_address(parsed.address)
    assert (scheme, parse_host_port(location)) == ("tcp", (parsed.host, parsed.port))


@pytest.mark.parametrize("address", MALFORMED)
def test_malformed_addresses_are_refused(address, guard, no_client) -> None:
    with pytest.raises(InputError, match="scheduler address"):
        with use_scheduler(address):
            pass
    assert guard.offending == [] and guard.sockets == 0


@pytest.mark.parametrize("address", UNSUPPORTED)
def test_other_schemes_are_refused(address, guard, no_client) -> None:
    with pytest.raises(InputError, match="is not supported"):
        with use_scheduler(address, allow_remote=True):
            pass
    assert guard.sockets == 0


def test_non_string_address_is_refused(no_client) -> None:
    with pytest.raises(InputError, match="scheduler address"):
        with use_scheduler(8786):  # type: ignore[arg-type]
            pass


def test_dask_default_scheme_decides_a_bare_address(guard, fake_client) -> None:
    assert parse_scheduler_address("192.0.2.10:8786").scheme == "tcp"
    with dask.config.set({"distributed.comm.default-scheme": "tls"}):
        parsed = parse_scheduler_address("192.0.2.10:8786")
    assert parsed.scheme == "tls" and parsed.address == "tls://192.0.2.10:8786"


def test_required_encryption_refuses_plain_tcp(guard, no_client) -> None:
    with dask.config.set({"distributed.comm.require-encryption": True}):
        with pytest.raises(InputError, match="require-encryption"):
            with use_scheduler("tcp://127.0.0.1:8786"):
                pass


# -- (c) the opt-ins, up to the connection -------------------------------------------------
def test_allow_remote_connects_to_the_address_as_given(guard, fake_client) -> None:
    with use_scheduler("tcp://192.0.2.10:8786", timeout=3, allow_remote=True) as client:
        assert isinstance(client, FakeClient)
    assert client.closed
    assert fake_client.calls == [
        (("tcp://192.0.2.10:8786",), {"timeout": 3, "set_as_default": True})
    ]
    with use_scheduler("scheduler.example:8786", allow_remote=True):
        pass
    assert fake_client.calls[-1][0] == ("tcp://scheduler.example:8786",)
    assert guard.offending == []


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_the_environment_variable_opts_in(value, monkeypatch, guard, fake_client) -> None:
    monkeypatch.setenv(ALLOW_REMOTE_ENV, value)
    with use_scheduler("tcp://[2001:db8::1]:8786"):
        pass
    assert fake_client.calls[0][0] == ("tcp://[2001:db8::1]:8786",)


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_the_environment_variable_can_say_no(value, monkeypatch, no_client) -> None:
    monkeypatch.setenv(ALLOW_REMOTE_ENV, value)
    with pytest.raises(InputError, match="unpickles"):
        with use_scheduler("tcp://192.0.2.10:8786"):
            pass


def test_an_unclear_environment_value_is_an_error(monkeypatch, no_client) -> None:
    monkeypatch.setenv(ALLOW_REMOTE_ENV, "maybe")
    with pytest.raises(InputError, match=rf"{ALLOW_REMOTE_ENV}='maybe'"):
        with use_scheduler("tcp://192.0.2.10:8786"):
            pass
    assert check_scheduler_address("tcp://127.0.0.1:8786").is_loopback  # not consulted


def test_tls_to_any_host_needs_no_opt_in(sec, guard, fake_client, tmp_path) -> None:
    with use_scheduler("tls://192.0.2.10:8786", security=sec):
        pass
    (args, kwargs), *_ = fake_client.calls
    assert args == ("tls://192.0.2.10:8786",) and kwargs["security"] is sec
    files = _write_client_files(sec, tmp_path)
    with dask.config.set(files):
        with use_scheduler("tls://scheduler.example:8786"):
            pass
    used = fake_client.calls[-1][1]["security"]
    assert used.tls_ca_file == files["distributed.comm.tls.ca-file"]
    assert used.tls_client_cert == files["distributed.comm.tls.client.cert"]
    assert used.tls_client_key == files["distributed.comm.tls.client.key"]
    assert guard.offending == []


def test_security_must_be_a_security_object(sec, no_client) -> None:
    with pytest.raises(InputError, match="distributed.Security, got dict"):
        with use_scheduler("tls://127.0.0.1:8786", security={"tls_ca_file": "ca.pem"}):
            pass


def test_security_with_a_plain_address_is_refused(sec, no_client) -> None:
    with pytest.raises(InputError, match="tls:// scheduler address only"):
        with use_scheduler("tcp://127.0.0.1:8786", security=sec):
            pass


# -- (d) a real TLS cluster on loopback ------------------------------------------------
def test_tls_cluster_with_a_security_object(tls_cluster, sec, volume) -> None:
    address = tls_cluster.scheduler_address
    assert address.startswith("tls://127.0.0.1:")
    with use_scheduler(address, security=sec) as client:
        assert client.security is sec
        _same_measure(volume, client)


def test_tls_cluster_with_dask_configuration_files(tls_cluster, sec, volume, tmp_path) -> None:
    files = _write_client_files(sec, tmp_path)
    with dask.config.set(files):
        with use_scheduler(tls_cluster.scheduler_address) as client:
            assert client.security.tls_client_cert == files["distributed.comm.tls.client.cert"]
            _same_measure(volume, client)


def test_the_documented_environment_variables_are_dask_settings() -> None:
    env = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": "/certs/ca.pem",
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": "/certs/client.pem",
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": "/certs/client-key.pem",
    }
    config = dask.config.collect(paths=[], env=env)
    assert dask.config.get("distributed.comm.tls.ca-file", config=config) == "/certs/ca.pem"
    assert dask.config.get("distributed.comm.tls.client.cert", config=config) == "/certs/client.pem"
    assert dask.config.get("distributed.comm.tls.client.key", config=config) == (
        "/certs/client-key.pem"
    )


def test_tls_without_settings_is_refused(tls_cluster, guard, no_client) -> None:
    assert dask.config.get("distributed.comm.tls.ca-file") is None
    with pytest.raises(InputError) as info:
        with use_scheduler(tls_cluster.scheduler_address):
            pass
    message = str(info.value)
    for setting in ("ca-file", "client.cert", "client.key"):
        assert f"distributed.comm.tls.{setting}" in message
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in message
    assert guard.sockets == 0


def test_incomplete_or_unreadable_tls_settings_are_refused(sec, tmp_path, no_client) -> None:
    files = _write_client_files(sec, tmp_path)
    only_ca = {"distributed.comm.tls.ca-file": files["distributed.comm.tls.ca-file"]}
    with dask.config.set(only_ca):
        with pytest.raises(InputError, match=r"lacks distributed\.comm\.tls\.client\.cert"):
            with use_scheduler("tls://127.0.0.1:8786"):
                pass
    missing = dict(files)
    missing["distributed.comm.tls.client.cert"] = str(tmp_path / "absent.pem")
    with dask.config.set(missing):
        with pytest.raises(InputError, match="invalid TLS settings"):
            with use_scheduler("tls://127.0.0.1:8786"):
                pass
    with pytest.raises(InputError, match="invalid TLS settings"):
        with use_scheduler("tls://127.0.0.1:8786", security=distributed.Security(
            tls_ca_file=sec.tls_ca_file, tls_client_cert="not a certificate\n"
        )):  # fmt: skip
            pass


def test_the_scheduler_refuses_a_client_it_did_not_certify(tls_cluster) -> None:
    cert, key = _openssl_pair()  # another self-signed certificate
    stranger = distributed.Security(
        tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )
    with pytest.raises(InputError, match=r"(?i)cannot connect.* within 1 s: .*(certificate|ssl)"):
        with use_scheduler(tls_cluster.scheduler_address, security=stranger, timeout=1):
            pass
    with pytest.raises(InputError, match="cannot connect"):  # nor does it speak plain tcp
        with use_scheduler(tls_cluster.scheduler_address.replace("tls", "tcp"), timeout=1):
            pass


def test_the_command_line_refuses_a_remote_plain_scheduler(monkeypatch, tmp_path, capsys):
    """``--scheduler`` and a spec's ``compute.scheduler``: refused before any
    connection, nothing written; only the person running the command can opt in."""
    import distributed

    from boneframe.cli import main

    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(distributed, "Client", no_connection)
    monkeypatch.delenv("BONEFRAME_ALLOW_REMOTE_SCHEDULER", raising=False)
    assert main(["--scheduler", "tcp://192.0.2.10:8786", "plugins"]) == 2
    assert "unpickles" in capsys.readouterr().err
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "version: 1\ninputs: {phantom: {size: 16}}\n"
        "compute: {scheduler: 'tcp://192.0.2.10:8786'}\n"
    )
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "unpickles" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    spec.write_text(
        "version: 1\ninputs: {phantom: {size: 16}}\n"
        "compute: {scheduler: 'tcp://192.0.2.10:8786', allow_remote_scheduler: true}\n"
    )
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "allow_remote_scheduler" in capsys.readouterr().err  # not a spec field
