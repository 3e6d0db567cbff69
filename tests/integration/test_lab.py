"""The lab itself: servers answer over SSH with their own Docker engine, pull from the lab's
TLS registry with a login, and the apps they run are reachable from the host."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.paths import REGISTRY_CONTAINER, STATE_DIR
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import lab_pushes, login_on_server, push_images

pytestmark = pytest.mark.integration

APP = "lab-hello-test"
REPO = Path(__file__).resolve().parents[2]
SERVERS = 2  # as the `lab` fixture starts it


def _get(url: str, deadline_s: float = 20) -> tuple[int, str]:
    """GET from the host, retrying until the app listens (bounded); never via a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with opener.open(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def pushed(lab: LabDoc) -> Iterator[str]:
    """hello:v1 and hello:broken pushed to the lab registry from the host; yields the repo."""
    with tempfile.TemporaryDirectory() as tmp:  # keep the host's docker login untouched
        push_images(lab, Path(tmp), lab_pushes(lab, ("v1", "broken"), proxy=None))
        yield f"{lab.registry.address}/hello"


def test_document_lists_the_servers_and_existing_files(lab: LabDoc) -> None:
    assert len(lab.servers) == SERVERS
    assert len({s.address for s in lab.servers}) == SERVERS
    for path in (lab.registry.ca_cert, lab.ssh.key, lab.ssh.known_hosts):
        assert Path(path).is_file(), path
    known = Path(lab.ssh.known_hosts).read_text()
    for server in lab.servers:
        assert server.address in known
    saved = json.loads((STATE_DIR / "lab.json").read_text())  # this lab's (named or not)
    assert LabDoc.from_dict(saved) == lab


def test_each_server_has_its_own_engine_and_no_dns(lab: LabDoc, lab_ssh: LabSsh) -> None:
    for server in lab.servers:
        info = lab_ssh(server.address, "docker", "info", "--format", "{{ .ServerVersion }}")
        assert info.stdout.strip()
        name = lab_ssh(server.address, "hostname").stdout.strip()
        assert name.startswith("server-")
        resolv = lab_ssh(server.address, "cat", "/etc/resolv.conf").stdout
        assert resolv.split() == ["nameserver", "127.0.0.1"]
    # A pull from anywhere but the lab registry fails: the name does not resolve (the lab's
    # servers have no DNS), rather than timing out on a route.
    proc = lab_ssh(lab.servers[0].address, "docker", "pull", "busybox:latest", check=False)
    assert proc.returncode != 0
    assert "lookup registry-1.docker.io" in proc.stderr, proc.stderr


def test_unknown_host_key_is_refused(lab: LabDoc, lab_ssh: LabSsh, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    argv = lab_ssh.argv(lab.servers[0].address, "true")
    argv[argv.index(f"UserKnownHostsFile={lab.ssh.known_hosts}")] = f"UserKnownHostsFile={empty}"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 255
    assert "host key" in proc.stderr.lower()


def test_servers_pull_from_the_registry_and_serve_the_host(
    lab: LabDoc, lab_ssh: LabSsh, pushed: str
) -> None:
    for server in lab.servers:
        ip = server.address
        login_on_server(lab, lab_ssh, ip)
        lab_ssh(ip, "docker", "pull", f"{pushed}:v1", timeout=300)
        label = lab_ssh(
            ip,
            "docker",
            "image",
            "inspect",
            "-f",
            '{{ index .Config.Labels "service" }}',
            f"{pushed}:v1",
        )
        assert label.stdout.strip() == "hello"
        lab_ssh(ip, "docker", "run", "-d", "--name", APP, "-p", "8080:80", f"{pushed}:v1")
        try:
            assert _get(f"http://{ip}:8080/") == (200, "v1")
            assert _get(f"http://{ip}:8080/up") == (200, "OK")
            lab_ssh(ip, "docker", "stop", APP)
            # The app exits on SIGTERM by itself: not killed (137) after docker's grace period.
            code = lab_ssh(ip, "docker", "inspect", "-f", "{{.State.ExitCode}}", APP).stdout
            assert code.strip() != "137", code
        finally:
            lab_ssh(ip, "docker", "rm", "-f", APP)
        assert APP not in lab_ssh(ip, "docker", "ps", "-a", "--format", "{{ .Names }}").stdout


def test_broken_variant_fails_its_health_check(lab: LabDoc, lab_ssh: LabSsh, pushed: str) -> None:
    ip = lab.servers[-1].address
    login_on_server(lab, lab_ssh, ip)
    lab_ssh(ip, "docker", "run", "-d", "--name", APP, "-p", "8081:80", f"{pushed}:broken")
    try:
        assert _get(f"http://{ip}:8081/up") == (500, "down")
        assert _get(f"http://{ip}:8081/") == (200, "broken")
    finally:
        lab_ssh(ip, "docker", "rm", "-f", APP)


def test_registry_refuses_anonymous_pulls(lab: LabDoc, lab_ssh: LabSsh, pushed: str) -> None:
    ip = lab.servers[0].address
    lab_ssh(ip, "docker", "logout", lab.registry.address)
    proc = lab_ssh(ip, "docker", "pull", f"{pushed}:broken", check=False)
    assert proc.returncode != 0
    assert "no basic auth credentials" in proc.stderr or "unauthorized" in proc.stderr


def test_status_shows_the_running_lab(lab: LabDoc) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert LabDoc.from_dict(data["lab"]) == lab
    running = {c["name"] for c in data["containers"] if c["state"] == "running"}
    assert {s.name for s in lab.servers} <= running
    assert REGISTRY_CONTAINER in running
