"""The real Kamal 2.11 drives dockyard-proxy in the lab: `kamal setup -P` boots our image as
`kamal-proxy` on every server (`proxy.run` points at the lab registry's copy) and deploys the
hello app through it; `kamal deploy -P` then switches versions under a request loop with no
failed request.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KAMAL = REPO / ".cache" / "kamal-venv" / "bin" / "kamal"
PROXY_VERSION = "v0.9.2"  # Kamal refuses a proxy image tagged below its minimum


def _run(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[tuple[Path, dict[str, str]]]:
    """A Kamal project for the hello app, with the proxy and app images in the lab registry."""
    if not KAMAL.is_file():
        pytest.skip(f"Kamal 2.11 is not installed at {KAMAL} (scripts/lib.sh ensure_kamal)")
    build = _run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "lab", "build", "proxy"],
        env={},
        cwd=REPO,
        timeout=1800,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    reg = lab.registry.address
    with tempfile.TemporaryDirectory(prefix="dockyard-kamal-") as tmp:
        root = Path(tmp)
        env = {"DOCKER_CONFIG": str(root / "docker")}  # keep the host's docker login untouched
        login = _run(
            ["docker", "login", reg, "-u", lab.registry.username, "--password-stdin"],
            env=env,
            input=lab.registry.password,
        )
        assert login.returncode == 0, login.stderr
        pushes = [("dockyard-proxy:lab", f"{reg}/dockyard-proxy:{PROXY_VERSION}")] + [
            (f"dockyard-lab/hello:{v}", f"{reg}/hello:{v}") for v in ("v1", "v2")
        ]
        for source, ref in pushes:
            assert _run(["docker", "tag", source, ref], env=env).returncode == 0
            pushed = _run(["docker", "push", ref], env=env)
            assert pushed.returncode == 0, pushed.stderr
        ssh_config = root / "ssh_config"
        ssh_config.write_text(
            f"Host *\n  UserKnownHostsFile {lab.ssh.known_hosts}\n  StrictHostKeyChecking yes\n"
        )
        app = root / "app"
        (app / "config").mkdir(parents=True)
        (app / ".kamal").mkdir()
        (app / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={lab.registry.password}\n"
        )
        servers = "\n".join(f"    - {s.address}" for s in lab.servers)
        (app / "config" / "deploy.yml").write_text(
            f"""service: hello
image: hello
servers:
  web:
{servers}
registry:
  server: {reg}
  username: {lab.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  app_port: 80
  healthcheck:
    interval: 1
  run:
    registry: {reg}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
ssh:
  user: {lab.ssh.user}
  keys_only: true
  keys:
    - {lab.ssh.key}
  config: {ssh_config}
"""
        )
        yield app, env


def kamal(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    app, env = project
    return _run([str(KAMAL), *args], env=env, cwd=app, timeout=900)


def test_kamal_setup_and_deploy_through_dockyard_proxy(
    lab: LabDoc, lab_ssh: LabSsh, project: tuple[Path, dict[str, str]]
) -> None:
    setup = kamal(project, "setup", "-P", "--version=v1")
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-5000:]
    for server in lab.servers:
        image = lab_ssh(
            server.address, "docker", "inspect", "-f", "{{.Config.Image}}", "kamal-proxy"
        ).stdout.strip()
        assert image == f"{lab.registry.address}/dockyard-proxy:{PROXY_VERSION}"
        assert _get(f"http://{server.address}/") == (200, "v1")

    errors: list[str] = []
    ok = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal ok
        while not stop.is_set():
            for server in lab.servers:
                try:
                    status, body = _get(f"http://{server.address}/")
                except OSError as exc:
                    errors.append(f"{server.address}: {exc!r}")
                    continue
                if status != 200 or body not in ("v1", "v2"):
                    errors.append(f"{server.address}: {status} {body[:80]}")
                else:
                    ok += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        deploy = kamal(project, "deploy", "-P", "--version=v2")
        took = time.monotonic() - started
    finally:
        stop.set()
        worker.join(30)
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-5000:]
    assert errors == []
    assert ok > 10
    print(f"\nkamal deploy -P through dockyard-proxy: {took:.1f}s, {ok} requests, 0 errors")
    for server in lab.servers:
        assert _get(f"http://{server.address}/") == (200, "v2")
        listed = lab_ssh(
            server.address, "docker", "exec", "kamal-proxy", "kamal-proxy", "list"
        ).stdout
        assert "hello-web" in listed and "running" in listed

    # Maintenance mode and back (kamal-proxy stop / resume).
    maintenance = kamal(project, "app", "maintenance", "--message=back soon", "--version=v2")
    assert maintenance.returncode == 0, (maintenance.stdout + maintenance.stderr)[-5000:]
    for server in lab.servers:
        status, body = _get(f"http://{server.address}/")
        assert status == 503 and "back soon" in body
    live = kamal(project, "app", "live", "--version=v2")
    assert live.returncode == 0, (live.stdout + live.stderr)[-5000:]
    for server in lab.servers:
        assert _get(f"http://{server.address}/") == (200, "v2")

    # A proxy reboot replaces the container; the state in Kamal's config volume brings the
    # service back without a redeploy.
    reboot = kamal(project, "proxy", "reboot", "-y", "--version=v2")
    assert reboot.returncode == 0, (reboot.stdout + reboot.stderr)[-5000:]
    for server in lab.servers:
        deadline = time.monotonic() + 20
        while True:
            try:
                result = _get(f"http://{server.address}/")
            except OSError:
                result = (0, "")
            if result == (200, "v2") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert result == (200, "v2")

    removed = kamal(project, "remove", "-y", "--version=v2")
    assert removed.returncode == 0, (removed.stdout + removed.stderr)[-5000:]
