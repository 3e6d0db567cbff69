"""The real Kamal 2.11 drives dockyard-proxy in the lab: `kamal setup -P` boots our image as
`kamal-proxy` on every server (`proxy.run` points at the lab registry's copy) and deploys the
hello app through it; `kamal deploy -P` then switches versions under a request loop with no
failed request.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    PROXY_VERSION,
    REPO,
    LoadLoop,
    Project,
    build_proxy_image,
    deploy_yml,
    get,
    out,
    prepare_app,
    run,
    server_urls,
    unavailable,
)

pytestmark = pytest.mark.integration

KAMAL = REPO / ".cache" / "kamal-venv" / "bin" / "kamal"


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Project]:
    """A Kamal project for the hello app, with the proxy and app images in the lab registry."""
    if not KAMAL.is_file():
        unavailable(f"Kamal 2.11 is not installed at {KAMAL} (scripts/lib.sh ensure_kamal)")
    build_proxy_image()
    with tempfile.TemporaryDirectory(prefix="dockyard-kamal-") as tmp:
        root = Path(tmp)
        app, env, ssh_config = prepare_app(lab, root, hello=("v1", "v2"))
        (app / "config" / "deploy.yml").write_text(deploy_yml(lab, ssh_config=ssh_config))
        yield Project(app, env, lab)


def kamal(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(KAMAL), *args], env=project.env, cwd=project.root, timeout=900)


def test_kamal_setup_and_deploy_through_dockyard_proxy(
    lab: LabDoc, lab_ssh: LabSsh, project: Project
) -> None:
    setup = kamal(project, "setup", "-P", "--version=v1")
    assert setup.returncode == 0, out(setup)
    for server in lab.servers:
        image = lab_ssh(
            server.address, "docker", "inspect", "-f", "{{.Config.Image}}", "kamal-proxy"
        ).stdout.strip()
        assert image == f"{lab.registry.address}/dockyard-proxy:{PROXY_VERSION}"
        assert get(f"http://{server.address}/", timeout=10) == (200, "v1")

    # a request loop while Kamal switches versions (bounded like its deploy: 900 s)
    with LoadLoop(server_urls(lab), ("v1", "v2"), max_seconds=900, timeout=10, warmup=0.5) as load:
        started = time.monotonic()
        deploy = kamal(project, "deploy", "-P", "--version=v2")
        took = time.monotonic() - started
    assert deploy.returncode == 0, out(deploy)
    assert load.errors == []
    assert load.seen["v1"] > 0 and load.seen["v2"] > 0, load.seen  # the load spanned the switch
    assert load.ok_in_block > 10
    print(f"\nkamal deploy -P through dockyard-proxy: {took:.1f}s, {load.ok} requests, 0 errors")
    for server in lab.servers:
        assert get(f"http://{server.address}/", timeout=10) == (200, "v2")
        listed = lab_ssh(
            server.address, "docker", "exec", "kamal-proxy", "kamal-proxy", "list"
        ).stdout
        assert "hello-web" in listed and "running" in listed

    # Maintenance mode and back (kamal-proxy stop / resume).
    maintenance = kamal(project, "app", "maintenance", "--message=back soon", "--version=v2")
    assert maintenance.returncode == 0, out(maintenance)
    for server in lab.servers:
        status, body = get(f"http://{server.address}/", timeout=10)
        assert status == 503 and "back soon" in body
    live = kamal(project, "app", "live", "--version=v2")
    assert live.returncode == 0, out(live)
    for server in lab.servers:
        assert get(f"http://{server.address}/", timeout=10) == (200, "v2")

    # A proxy reboot replaces the container; the state in Kamal's config volume brings the
    # service back without a redeploy.
    reboot = kamal(project, "proxy", "reboot", "-y", "--version=v2")
    assert reboot.returncode == 0, out(reboot)
    for server in lab.servers:
        deadline = time.monotonic() + 20
        while True:
            try:
                result = get(f"http://{server.address}/", timeout=10)
            except OSError:
                result = (0, "")
            if result == (200, "v2") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert result == (200, "v2")

    removed = kamal(project, "remove", "-y", "--version=v2")
    assert removed.returncode == 0, out(removed)
