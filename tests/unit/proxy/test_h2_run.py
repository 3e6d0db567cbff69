"""HTTP/2 through `serve()` (what `dockyard-proxy run` calls): a TLS service with custom
certificates deployed over the control socket, h2 and HTTP/1.1 on the HTTPS port, GOAWAY on
stop. Loopback only."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from dataplane_support import origin_server, read_response, run
from h2.errors import ErrorCodes
from h2_support import H2Client, client_context

from dockyard.proxy.control.client import call
from dockyard.proxy.control.options import DeployRequest, ServiceConfig
from dockyard.proxy.control.server import RunSettings, serve
from dockyard.proxy.tls.certs import generate_ec_key, private_key_pem, self_signed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_h2_and_http11_on_the_https_port(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    key = generate_ec_key()
    cert_file, key_file = tmp_path / "app.crt", tmp_path / "app.key"
    cert_file.write_bytes(self_signed("app.test", key).public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(private_key_pem(key))
    settings = RunSettings(
        http_port=_free_port(),
        https_port=_free_port(),
        bind="127.0.0.1",
        socket=tmp_path / "kamal-proxy.sock",
        state_file=tmp_path / "state" / "kamal-proxy.state",
    )
    with origin_server() as origin:

        async def go() -> None:
            stop = asyncio.Event()
            task = asyncio.ensure_future(serve(settings, stop))
            assert settings.socket is not None
            for _ in range(200):
                if settings.socket.exists():
                    break
                await asyncio.sleep(0.02)
            deploy = DeployRequest(
                "web",
                (f"127.0.0.1:{origin.port}",),
                config=ServiceConfig(
                    hosts=("app.test",),
                    tls_enabled=True,
                    tls_certificate_path=str(cert_file),
                    tls_private_key_path=str(key_file),
                ),
                deploy_timeout=5_000_000_000,
            )
            await asyncio.to_thread(call, settings.socket, "deploy", deploy.to_json())
            h2 = await H2Client().connect(settings.https_port)
            try:
                resp = await h2.request("/echo?via=h2")
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1",
                    settings.https_port,
                    ssl=client_context(("http/1.1",)),
                    server_hostname="app.test",
                )
                writer.write(b"GET /echo?via=h1 HTTP/1.1\r\nHost: app.test\r\n\r\n")
                h1 = await asyncio.wait_for(read_response(reader), 10)
                writer.close()
                stop.set()
                await asyncio.wait_for(h2.closed.wait(), 15)  # GOAWAY, then closed
                await asyncio.wait_for(task, 15)
            finally:
                await h2.close()
            assert h2.alpn == "h2"
            assert resp.status == 200 and h1.status == 200
            seen = {k.lower(): v for k, v in json.loads(bytes(resp.body))["headers"]}
            assert seen["x-forwarded-proto"] == "https" and seen["host"] == "app.test"
            assert h2.terminated == ErrorCodes.NO_ERROR

        run(go(), 40)
    out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if '"msg":"Request"' in line]
    by_query = {line["query"]: line for line in lines}
    assert by_query["via=h2"]["proto"] == "HTTP/2.0"
    assert by_query["via=h1"]["proto"] == "HTTP/1.1"
    assert by_query["via=h2"]["scheme"] == "https" and by_query["via=h2"]["service"] == "web"
