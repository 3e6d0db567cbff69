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
from tests.integration.support import (
    HELLO_IMAGE,
    PROXY_IMAGE,
    Project,
    build_proxy_image,
    deploy_yml,
    lab_pushes,
    make_app,
    out,
    push_images,
    run,
)

pytestmark = pytest.mark.integration

SERVICE = "hygiene"
#: Built in this order, so their creation times are in this order too.
TAGS = ("v0", "v1", "v2", "v3", "v4", "v5")


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}:\n{out(proc, 4000)}"
    return proc


@dataclass
class HygieneProject(Project):
    def registry(self) -> RegistryClient:
        reg = self.lab.registry
        return RegistryClient(
            reg.address, reg.username, reg.password, ca_file=self.lab.registry.ca_cert
        )


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[HygieneProject]:
    reg = lab.registry.address
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE", PROXY_IMAGE)
    if run(["docker", "image", "inspect", proxy_source]).returncode != 0:
        build_proxy_image()
    with tempfile.TemporaryDirectory(prefix="dockyard-hygiene-") as tmp:
        root = Path(tmp)
        pairs = lab_pushes(lab, (), proxy_source)
        pairs.append((f"{HELLO_IMAGE}:v1", f"{reg}/{SERVICE}-cache:v1"))
        docker_env = {**push_images(lab, root, pairs), "DOCKER_BUILDKIT": "0"}
        for n, tag in enumerate(TAGS):  # distinct images (a label each), oldest first
            ref = f"{reg}/{SERVICE}:{tag}"
            dockerfile = f"FROM {HELLO_IMAGE}:v1\nLABEL service={SERVICE} test.n={n}\n"
            _ok(run(["docker", "build", "-q", "-t", ref, "-"], env=docker_env, input=dockerfile))
            _ok(run(["docker", "push", ref], env=docker_env))
        app = make_app(root / "app", lab)
        (app / "config" / "deploy.yml").write_text(
            deploy_yml(
                lab,
                service=SERVICE,
                extra=f"""deploy_timeout: 10
readiness_delay: 1
accessories:
  cache:
    image: {reg}/{SERVICE}-cache:v1
    host: {lab.servers[1].address}
""",
            )
        )
        env = {
            "DOCKYARD_SSH_KNOWN_HOSTS": lab.ssh.known_hosts,
            "SSL_CERT_FILE": lab.registry.ca_cert,  # the deployer trusts the lab registry's CA
            "DOCKER_CONFIG": str(root / "docker"),
        }
        try:
            yield HygieneProject(app, env, lab)
        finally:
            HygieneProject(app, env, lab).dockyard("remove", "-y", timeout=300)
            for ref in (*(f"{reg}/{SERVICE}:{t}" for t in TAGS), f"{reg}/{SERVICE}-cache:v1"):
                run(["docker", "rmi", ref])


@pytest.fixture(scope="module")
def deployed(project: HygieneProject) -> HygieneProject:
    """The project set up once per module (v1 on both servers, the proxy, the accessory), so
    every test that needs a deployed app can also run alone (`-k stats`)."""
    _ok(project.dockyard("setup", "-P", "--version", "v1"))
    return project


def _log_config(lab_ssh: LabSsh, host: str, container: str) -> dict[str, object]:
    text = lab_ssh(
        host, "docker", "inspect", "-f", "{{json .HostConfig.LogConfig}}", container
    ).stdout
    return dict(json.loads(text))


def test_deployed_containers_rotate_their_logs(deployed: HygieneProject, lab_ssh: LabSsh) -> None:
    project = deployed
    for server in project.lab.servers:
        for container in (f"{SERVICE}-web-v1", "kamal-proxy"):
            log_config = _log_config(lab_ssh, server.address, container)
            assert log_config["Config"] == {"max-size": "10m", "max-file": "5"}, container
            assert log_config["Type"] == "json-file"
    # the accessory booted by setup too
    cache = _log_config(lab_ssh, project.lab.servers[1].address, f"{SERVICE}-cache")
    assert cache["Config"] == {"max-size": "10m", "max-file": "5"}


def test_registry_prune_keeps_latest_and_deployed_and_retained_tags(
    deployed: HygieneProject, lab_ssh: LabSsh
) -> None:
    project = deployed  # v1 running: the deploys below leave it stopped (retained)
    for version in ("v2", "v3"):
        _ok(project.dockyard("deploy", "-P", "--version", version))
    # v1 and v2 stopped (retained for rollback), v3 running; latest points at v3
    reg = project.lab.registry.address
    docker_env = {"DOCKER_CONFIG": project.env["DOCKER_CONFIG"]}
    _ok(run(["docker", "tag", f"{reg}/{SERVICE}:v3", f"{reg}/{SERVICE}:latest"]))
    _ok(run(["docker", "push", f"{reg}/{SERVICE}:latest"], env=docker_env))
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


def test_server_stats_json_reads_both_servers(deployed: HygieneProject) -> None:
    project = deployed  # the app's and the proxy's containers run on both servers
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


def test_bootstrap_log_rotation_merges_daemon_json(
    project: HygieneProject, lab_ssh: LabSsh
) -> None:
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
