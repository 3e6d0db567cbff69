"""Disk hygiene and server stats on the lab's real servers and registry: the containers of a
setup (app, proxy and accessory) rotate their logs; `registry prune` deletes old tags through
the registry API but keeps latest and every version a server runs or retains; `server stats
--json` reads both servers; `server bootstrap --log-rotation` merges daemon.json."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.registry_api import RegistryClient
from lab.state import LabDoc
from lab.testing import LabSsh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
PROXY_VERSION = "v0.9.2"
SERVICE = "hygiene"
#: Built in this order, so their creation times are in this order too.
TAGS = ("v0", "v1", "v2", "v3", "v4", "v5")


def _run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    lab: LabDoc

    def dockyard(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(PYTHON), "-m", "dockyard", *args], env=self.env, cwd=self.root, timeout=timeout
        )

    def registry(self) -> RegistryClient:
        reg = self.lab.registry
        return RegistryClient(
            reg.address, reg.username, reg.password, ca_file=self.lab.registry.ca_cert
        )


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Project]:
    reg = lab.registry.address
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE", "dockyard-proxy:lab")
    if _run(["docker", "image", "inspect", proxy_source]).returncode != 0:
        _ok(_run([str(PYTHON), "-m", "lab", "build", "proxy"], cwd=REPO, timeout=1800))
    with tempfile.TemporaryDirectory(prefix="dockyard-hygiene-") as tmp:
        root = Path(tmp)
        docker_env = {"DOCKER_CONFIG": str(root / "docker"), "DOCKER_BUILDKIT": "0"}
        _ok(
            _run(
                ["docker", "login", reg, "-u", lab.registry.username, "--password-stdin"],
                env=docker_env,
                input=lab.registry.password,
            )
        )
        _ok(_run(["docker", "tag", proxy_source, f"{reg}/dockyard-proxy:{PROXY_VERSION}"]))
        _ok(_run(["docker", "push", f"{reg}/dockyard-proxy:{PROXY_VERSION}"], env=docker_env))
        _ok(_run(["docker", "tag", "dockyard-lab/hello:v1", f"{reg}/{SERVICE}-cache:v1"]))
        _ok(_run(["docker", "push", f"{reg}/{SERVICE}-cache:v1"], env=docker_env))
        for n, tag in enumerate(TAGS):  # distinct images (a label each), oldest first
            ref = f"{reg}/{SERVICE}:{tag}"
            dockerfile = f"FROM dockyard-lab/hello:v1\nLABEL service={SERVICE} test.n={n}\n"
            _ok(_run(["docker", "build", "-q", "-t", ref, "-"], env=docker_env, input=dockerfile))
            _ok(_run(["docker", "push", ref], env=docker_env))
        app = root / "app"
        (app / "config").mkdir(parents=True)
        (app / ".kamal").mkdir()
        (app / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={lab.registry.password}\n"
        )
        servers = "\n".join(f"    - {s.address}" for s in lab.servers)
        (app / "config" / "deploy.yml").write_text(
            f"""service: {SERVICE}
image: {SERVICE}
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
deploy_timeout: 10
readiness_delay: 1
proxy:
  app_port: 80
  healthcheck:
    interval: 1
  run:
    registry: {reg}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
accessories:
  cache:
    image: {reg}/{SERVICE}-cache:v1
    host: {lab.servers[1].address}
ssh:
  user: {lab.ssh.user}
  keys_only: true
  keys:
    - {lab.ssh.key}
"""
        )
        env = {
            "DOCKYARD_SSH_KNOWN_HOSTS": lab.ssh.known_hosts,
            "SSL_CERT_FILE": lab.registry.ca_cert,  # the deployer trusts the lab registry's CA
            "DOCKER_CONFIG": str(root / "docker"),
        }
        try:
            yield Project(app, env, lab)
        finally:
            Project(app, env, lab).dockyard("remove", "-y", timeout=300)
            for ref in (*(f"{reg}/{SERVICE}:{t}" for t in TAGS), f"{reg}/{SERVICE}-cache:v1"):
                _run(["docker", "rmi", ref])


def _log_config(lab_ssh: LabSsh, host: str, container: str) -> dict[str, object]:
    text = lab_ssh(
        host, "docker", "inspect", "-f", "{{json .HostConfig.LogConfig}}", container
    ).stdout
    return dict(json.loads(text))


def test_deployed_containers_rotate_their_logs(project: Project, lab_ssh: LabSsh) -> None:
    _ok(project.dockyard("setup", "-P", "--version", "v1"))
    for server in project.lab.servers:
        for container in (f"{SERVICE}-web-v1", "kamal-proxy"):
            log_config = _log_config(lab_ssh, server.address, container)
            assert log_config["Config"] == {"max-size": "10m", "max-file": "5"}, container
            assert log_config["Type"] == "json-file"
    # the accessory booted by setup too
    cache = _log_config(lab_ssh, project.lab.servers[1].address, f"{SERVICE}-cache")
    assert cache["Config"] == {"max-size": "10m", "max-file": "5"}


def test_registry_prune_keeps_latest_and_deployed_and_retained_tags(
    project: Project, lab_ssh: LabSsh
) -> None:
    for version in ("v2", "v3"):
        _ok(project.dockyard("deploy", "-P", "--version", version))
    # v1 and v2 stopped (retained for rollback), v3 running; latest points at v3
    reg = project.lab.registry.address
    docker_env = {"DOCKER_CONFIG": project.env["DOCKER_CONFIG"]}
    _ok(_run(["docker", "tag", f"{reg}/{SERVICE}:v3", f"{reg}/{SERVICE}:latest"]))
    _ok(_run(["docker", "push", f"{reg}/{SERVICE}:latest"], env=docker_env))
    api = project.registry()
    assert sorted(api.tags(SERVICE)) == sorted((*TAGS, "latest"))

    dry = _ok(project.dockyard("registry", "prune", "--keep", "1", "--dry-run"))
    assert "would delete" in dry.stdout
    assert sorted(api.tags(SERVICE)) == sorted((*TAGS, "latest"))

    pruned = _ok(project.dockyard("registry", "prune", "--keep", "1"))
    # v0 (never deployed) and v4 (older than the newest, v5) go; v1/v2 are retained on the
    # servers, v3 runs, v5 is the newest, latest stays
    assert sorted(api.tags(SERVICE)) == ["latest", "v1", "v2", "v3", "v5"], pruned.stdout
    assert "garbage" in pruned.stderr
    assert f"deployed on {project.lab.servers[0].address}" in pruned.stdout

    # once the servers no longer retain v1, the next prune deletes it
    _ok(project.dockyard("prune", "containers", "--retain", "1"))
    for server in project.lab.servers:
        names = lab_ssh(server.address, "docker", "ps", "-a", "--format", "{{.Names}}").stdout
        assert f"{SERVICE}-web-v1" not in names.split()
    _ok(project.dockyard("registry", "prune", "--keep", "1"))
    assert sorted(api.tags(SERVICE)) == ["latest", "v2", "v3", "v5"]
    # the servers can still roll back to v2
    _ok(project.dockyard("rollback", "v2"))


def test_server_stats_json_reads_both_servers(project: Project) -> None:
    proc = _ok(project.dockyard("server", "stats", "--json"))
    data = json.loads(proc.stdout)
    hosts = {h["host"]: h for h in data["hosts"]}
    assert sorted(hosts) == sorted(s.address for s in project.lab.servers)
    for host in hosts.values():
        assert host["error"] is None
        assert host["cpus"] >= 1
        assert host["load"] is not None and all(v >= 0 for v in host["load"])
        assert host["cpu_percent"] is not None and 0 <= host["cpu_percent"] <= 100
        memory = host["memory"]
        assert 0 < memory["used"] < memory["limit"]
        disks = {d["label"]: d for d in host["disks"]}
        assert host["docker_root"] == "/var/lib/docker"
        for label in ("/", "docker"):
            assert 0 < disks[label]["used"] < disks[label]["total"]
        names = [c["name"] for c in host["containers"]]
        assert "kamal-proxy" in names
        assert any(n.startswith(f"{SERVICE}-web-") for n in names)
        for container in host["containers"]:
            assert container["mem_used"] is not None and container["mem_used"] > 0
    table = _ok(project.dockyard("server", "stats"))
    assert project.lab.servers[0].address in table.stdout
    assert "kamal-proxy" in table.stdout


def test_bootstrap_log_rotation_merges_daemon_json(project: Project, lab_ssh: LabSsh) -> None:
    # --no-restart: the lab's dockerd runs under the server's init, which a restart would end
    host = project.lab.servers[0].address
    daemon_json = "/etc/docker/daemon.json"
    before = lab_ssh(host, "cat", daemon_json, check=False)
    original = before.stdout if before.returncode == 0 else None
    seeded = {"debug": False, "log-opts": {"max-size": "20m"}}
    lab_ssh(host, "tee", daemon_json, input=json.dumps(seeded))
    try:
        first = _ok(
            project.dockyard("server", "bootstrap", "--log-rotation", "--no-restart", "-h", host)
        )
        assert "added log-opts max-file=5; restart dockerd to apply" in first.stdout
        merged = json.loads(lab_ssh(host, "cat", daemon_json).stdout)
        assert merged == {"debug": False, "log-opts": {"max-size": "20m", "max-file": "5"}}
        backup = json.loads(lab_ssh(host, "cat", daemon_json + ".dockyard-bak").stdout)
        assert backup == seeded
        again = _ok(
            project.dockyard("server", "bootstrap", "--log-rotation", "--no-restart", "-h", host)
        )
        assert "log rotation already set, not changed (dockerd not restarted)" in again.stdout
        # the engine is untouched and still answers
        lab_ssh(host, "docker", "info", "--format", "{{.LoggingDriver}}")
    finally:
        if original is None:
            lab_ssh(host, "rm", "-f", daemon_json, daemon_json + ".dockyard-bak", check=False)
        else:
            lab_ssh(host, "tee", daemon_json, input=original, check=False)
            lab_ssh(host, "rm", "-f", daemon_json + ".dockyard-bak", check=False)
