"""ALPN on the HTTPS listener as the control plane configures it (TlsRegistry): h2 and
http/1.1 for custom and ACME certificates, acme-tls/1 alone for a TLS-ALPN-01 validator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from dataplane_support import FakeRouter, FakeService, FakeTarget, origin_server, run
from h2_support import H2Client, client_context

from dockyard.proxy.contract import ServiceOptions
from dockyard.proxy.control.options import ServiceConfig
from dockyard.proxy.control.tls import HTTPS_ALPN, TlsRegistry
from dockyard.proxy.dataplane import connection_factory
from dockyard.proxy.tls.accept import TlsAcceptor
from dockyard.proxy.tls.certs import (
    certified_key_from_pem,
    generate_ec_key,
    private_key_pem,
    self_signed,
)
from dockyard.proxy.tls.challenges import tls_alpn01_certificate

PEBBLE = "https://127.0.0.1:14000/dir"  # never contacted: the ACME certificate is in the cache


def write_pair(directory: Path, host: str) -> tuple[Path, Path]:
    key = generate_ec_key()
    cert_file, key_file = directory / f"{host}.crt", directory / f"{host}.key"
    cert_file.write_bytes(self_signed(host, key).public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(private_key_pem(key))
    return cert_file, key_file


async def negotiated(port: int, host: str, alpn: tuple[str, ...]) -> str | None:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(alpn), server_hostname=host
    )
    chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    return str(chosen) if chosen is not None else None


def test_registry_contexts_offer_h2_and_the_challenge_context_only_acme_tls(
    tmp_path: Path,
) -> None:
    assert HTTPS_ALPN == ("h2", "http/1.1")
    cert_file, key_file = write_pair(tmp_path, "custom.test")
    acme_key = generate_ec_key()
    acme_cert = certified_key_from_pem(
        self_signed("acme.test", acme_key, days=90).public_bytes(serialization.Encoding.PEM),
        private_key_pem(acme_key),
    )
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        router.add(FakeService("custom", [target], ServiceOptions(tls=True)), host="custom.test")
        router.add(FakeService("acme", [target], ServiceOptions(tls=True)), host="acme.test")

        async def go() -> None:
            registry = TlsRegistry(tmp_path / "certs")
            custom = ServiceConfig(
                hosts=("custom.test",),
                tls_enabled=True,
                tls_certificate_path=str(cert_file),
                tls_private_key_path=str(key_file),
            )
            acme = ServiceConfig(hosts=("acme.test",), tls_enabled=True, tls_acme_directory=PEBBLE)
            certified = await registry.validate(custom)
            registry.apply([("custom", custom), ("acme", acme)], {"custom": certified})
            registry.manager(PEBBLE, "").store.save("acme.test", acme_cert)
            factory = connection_factory(router, tls=True, log_port=443)
            acceptor = TlsAcceptor(registry.selector, factory, hello_timeout=5)
            listen = socket.socket()
            listen.bind(("127.0.0.1", 0))
            listen.listen(16)
            port = listen.getsockname()[1]
            task = asyncio.create_task(acceptor.serve(listen))
            try:
                results: dict[object, object] = {}
                for host in ("custom.test", "acme.test"):
                    results[host, "both"] = await negotiated(port, host, ("h2", "http/1.1"))
                    results[host, "h1"] = await negotiated(port, host, ("http/1.1",))
                    client = await H2Client().connect(port, host)
                    try:
                        resp = await client.request("/echo", authority=host)
                    finally:
                        await client.close()
                    results[host, "status"] = resp.status
                registry.manager(PEBBLE, "").board.put_tls_alpn01(
                    "acme.test", tls_alpn01_certificate("acme.test", "tok.thumb")
                )
                results["validator"] = await negotiated(port, "acme.test", ("acme-tls/1",))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                listen.close()
                await factory.shutdown(1)
                await registry.aclose()
            for host in ("custom.test", "acme.test"):
                assert results[host, "both"] == "h2"
                assert results[host, "h1"] == "http/1.1"
                assert results[host, "status"] == 200
            assert results["validator"] == "acme-tls/1"

        run(go())


def test_the_h2_modules_load_with_the_first_h2_connection_only() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, sys
        from dockyard.proxy.dataplane import connection_factory
        from dockyard.proxy.tls.accept import TlsAcceptor
        from dockyard.proxy.tls.context import TlsSelector

        async def main():
            factory = connection_factory(None, tls=True, log_port=443)
            acceptor = TlsAcceptor(TlsSelector(), factory)
            print("built", "h2" in sys.modules, sorted(acceptor.alpn_factories))
            protocol = acceptor.alpn_factories["h2"]()
            print("first", "h2" in sys.modules, type(protocol).__name__)
            await factory.shutdown(0)

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out == ["built False ['h2']", "first True H2Session"]
