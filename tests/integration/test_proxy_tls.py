"""TLS end to end through the running proxy (`server.serve`, what `run` calls), loopback only.

The proxy runs in-process on an event loop in a thread, with its HTTP and HTTPS listeners on free
loopback ports; services are deployed over the control socket, as the CLI does; clients are
Python `ssl` sockets that verify the certificates against the CA made here (or Pebble's root).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_acme_pebble import Pebble, _no_proxies, pebble  # noqa: F401  (fixtures)

from dockyard.proxy.control.client import RpcError, call
from dockyard.proxy.control.options import DeployRequest, ServiceConfig
from dockyard.proxy.control.server import RunSettings, serve
from dockyard.proxy.tls.store import cache_dir_for

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# -- certificates --------------------------------------------------------------------------------


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem_file: Path

    def issue(self, directory: Path, host: str) -> tuple[Path, Path]:
        """A leaf for `host` signed by this CA: (chain file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{host}.crt", directory / f"{host}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file


def make_ca(directory: Path) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "dockyard test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = directory / "ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(key, cert, pem)


# -- backends and the running proxy --------------------------------------------------------------


class Echo:
    """A backend answering every request with its name, the path and X-Forwarded-Proto."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in head[1:] if line)
                }
                body = json.dumps(
                    {
                        "backend": self.name,
                        "path": path,
                        "proto": headers.get("x-forwarded-proto", ""),
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        writer.close()


class RunningProxy:
    """`serve()` on a loop in a thread, plus named backends on the same loop."""

    def __init__(self, tmp: Path, *, https_port: int = 0) -> None:
        self.settings = RunSettings(
            http_port=free_port(),
            https_port=https_port or free_port(),
            bind=LOOPBACK,
            socket=tmp / "kamal-proxy.sock",
            state_file=tmp / "state" / "kamal-proxy.state",
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.backends: dict[str, str] = {}
        self._servers: list[asyncio.Server] = []
        self._stop: asyncio.Event | None = None
        self._running: Any = None

    def backend(self, name: str) -> str:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(Echo(name).handle, LOOPBACK, 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self._servers.append(server)
        self.backends[name] = f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        return self.backends[name]

    def start(self) -> None:
        async def make_event() -> asyncio.Event:
            return asyncio.Event()

        self._stop = asyncio.run_coroutine_threadsafe(make_event(), self.loop).result(5)
        self._running = asyncio.run_coroutine_threadsafe(
            serve(self.settings, self._stop), self.loop
        )
        sock = self.settings.socket
        assert sock is not None
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "the control socket did not appear"
            if self._running.done():
                self._running.result()
            time.sleep(0.02)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._running.result(20)
            self._stop = None

    def close(self) -> None:
        self.stop()

        async def close_backends() -> None:
            for server in self._servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close_backends(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self.settings.socket is not None
        return call(self.settings.socket, method, params)

    def deploy(self, service: str, backend: str, **config: Any) -> None:
        request = DeployRequest(
            service=service,
            targets=(self.backends[backend],),
            config=ServiceConfig(**config).normalized(),
            deploy_timeout=5_000_000_000,
            drain_timeout=1_000_000_000,
        )
        self.call("deploy", request.to_json())

    def deploy_tls(
        self,
        service: str,
        backend: str,
        hosts: tuple[str, ...],
        cert: Path,
        key: Path,
        **config: Any,
    ) -> None:
        """:meth:`deploy` with TLS on and this certificate chain and key."""
        self.deploy(
            service,
            backend,
            hosts=hosts,
            tls_enabled=True,
            tls_certificate_path=str(cert),
            tls_private_key_path=str(key),
            **config,
        )


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    running = RunningProxy(tmp_path)
    running.backend("one")
    running.backend("two")
    running.start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return make_ca(tmp_path)


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    peer: dict[str, Any] | None = None

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def _read_reply(sock: socket.socket | ssl.SSLSocket) -> Reply:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return Reply(int(lines[0].split(" ")[1]), headers, body)


def _request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def https_get(
    port: int, host: str, path: str, *, cafile: Path | None = None, cadata: str | None = None
) -> Reply:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None, cadata=cadata)
    ctx.set_alpn_protocols(["http/1.1"])  # this client speaks HTTP/1.1 (h2: test_h2_*.py)
    with (
        socket.create_connection((LOOPBACK, port), timeout=60) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        peer = tls.getpeercert()
        tls.sendall(_request(host, path))
        reply = _read_reply(tls)
    reply.peer = dict(peer) if peer else None
    return reply


def http_get(port: int, host: str, path: str) -> Reply:
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(_request(host, path))
        return _read_reply(sock)


def san_dns(reply: Reply) -> list[str]:
    assert reply.peer is not None
    return [value for kind, value in reply.peer["subjectAltName"] if kind == "DNS"]


# -- tests ---------------------------------------------------------------------------------------


def test_two_services_with_custom_certificates_are_served_by_sni(
    proxy: RunningProxy, ca: Ca, tmp_path: Path
) -> None:
    proxy.deploy_tls("one", "one", ("a.test",), *ca.issue(tmp_path, "a.test"))
    proxy.deploy_tls("two", "two", ("b.test",), *ca.issue(tmp_path, "b.test"))
    https = proxy.settings.https_port

    a = https_get(https, "a.test", "/x?y=1", cafile=ca.pem_file)
    assert a.status == 200 and san_dns(a) == ["a.test"]
    assert a.json() == {"backend": "one", "path": "/x?y=1", "proto": "https"}
    b = https_get(https, "b.test", "/", cafile=ca.pem_file)
    assert b.status == 200 and san_dns(b) == ["b.test"]
    assert b.json()["backend"] == "two"

    # An unknown name fails the handshake, as kamal-proxy does.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(https, "c.test", "/", cafile=ca.pem_file)

    rows = {row["service"]: row for row in proxy.call("list")}
    assert rows["one"]["tls"] == "yes" and rows["two"]["tls"] == "yes"

    # Restart: the TLS options come back from the state file, the certificates are served again.
    proxy.stop()
    proxy.start()
    again = https_get(https, "b.test", "/again", cafile=ca.pem_file)
    assert again.status == 200 and san_dns(again) == ["b.test"]
    assert again.json()["backend"] == "two"

    # Removing a service takes its certificate away.
    proxy.call("remove", {"service": "one"})
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(https, "a.test", "/", cafile=ca.pem_file)


def test_plain_http_is_redirected_to_https_without_the_port_unless_disabled(
    proxy: RunningProxy, ca: Ca, tmp_path: Path
) -> None:
    proxy.deploy_tls("one", "one", ("a.test",), *ca.issue(tmp_path, "a.test"))
    b_chain = ca.issue(tmp_path, "b.test")
    proxy.deploy_tls("two", "two", ("b.test",), *b_chain, tls_redirect=False)
    http = proxy.settings.http_port

    redirect = http_get(http, f"a.test:{http}", "/a?b=1")
    assert redirect.status == 301
    assert redirect.headers["location"] == "https://a.test/a?b=1"

    plain = http_get(http, "b.test", "/plain")
    assert plain.status == 200
    assert plain.json() == {"backend": "two", "path": "/plain", "proto": "http"}
    secure = https_get(proxy.settings.https_port, "b.test", "/s", cafile=ca.pem_file)
    assert secure.json() == {"backend": "two", "path": "/s", "proto": "https"}

    # Canonical host and TLS redirect in one hop.
    c_chain = ca.issue(tmp_path, "c.test")
    proxy.deploy_tls("three", "one", ("c.test", "www.c.test"), *c_chain, canonical_host="c.test")
    hop = http_get(http, f"www.c.test:{http}", "/p?q=1")
    assert hop.status == 301 and hop.headers["location"] == "https://c.test/p?q=1"
    canonical = https_get(proxy.settings.https_port, "c.test", "/p", cafile=ca.pem_file)
    assert canonical.json() == {"backend": "one", "path": "/p", "proto": "https"}


def test_a_deploy_with_a_bad_certificate_fails_clearly_and_leaves_the_service_unchanged(
    proxy: RunningProxy, ca: Ca, tmp_path: Path
) -> None:
    a_cert, a_key = ca.issue(tmp_path, "a.test")
    _, other_key = ca.issue(tmp_path, "other.test")
    proxy.deploy_tls("one", "one", ("a.test",), a_cert, a_key)
    state_file = proxy.settings.state_file
    assert state_file is not None
    before_state = state_file.read_bytes()
    before_list = proxy.call("list")

    with pytest.raises(RpcError) as mismatch:
        proxy.deploy_tls("one", "two", ("a.test",), a_cert, other_key)
    assert str(other_key) in str(mismatch.value) or str(a_cert) in str(mismatch.value)
    assert "match" in str(mismatch.value).lower()

    missing = tmp_path / "missing.crt"
    with pytest.raises(RpcError) as absent:
        proxy.deploy_tls("one", "two", ("a.test",), missing, a_key)
    assert str(missing) in str(absent.value)

    assert proxy.call("list") == before_list
    assert state_file.read_bytes() == before_state
    still = https_get(proxy.settings.https_port, "a.test", "/", cafile=ca.pem_file)
    assert still.status == 200 and still.json()["backend"] == "one"


def test_automatic_tls_with_wildcard_hosts_is_refused(proxy: RunningProxy) -> None:
    with pytest.raises(RpcError, match="automatic TLS does not support wildcards"):
        proxy.deploy("one", "one", hosts=("*.a.test",), tls_enabled=True)
    assert proxy.call("list") == []


# -- automatic TLS against Pebble, through the running proxy --------------------------------------


def test_automatic_tls_issues_on_the_first_request_through_the_proxy(
    pebble: Pebble,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy --tls --tls-acme-directory=<Pebble>: no certificate at deploy; the first HTTPS
    request for the host obtains one (TLS-ALPN-01 on the HTTPS listener, which is Pebble's
    validation port here), verified by the client against Pebble's root; a restart serves the
    cached certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pebble.ca_file))  # verifies Pebble's directory
    host = "auto.dockyard.test"
    cache = tmp_path / "acme"
    running = RunningProxy(tmp_path, https_port=pebble.tls_port)
    try:
        running.backend("one")
        running.start()
        running.deploy(
            "one",
            "one",
            hosts=(host,),
            tls_enabled=True,
            tls_acme_directory=pebble.directory_url,
            tls_acme_cache_path=str(cache),
        )
        assert not cache.exists()  # issuance waits for the first handshake
        roots = pebble.issuing_roots().decode()
        reply = https_get(pebble.tls_port, host, "/first", cadata=roots)
        assert reply.status == 200 and san_dns(reply) == [host]
        assert reply.json() == {"backend": "one", "path": "/first", "proto": "https"}
        cached = cache_dir_for(cache, pebble.directory_url) / host
        first = cached.read_bytes()
        assert b"-----BEGIN CERTIFICATE-----" in first
        row = running.call("list")[0]
        assert row["tls"] == "yes"

        running.stop()
        running.start()
        again = https_get(pebble.tls_port, host, "/again", cadata=roots)
        assert again.status == 200 and again.json()["backend"] == "one"
        assert cached.read_bytes() == first  # served from the cache, no new order
    finally:
        running.close()


def test_the_cli_deploys_tls_services_and_lists_them(
    proxy: RunningProxy,
    ca: Ca,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dockyard-proxy deploy --tls ...` as a user types it, against the running server."""
    from dockyard.proxy.cli import main

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the client finds the proxy's socket
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "client-config"))
    a_cert, a_key = ca.issue(tmp_path, "a.test")
    _, other_key = ca.issue(tmp_path, "other.test")

    def deploy_web(backend: str, key: Path) -> int:
        return main(
            [
                "deploy",
                "web",
                f"--target={proxy.backends[backend]}",
                "--host=a.test",
                "--tls",
                "--deploy-timeout=5s",
                f"--tls-certificate-path={a_cert}",
                f"--tls-private-key-path={key}",
            ]
        )

    assert deploy_web("one", a_key) == 0
    assert main(["deploy", "plain", f"--target={proxy.backends['two']}", "--host=p.test"]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["Service", "Host", "Path", "Target", "State", "TLS"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["web"][-1] == "yes" and rows["plain"][-1] == "no"

    assert deploy_web("two", other_key) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err
    assert str(other_key) in err or str(a_cert) in err
    reply = https_get(proxy.settings.https_port, "a.test", "/", cafile=ca.pem_file)
    assert reply.json()["backend"] == "one"


def test_the_real_run_command_serves_https_under_uvloop(
    proxy: RunningProxy, ca: Ca, tmp_path: Path
) -> None:
    """`dockyard-proxy run` as a process (uvloop, JSON logs), deploy through the CLI process."""
    import os
    import subprocess
    import sys

    a_cert, a_key = ca.issue(tmp_path, "a.test")
    http_port, https_port = free_port(), free_port()
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "DOCKYARD_PROXY_BIND": LOOPBACK,
        "HTTP_PORT": str(http_port),
        "HTTPS_PORT": str(https_port),
    }
    (tmp_path / "run").mkdir()
    cli = [sys.executable, "-m", "dockyard.proxy.cli"]
    log = (tmp_path / "run.log").open("wb")
    server = subprocess.Popen([*cli, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "run" / "kamal-proxy.sock").exists():
            assert server.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        deploy = subprocess.run(
            [
                *cli,
                "deploy",
                "web",
                f"--target={proxy.backends['one']}",
                "--host=a.test",
                "--tls",
                f"--tls-certificate-path={a_cert}",
                f"--tls-private-key-path={a_key}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert deploy.returncode == 0, deploy.stderr
        reply = https_get(https_port, "a.test", "/uv", cafile=ca.pem_file)
        assert reply.status == 200 and san_dns(reply) == ["a.test"]
        assert reply.json() == {"backend": "one", "path": "/uv", "proto": "https"}
        assert http_get(http_port, "a.test", "/uv").headers["location"] == "https://a.test/uv"
        # the event loop is uvloop's: its extension module is mapped into the server process
        assert "uvloop/loop." in Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        server.terminate()
        server.wait(20)
        log.close()
    assert b'"msg":"Server stopped"' in (tmp_path / "run.log").read_bytes()
