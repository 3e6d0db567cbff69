"""Automatic TLS against a real ACME server: Pebble (Let's Encrypt's test CA) on loopback.

Everything stays on 127.0.0.1: Pebble listens there; its `-dnsserver` is a tiny DNS responder
started here that answers A 127.0.0.1 for every name, so the validation requests for the test
host names come back to our HTTP-01 / TLS-ALPN-01 responders on the ports written into Pebble's
config. Pebble's own HTTPS certificate is made here (a throw-away CA); the certificates it
issues chain to a per-run root, fetched from its management endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.errors import ProxyError
from dockyard.proxy.tls.accept import TlsAcceptor
from dockyard.proxy.tls.context import TlsSelector
from dockyard.proxy.tls.manager import CertManager
from dockyard.proxy.tls.store import cache_dir_for
from tests.integration.support import unavailable

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# -- helpers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def make_pebble_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a cert for Pebble's own HTTPS listener (localhost, 127.0.0.1)."""
    import ipaddress

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "pebble listener test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def dns_answer(query: bytes) -> bytes | None:
    """Answer any question: A → 127.0.0.1, any other type → no records (NOERROR)."""
    if len(query) < 12:
        return None
    tid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    pos = 12
    while pos < len(query) and query[pos] != 0:
        pos += 1 + query[pos]
    pos += 1
    if pos + 4 > len(query):
        return None
    qtype = struct.unpack("!H", query[pos : pos + 2])[0]
    question = query[12 : pos + 4]
    answers = b""
    if qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(LOOPBACK)
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # response, AA, RD copied, RA
    header = struct.pack("!HHHHHH", tid, out_flags, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


class LoopbackDns:
    """A UDP DNS responder on 127.0.0.1 in a thread (for Pebble's -dnsserver)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-dns", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = dns_answer(query)
            if answer is not None:
                self.queries += 1
                self.sock.sendto(answer, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Pebble:
    directory_url: str
    ca_file: Path  # verifies Pebble's listeners
    http_port: int  # where Pebble sends HTTP-01 validation requests
    tls_port: int  # where Pebble sends TLS-ALPN-01 validation requests
    management: str
    log: Path

    def issuing_roots(self) -> bytes:
        """Pebble's per-run root and intermediate (PEM), from the management endpoint."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        out = b""
        for path in ("/roots/0", "/intermediates/0"):
            with opener.open(self.management + path, timeout=10) as resp:
                out += resp.read()
        return out


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    binary = shutil.which("pebble") or (
        "/usr/bin/pebble" if Path("/usr/bin/pebble").exists() else None
    )
    if binary is None:
        unavailable("pebble is not installed (Debian package `pebble`)")
    assert binary is not None
    work = tmp_path_factory.mktemp("pebble")
    ca_file, cert_file, key_file = make_pebble_tls(work)
    acme_port, mgmt_port, http_port, tls_port = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"{LOOPBACK}:{acme_port}",
            "managementListenAddress": f"{LOOPBACK}:{mgmt_port}",
            "certificate": str(cert_file),
            "privateKey": str(key_file),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (work / "pebble-config.json").write_text(json.dumps(config))
    dns = LoopbackDns()
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(
        PEBBLE_VA_NOSLEEP="1",
        PEBBLE_WFE_NONCEREJECT="0",
        PEBBLE_AUTHZREUSE="0",
        NO_PROXY="*",
    )
    log = work / "pebble.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [
                binary,
                "-config",
                str(work / "pebble-config.json"),
                "-dnsserver",
                f"{LOOPBACK}:{dns.port}",
                "-strict=false",
            ],
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pebble exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, acme_port), 0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"pebble did not listen within 20 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Pebble(
            directory_url=f"https://{LOOPBACK}:{acme_port}/dir",
            ca_file=ca_file,
            http_port=http_port,
            tls_port=tls_port,
            management=f"https://{LOOPBACK}:{mgmt_port}",
            log=log,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        dns.close()


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (inside acme) honours proxy variables: keep the ACME traffic on loopback."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


# -- the proxy side: HTTP-01 responder, TLS listeners --------------------------------------------


class Http01Responder(asyncio.Protocol):
    """The bit of the data plane that answers /.well-known/acme-challenge/ on port 80."""

    def __init__(self, manager: CertManager) -> None:
        self.manager = manager
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf or self.transport is None:
            return
        head = self.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        host = next(
            (
                line.split(":", 1)[1].strip()
                for line in head[1:]
                if line.lower().startswith("host:")
            ),
            "",
        )
        body = self.manager.http01_response(host, path)
        if body is None:
            status, body = "404 Not Found", b"not found"
        else:
            status = "200 OK"
        self.transport.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()


class Hello(asyncio.Protocol):
    """What runs after the TLS handshake: answers any bytes with a fixed line."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"hello over tls\n")


@dataclass
class Proxy:
    manager: CertManager
    selector: TlsSelector
    https_port: int  # the client-facing HTTPS listener


@contextlib.asynccontextmanager
async def running_proxy(
    pebble: Pebble,
    cache: Path,
    hosts: list[str],
    *,
    order: tuple[str, ...],
    http01_up: bool,
    tls_alpn_up: bool,
    ca_from_env: bool = False,
) -> Iterator[Proxy]:  # type: ignore[misc]
    manager = CertManager(
        pebble.directory_url,
        cache,
        ca_bundle=None if ca_from_env else pebble.ca_file,
        email="ops@dockyard.example",
        challenge_types=order,
        failure_backoff=30,
        order_timeout=30,
    )
    selector = TlsSelector(manager, alpn=("http/1.1",))
    selector.configure(acme_hosts=hosts)
    loop = asyncio.get_running_loop()
    servers: list[asyncio.AbstractServer] = []
    tasks: list[asyncio.Task[None]] = []
    socks: list[socket.socket] = []

    def listen(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(64)
        socks.append(sock)
        return sock

    try:
        if http01_up:
            servers.append(
                await loop.create_server(
                    lambda: Http01Responder(manager), sock=listen(pebble.http_port)
                )
            )
        acceptor = TlsAcceptor(selector, Hello, hello_timeout=10, handshake_timeout=60)
        if tls_alpn_up:
            tasks.append(loop.create_task(acceptor.serve(listen(pebble.tls_port))))
        https = listen(0)
        tasks.append(loop.create_task(acceptor.serve(https)))
        yield Proxy(manager, selector, https.getsockname()[1])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            server.close()
            await server.wait_closed()
        for sock in socks:
            sock.close()
        await manager.aclose()


async def tls_get(port: int, host: str, roots: bytes) -> tuple[dict[str, object], bytes]:
    """Connect as a browser would (SNI = host, verify against Pebble's roots)."""
    ctx = ssl.create_default_context(cadata=roots.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    reader, writer = await asyncio.open_connection(
        LOOPBACK, port, ssl=ctx, server_hostname=host, ssl_handshake_timeout=60
    )
    try:
        peer = writer.get_extra_info("peercert")
        writer.write(b"ping\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        return peer, line
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


def san_dns(peer: dict[str, object]) -> list[str]:
    return [value for kind, value in peer["subjectAltName"] if kind == "DNS"]  # type: ignore[attr-defined]


# -- tests ---------------------------------------------------------------------------------------


def test_tls_alpn01_after_http01_fails_and_the_client_verifies(
    pebble: Pebble, tmp_path: Path
) -> None:
    """HTTP-01 responder down: the first order (HTTP-01) fails, a new order with TLS-ALPN-01
    succeeds, on the first handshake for the host."""
    host = "alpn.dockyard.test"

    async def scenario() -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("http-01", "tls-alpn-01"),
            http01_up=False, tls_alpn_up=True,
        ) as proxy:  # fmt: skip
            roots = await asyncio.to_thread(pebble.issuing_roots)
            peer, line = await tls_get(proxy.https_port, host, roots)
            assert line == b"hello over tls\n"
            assert san_dns(peer) == [host]
            issuance = proxy.manager.issuances[host]
            assert [(a.type, a.ok) for a in issuance.attempts] == [
                ("http-01", False),
                ("tls-alpn-01", True),
            ]
            assert "connection refused" in issuance.attempts[0].detail.lower()

    asyncio.run(scenario())
    cached = (cache_dir_for(tmp_path, pebble.directory_url) / host).read_bytes()
    assert cached.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert b"-----BEGIN CERTIFICATE-----" in cached


def test_http01_after_tls_alpn01_fails_and_the_client_verifies(
    pebble: Pebble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS-ALPN-01 port down: the first order (TLS-ALPN-01) fails, HTTP-01 succeeds.
    (The CA that verifies Pebble comes from SSL_CERT_FILE here.)"""
    host = "http.dockyard.test"
    monkeypatch.setenv("SSL_CERT_FILE", str(pebble.ca_file))

    async def scenario() -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01", "http-01"),
            http01_up=True, tls_alpn_up=False, ca_from_env=True,
        ) as proxy:  # fmt: skip
            assert proxy.manager.ca_bundle == str(pebble.ca_file)
            roots = await asyncio.to_thread(pebble.issuing_roots)
            peer, line = await tls_get(proxy.https_port, host, roots)
            assert line == b"hello over tls\n"
            assert san_dns(peer) == [host]
            attempts = proxy.manager.issuances[host].attempts
            assert [(a.type, a.ok) for a in attempts] == [("tls-alpn-01", False), ("http-01", True)]

    asyncio.run(scenario())


def test_concurrent_first_handshakes_share_one_issuance_and_a_restart_reuses_the_cache(
    pebble: Pebble, tmp_path: Path
) -> None:
    host = "burst.dockyard.test"
    obtained: list[str] = []
    serials: list[int] = []

    async def first_life() -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01", "http-01"),
            http01_up=True, tls_alpn_up=True,
        ) as proxy:  # fmt: skip
            real = proxy.manager._obtain

            def counting(name: str):  # type: ignore[no-untyped-def]
                obtained.append(name)
                return real(name)

            proxy.manager._obtain = counting  # type: ignore[method-assign]
            roots = await asyncio.to_thread(pebble.issuing_roots)
            results = await asyncio.gather(
                *(tls_get(proxy.https_port, host, roots) for _ in range(6))
            )
            assert all(line == b"hello over tls\n" for _, line in results)
            serials.extend(int(str(peer["serialNumber"]), 16) for peer, _ in results)

    async def second_life() -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01", "http-01"),
            http01_up=False, tls_alpn_up=False,
        ) as proxy:  # fmt: skip
            proxy.manager._obtain = lambda name: pytest.fail("must not issue again")  # type: ignore[method-assign]
            roots = await asyncio.to_thread(pebble.issuing_roots)
            peer, line = await tls_get(proxy.https_port, host, roots)
            assert line == b"hello over tls\n"
            serials.append(int(str(peer["serialNumber"]), 16))

    # The proxy runs on uvloop: the first life does too (native TLS in uvloop's transport).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(first_life())
    assert obtained == [host]
    assert len(set(serials)) == 1
    asyncio.run(second_life())
    assert len(set(serials)) == 1


def test_no_viable_challenge_fails_clearly_and_backs_off(pebble: Pebble, tmp_path: Path) -> None:
    host = "nowhere.dockyard.test"

    async def scenario() -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01", "http-01"),
            http01_up=False, tls_alpn_up=False,
        ) as proxy:  # fmt: skip
            with pytest.raises(ProxyError) as first:
                await proxy.manager.ensure(host)
            assert f"could not obtain a certificate for {host}" in first.value.message
            assert "tls-alpn-01:" in first.value.message
            assert "http-01:" in first.value.message
            # remembered: the second call fails at once, with no new order (no _obtain call)
            proxy.manager._obtain = lambda name: pytest.fail("must not order again")  # type: ignore[method-assign]
            with pytest.raises(ProxyError) as second:
                await proxy.manager.ensure(host)
            assert second.value.message == first.value.message
            # A client handshake for the host is refused rather than hanging.
            roots = await asyncio.to_thread(pebble.issuing_roots)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await tls_get(proxy.https_port, host, roots)

    asyncio.run(scenario())


def test_undeclared_host_gets_no_order(pebble: Pebble, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_proxy(
            pebble, tmp_path, ["declared.dockyard.test"], order=("tls-alpn-01", "http-01"),
            http01_up=True, tls_alpn_up=True,
        ) as proxy:  # fmt: skip
            orders: list[str] = []
            proxy.manager._obtain = orders.append  # type: ignore[method-assign]
            roots = await asyncio.to_thread(pebble.issuing_roots)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await tls_get(proxy.https_port, "other.dockyard.test", roots)
            assert orders == []  # refused before any order was started
            with pytest.raises(ProxyError, match="automatic TLS does not support wildcards"):
                await proxy.manager.ensure("*.dockyard.test")

    asyncio.run(scenario())


def test_untrusted_acme_server_is_explained(
    pebble: Pebble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_ca, _, _ = make_pebble_tls(tmp_path)  # a CA that did not sign Pebble's certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    manager = CertManager(pebble.directory_url, tmp_path / "certs")
    with pytest.raises(ProxyError) as err:
        asyncio.run(manager.ensure("untrusted.dockyard.test"))
    assert "the ACME server's TLS certificate is not trusted" in err.value.message
    assert "SSL_CERT_FILE" in err.value.message


def test_renewal_replaces_the_certificate_served_and_cached(pebble: Pebble, tmp_path: Path) -> None:
    """With a renewal window longer than the lifetime, every certificate is due at once."""
    host = "renew.dockyard.test"

    async def scenario() -> tuple[int, int]:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01", "http-01"),
            http01_up=True, tls_alpn_up=True,
        ) as proxy:  # fmt: skip
            roots = await asyncio.to_thread(pebble.issuing_roots)
            first, _ = await tls_get(proxy.https_port, host, roots)
            proxy.manager.renew_before = dt.timedelta(days=365 * 20)
            assert await proxy.manager.renew_due() == [host]
            proxy.manager.renew_before = None  # the new one is not due again
            second, _ = await tls_get(proxy.https_port, host, roots)
            return int(str(first["serialNumber"]), 16), int(str(second["serialNumber"]), 16)

    first, second = asyncio.run(scenario())
    assert first != second
    cached = (cache_dir_for(tmp_path, pebble.directory_url) / host).read_bytes()
    leaf = x509.load_pem_x509_certificates(cached)[0]
    assert leaf.serial_number == second


def test_a_restarted_proxy_reuses_its_acme_account(pebble: Pebble, tmp_path: Path) -> None:
    hosts = ["first.account.dockyard.test", "second.account.dockyard.test"]
    uris: list[str | None] = []

    async def life(host: str) -> None:
        async with running_proxy(
            pebble, tmp_path, [host], order=("tls-alpn-01",),
            http01_up=False, tls_alpn_up=True,
        ) as proxy:  # fmt: skip
            await proxy.manager.ensure(host)
            uris.append(proxy.manager._account_uri)

    account_file = cache_dir_for(tmp_path, pebble.directory_url) / "acme_account+key"
    asyncio.run(life(hosts[0]))
    key_after_first = account_file.read_bytes()
    asyncio.run(life(hosts[1]))
    assert account_file.read_bytes() == key_after_first
    assert uris[0] is not None and uris[0] == uris[1]
