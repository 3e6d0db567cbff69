"""The proxy image (`images/proxy/Dockerfile`, built by `python -m lab build proxy`) on the host's
Docker engine: runs as the non-root `kamal-proxy` user, binds port 80, answers
`docker exec <c> kamal-proxy deploy ...` as Kamal drives it, and keeps its services across a
`docker kill` + `docker start`.

Everything runs on a fresh `--internal` network the test creates and removes.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.support import unavailable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGE = "dockyard-proxy:lab"
APP_IMAGE = "dockyard-lab/hello"


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def lab(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def images() -> None:
    no_engine = shutil.which("docker") is None or docker("info", check=False).returncode != 0
    if no_engine and lab("engine", timeout=900).returncode != 0:
        unavailable("no Docker engine for the proxy image test")
    build = lab("build", "proxy", "hello", timeout=1800)
    if build.returncode != 0:
        pytest.fail(f"`python -m lab build proxy hello` failed:\n{build.stderr[-3000:]}")


@dataclass
class Net:
    name: str
    containers: list[str]

    def ip(self, container: str) -> str:
        out = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout
        return str(json.loads(out)[self.name]["IPAddress"])

    def run(self, name: str, *args: str) -> str:
        full = f"{self.name}-{name}"
        docker("run", "--detach", "--name", full, "--network", self.name, *args)
        self.containers.append(full)
        return full

    def run_proxy(self, *cmd: str) -> str:
        """The proxy image as Kamal runs it: container `kamal-proxy` with its config directory in
        the volume `<network>-config` (removed with the network); `cmd` replaces the image's."""
        volume = f"{self.name}-config:/home/kamal-proxy/.config/kamal-proxy"
        return self.run("kamal-proxy", "--volume", volume, IMAGE, *cmd)


@pytest.fixture
def net(images: None) -> Iterator[Net]:
    name = f"dockyard-proxy-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--internal", name)
    n = Net(name, [])
    try:
        yield n
    finally:
        for container in n.containers:
            docker("rm", "--force", container, check=False)
        docker("network", "rm", name, check=False)
        docker("volume", "rm", "--force", f"{name}-config", check=False)


def get(ip: str, path: str = "/", host: str = "app.test") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(ip, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # the container is still starting
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out; last error: {last!r}")


def exec_proxy(container: str, *args: str) -> subprocess.CompletedProcess[str]:
    return docker("exec", container, "kamal-proxy", *args, check=False)


def test_image_shape(images: None) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", IMAGE).stdout)
    assert config["Labels"]["org.opencontainers.image.title"] == "kamal-proxy"
    assert set(config["ExposedPorts"]) == {"80/tcp", "443/tcp"}
    assert config["User"].startswith("kamal-proxy")
    assert config["Cmd"] == ["kamal-proxy", "run"]
    assert "HOME=/home/kamal-proxy" in config["Env"]


def test_the_image_runs_the_data_plane_compiled_for_its_python(images: None) -> None:
    """`lab build` compiles the hot modules (mypyc) when this Python has the image's version;
    the image's proxy then imports them (and the other tests of this file run them)."""
    from lab.images import wheels_python_version

    here = "{}.{}".format(*sys.version_info[:2])
    status = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        "--env",
        "PYTHONPATH=/opt/dockyard/lib",
        IMAGE,
        "-m",
        "dockyard.proxy.native",
        "status",
    ).stdout.strip()
    image_python = wheels_python_version()
    if os.environ.get("CI") == "true":
        # CI builds the lab on a host whose Python is the image's: the compiled data plane
        # must be proven there, not excused by a version mismatch.
        assert image_python == here, f"host Python {here}, image Python {image_python}"
    assert status == ("compiled" if image_python == here else "interpreted")


def test_kamal_style_deploy_in_the_container_and_restart_keeps_services(net: Net) -> None:
    v1 = net.run("app-v1", f"{APP_IMAGE}:v1")
    v2 = net.run("app-v2", f"{APP_IMAGE}:v2")
    proxy = net.run_proxy()
    ip = net.ip(proxy)
    who = docker("exec", proxy, "id", "-un").stdout.strip()
    assert who == "kamal-proxy"
    wait_for(lambda: exec_proxy(proxy, "list").returncode == 0)

    # The argv Kamal 2.11 sends (`--flag="value"` after shell quoting, true as a bare flag).
    kamal_flags = [
        "--deploy-timeout=30s",
        "--drain-timeout=30s",
        "--buffer-requests",
        "--buffer-responses",
        "--log-request-header=Cache-Control",
        "--log-request-header=Last-Modified",
        "--log-request-header=User-Agent",
        "--host=app.test",
    ]
    deployed = exec_proxy(proxy, "deploy", "hello-web", f"--target={v1}:80", *kamal_flags)
    assert deployed.returncode == 0, deployed.stderr
    status, body = get(ip)
    assert status == 200 and b"v1" in body
    deployed = exec_proxy(proxy, "deploy", "hello-web", f"--target={v2}:80", *kamal_flags)
    assert deployed.returncode == 0, deployed.stderr
    status, body = get(ip)
    assert status == 200 and b"v2" in body

    failed = exec_proxy(
        proxy, "deploy", "hello-web", "--target=nowhere:80", "--deploy-timeout=1s", *kamal_flags[1:]
    )
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == (  # then what the probe saw and why
        "Error: target failed to become healthy within configured timeout (1s)"
    )
    assert b"v2" in get(ip)[1]

    assert exec_proxy(proxy, "stop", "hello-web", "--message=upgrading").returncode == 0
    before = exec_proxy(proxy, "list").stdout
    docker("kill", "--signal", "KILL", proxy)
    docker("start", proxy)
    ip = net.ip(proxy)
    wait_for(lambda: exec_proxy(proxy, "list").returncode == 0)
    assert exec_proxy(proxy, "list").stdout == before
    status, body = get(ip)
    assert status == 503 and b"upgrading" in body
    assert exec_proxy(proxy, "resume", "hello-web").returncode == 0
    assert b"v2" in get(ip)[1]
    logs = docker("logs", proxy).stdout
    assert '"msg":"Restored saved state"' in logs
