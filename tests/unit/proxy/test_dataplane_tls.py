"""The data plane behind TLS: serve_http(ssl=...) and connection_factory for accepted sockets."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dataplane_support import (
    FakeRouter,
    FakeService,
    FakeTarget,
    get,
    origin_server,
    read_response,
    run,
)

from dockyard.proxy.contract import ServiceOptions
from dockyard.proxy.dataplane import connection_factory, serve_http


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def client_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def https_get(port: int, raw: bytes) -> tuple[int, dict[str, object] | bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx(), server_hostname="app.test"
    )
    writer.write(raw)
    resp = await read_response(reader)
    writer.close()
    try:
        return resp.status, resp.json()
    except ValueError:
        return resp.status, resp.body


def test_https_listener_sets_https_forwarding_and_refuses_non_tls_services(
    tmp_path: Path,
) -> None:
    server_ctx = self_signed(tmp_path)
    with origin_server() as origin:
        router = FakeRouter()
        target = FakeTarget("127.0.0.1", origin.port)
        tls_opts = ServiceOptions(tls=True, forward_headers=False)
        router.add(FakeService("secure", [target], tls_opts), host="app.test")
        router.add(FakeService("plain", [target]), host="plain.test")

        async def go() -> None:
            lines: list[str] = []
            server = await serve_http(
                router, host="127.0.0.1", port=0, ssl=server_ctx, log_port=443,
                access_log=lines.append, tune_gc=False,
            )  # fmt: skip
            status, info = await https_get(
                server.port, get(host="app.test", extra="X-Forwarded-Proto: http\r\n")
            )
            refused, _ = await https_get(server.port, get(host="plain.test"))
            await server.shutdown(1)
            assert status == 200 and isinstance(info, dict)
            headers = {k.lower(): v for k, v in info["headers"]}  # type: ignore[attr-defined]
            assert headers["x-forwarded-proto"] == "https"  # not the client's (TLS: off)
            assert refused == 503
            entry = json.loads(lines[0])
            assert entry["scheme"] == "https" and entry["port"] == 443

        run(go())


def test_connection_factory_serves_sockets_accepted_elsewhere(tmp_path: Path) -> None:
    server_ctx = self_signed(tmp_path)
    with origin_server() as origin:
        router = FakeRouter()
        router.add(
            FakeService("secure", [FakeTarget("127.0.0.1", origin.port)], ServiceOptions(tls=True))
        )

        async def go() -> None:
            loop = asyncio.get_running_loop()
            factory = connection_factory(router, tls=True, log_port=443)
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = listener.getsockname()[1]

            async def accept_one() -> None:
                conn, _ = await loop.sock_accept(listener)
                await loop.connect_accepted_socket(factory, conn, ssl=server_ctx)

            acceptor = asyncio.ensure_future(accept_one())
            status, info = await https_get(port, get(host="app.test"))
            await acceptor
            await factory.shutdown(1)
            listener.close()
            assert status == 200 and isinstance(info, dict)

        run(go())
