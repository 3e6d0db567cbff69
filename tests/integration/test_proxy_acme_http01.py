"""HTTP-01 through the real thing: `dockyard-proxy run` (a process) with its HTTP listener on
the port Pebble validates HTTP-01 against, `deploy --tls --host H --tls-acme-directory <Pebble>`
through the CLI, then an HTTPS client that verifies the served certificate against Pebble's root.

TLS-ALPN-01 cannot succeed here: nothing listens on Pebble's TLS-ALPN-01 port (the proxy's HTTPS
listener is elsewhere), so the proxy's first order fails and its second, HTTP-01, is what issues
the certificate; the proxy's log says which challenge did.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest
from test_acme_pebble import Pebble, _no_proxies, pebble  # noqa: F401  (fixtures)
from test_proxy_features import LOOPBACK, Backend, RunningProxy, free_port, http_get, start_backend

pytestmark = pytest.mark.integration


def https_get(port: int, host: str, path: str, roots: str) -> tuple[int, bytes, dict[str, object]]:
    ctx = ssl.create_default_context(cadata=roots)  # Pebble's root only
    with (
        socket.create_connection((LOOPBACK, port), timeout=90) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        peer = tls.getpeercert()
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body, dict(peer or {})


def test_http01_through_the_running_proxy_issues_a_certificate_the_client_verifies(
    pebble: Pebble,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    host = "http01.dockyard.test"
    with socket.socket() as probe:  # Pebble's TLS-ALPN-01 port must stay closed
        assert probe.connect_ex((LOOPBACK, pebble.tls_port)) != 0
    backend: Backend = start_backend()
    proxy = RunningProxy(
        tmp_path,
        http_port=pebble.http_port,  # where Pebble sends HTTP-01 validation requests
        https_port=free_port(),
        extra_env={"SSL_CERT_FILE": str(pebble.ca_file)},  # verifies Pebble's directory
    )
    proxy.start()
    try:
        proxy.cli(
            "deploy",
            "web",
            f"--target={backend.target}",
            f"--host={host}",
            "--tls",
            f"--tls-acme-directory={pebble.directory_url}",
            "--deploy-timeout=10s",
        )
        redirect = http_get(proxy.http_port, host, "/x")  # plain HTTP for the host: redirected
        assert redirect.status == 301 and redirect.headers["location"] == f"https://{host}/x"

        roots = pebble.issuing_roots().decode()
        status, body, peer = https_get(proxy.https_port, host, "/secure", roots)
        assert status == 200
        assert json.loads(body)["path"] == "/secure"
        assert json.loads(body)["headers"]["X-Forwarded-Proto"] == "https"
        sans = [v for k, v in peer["subjectAltName"] if k == "DNS"]  # type: ignore[attr-defined]
        assert sans == [host]

        log = proxy.log.read_text()
        assert f"obtained certificate for {host} with http-01" in log
        assert "ACME tls-alpn-01 for " + host + " failed" in log
        cached = list((tmp_path / "cfg" / "kamal-proxy" / "certs").rglob(host))
        assert cached and b"BEGIN CERTIFICATE" in cached[0].read_bytes()
    finally:
        proxy.stop()
        backend.close()
