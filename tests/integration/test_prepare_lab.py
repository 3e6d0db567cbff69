"""Kamal's boot preparation on a real server: a custom TLS certificate from the secrets, custom
error pages and asset bridging (`asset_path`), through setup, a redeploy and maintenance mode.

The tests run in file order and share one project (module fixture) on the first lab server."""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.proxy.tls.certs import self_signed
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import Project, build_proxy_image, deploy_yml, prepare_app
from tests.integration.support import out as _out

pytestmark = pytest.mark.integration

HOST = "prep.dockyard.test"
PAGE = "<h1>Back soon, from our own page</h1>\n"
APPS = ".kamal/apps/hello/assets/volumes"
PAGES = ".kamal/proxy/apps-config/hello/error_pages"


def certificate(host: str) -> tuple[str, str]:
    """A self-signed certificate for ``host`` (its own trust anchor) and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.BasicConstraints(ca=True, path_length=None)
    cert = self_signed(host, key, days=2, extensions=(ca,))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


class Prepared(Project):
    cert: str = ""
    address: str = ""

    def https(self, path: str = "/") -> tuple[int, str, bytes]:
        """GET over TLS with SNI HOST, trusting only our certificate: (status, body, the DER
        certificate the server showed)."""
        ctx = ssl.create_default_context(cadata=self.cert)
        raw = socket.create_connection((self.address, 443), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            der = tls.getpeercert(binary_form=True) or b""
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode(), der


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Prepared]:
    proxy_source = build_proxy_image()
    cert, key = certificate(HOST)
    with tempfile.TemporaryDirectory(prefix="dockyard-prepare-") as tmp:
        root = Path(tmp)
        address = lab.servers[0].address
        app, env, ssh_config = prepare_app(
            lab,
            root,
            hello=("v1", "v2"),
            proxy=proxy_source,
            # PEMs as users keep them: multi-line values in double quotes
            secrets=f'CERT_PEM="{cert}"\nKEY_PEM="{key}"\n',
        )
        (app / "errors").mkdir()
        (app / "errors" / "503.html").write_text(PAGE)
        text = deploy_yml(
            lab,
            hosts=[address],
            proxy_host=HOST,
            ssh_config=ssh_config,
            extra="asset_path: /app\nerror_pages_path: errors\n",
        )
        text = text.replace(
            "  healthcheck:\n",
            "  ssl:\n    certificate_pem: CERT_PEM\n    private_key_pem: KEY_PEM\n  healthcheck:\n",
            1,
        )
        (app / "config" / "deploy.yml").write_text(text)
        project = Prepared(app, env, lab)
        project.cert, project.address = cert, address
        try:
            yield project
        finally:
            project.dockyard("remove", "-y")


def test_setup_uploads_the_certificate_pages_and_assets(project: Prepared, lab_ssh: LabSsh) -> None:
    setup = project.dockyard("setup", "-P", "--version", "v1")
    assert setup.returncode == 0, _out(setup)
    address = project.address
    # the certificate from the secrets is the one the proxy shows for the host
    status, body, der = project.https()
    assert (status, body) == (200, "v1")
    shown = x509.load_der_x509_certificate(der)
    assert shown == x509.load_pem_x509_certificate(project.cert.encode())
    # plain HTTP to the host is redirected to HTTPS
    with socket.create_connection((address, 80), timeout=10) as plain:
        plain.sendall(f"GET /x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        head = plain.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 301 ")
    assert f"\r\nLocation: https://{HOST}/x\r\n" in head
    # the error pages and the assets are where the proxy and the container read them
    assert lab_ssh(address, "cat", f"{PAGES}/v1/503.html").stdout == PAGE
    assert "app.py" in lab_ssh(address, "ls", f"{APPS}/web-v1").stdout.split()
    mounts = lab_ssh(
        address, "docker", "inspect", "-f",
        "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "hello-web-v1",
    ).stdout  # fmt: skip
    assert f"{APPS}/web-v1:/app" in mounts


def test_redeploy_bridges_assets_and_cleans_up_the_old_version(
    project: Prepared, lab_ssh: LabSsh
) -> None:
    deploy = project.dockyard("deploy", "-P", "--version", "v2")
    assert deploy.returncode == 0, _out(deploy)
    assert project.https()[:2] == (200, "v2")
    address = project.address
    assert lab_ssh(address, "ls", APPS).stdout.split() == ["web-v2"]
    assert lab_ssh(address, "ls", PAGES).stdout.split() == ["v2"]
    assert lab_ssh(address, "cat", f"{PAGES}/v2/503.html").stdout == PAGE


def test_maintenance_serves_the_custom_error_page(project: Prepared) -> None:
    stopped = project.dockyard("app", "maintenance")
    assert stopped.returncode == 0, _out(stopped)
    try:
        status, body, _ = project.https()
        assert status == 503
        assert body == PAGE
    finally:  # back to live whatever failed above (its own failure is checked after)
        live = project.dockyard("app", "live")
    assert live.returncode == 0, _out(live)
    assert project.https()[:2] == (200, "v2")
