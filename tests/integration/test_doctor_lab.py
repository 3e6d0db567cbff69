"""`dockyard doctor` on the lab: everything passes after a setup, then each layer is broken on
purpose (SSH reach, SSH auth, Docker permission, registry login, proxy stopped, app_port wrong)
and doctor names that layer and host, says how to fix it and exits non-zero. Lint findings are
warnings only. Tests share one deployed project (module fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
PROXY_VERSION = "v0.9.2"


def _run(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    lab: LabDoc
    ssh_config: Path

    def write(
        self,
        *,
        app_port: int = 80,
        extra_host: str | None = None,
        user: str | None = None,
        key: str | None = None,
        password: str | None = None,
        env: str = "",
    ) -> None:
        lab = self.lab
        hosts = [s.address for s in lab.servers] + ([extra_host] if extra_host else [])
        servers = "\n".join(f"    - {h}" for h in hosts)
        (self.root / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={password or lab.registry.password}\n"
        )
        (self.root / "config" / "deploy.yml").write_text(
            f"""service: hello
image: hello
servers:
  web:
{servers}
registry:
  server: {lab.registry.address}
  username: {lab.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
{env}
deploy_timeout: 20
proxy:
  app_port: {app_port}
  host: hello.test
  healthcheck:
    interval: 1
  run:
    registry: {lab.registry.address}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
ssh:
  user: {user or lab.ssh.user}
  keys_only: true
  keys:
    - {key or lab.ssh.key}
  config: {self.ssh_config}
"""
        )

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return _run([str(PYTHON), "-m", "dockyard", "doctor"], env=self.env, cwd=self.root)

    def dockyard(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(PYTHON), "-m", "dockyard", *args], env=self.env, cwd=self.root)


def _out(proc: subprocess.CompletedProcess[str]) -> str:
    return (proc.stdout + proc.stderr)[-5000:]


def _lines(proc: subprocess.CompletedProcess[str], verdict: str) -> list[str]:
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith(verdict)]


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Project]:
    build = _run([str(PYTHON), "-m", "lab", "build", "proxy"], env={}, cwd=REPO)
    assert build.returncode == 0, build.stderr[-3000:]
    reg = lab.registry.address
    with tempfile.TemporaryDirectory(prefix="dockyard-doctor-") as tmp:
        root = Path(tmp)
        env = {"DOCKER_CONFIG": str(root / "docker")}
        login = _run(
            ["docker", "login", reg, "-u", lab.registry.username, "--password-stdin"],
            env=env,
            input=lab.registry.password,
        )
        assert login.returncode == 0, login.stderr
        for source, ref in (
            ("dockyard-proxy:lab", f"{reg}/dockyard-proxy:{PROXY_VERSION}"),
            ("dockyard-lab/hello:v1", f"{reg}/hello:v1"),
        ):
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
        project = Project(app, env, lab, ssh_config)
        project.write()
        setup = project.dockyard("setup", "-P", "--version", "v1")
        assert setup.returncode == 0, _out(setup)
        try:
            yield project
        finally:
            project.write()
            project.dockyard("remove", "-y")


def test_everything_passes_after_setup(project: Project) -> None:
    project.write()
    done = project.doctor()
    assert done.returncode == 0, _out(done)
    assert _lines(done, "FAIL") == []
    text = done.stdout
    for server in project.lab.servers:
        for needle in ("docker", "disk", "memory", "port 80", "running", "web health"):
            assert any(
                needle in line and server.address in line for line in _lines(done, "PASS")
            ), f"{needle} on {server.address}:\n{text}"
    assert "registry" in text and "logged in from the server" in text
    assert "ready to deploy" in text


def test_lint_findings_are_warnings(project: Project) -> None:
    (project.root / "config" / "vite.json").write_text(
        '{"all": {"sourceCodeDir": "app/frontend"}, "production": {"autoBuild": true}}'
    )
    try:
        project.write(env="env:\n  clear:\n    DEBUG: 'true'\n")
        done = project.doctor()
    finally:
        (project.root / "config" / "vite.json").unlink()
    assert done.returncode == 0, _out(done)
    warnings = "\n".join(_lines(done, "WARN"))
    assert "autoBuild" in warnings and "DEBUG=true" in warnings


def test_an_unreachable_host_fails_the_ssh_layer(project: Project) -> None:
    # The registry's address has no sshd: connection refused.
    project.write(extra_host=project.lab.registry.address.split(":")[0])
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("reach" in line and "connection refused" in line for line in failed), failed
    assert "Traceback" not in done.stderr


def test_a_wrong_key_fails_ssh_auth(project: Project, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    project.write(key=str(key))
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert len([line for line in failed if "auth" in line]) == len(project.lab.servers), failed
    assert "authorized_keys" in done.stdout


def test_a_user_outside_the_docker_group_fails_the_docker_check(
    project: Project, lab_ssh: LabSsh
) -> None:
    server = project.lab.servers[0].address
    lab_ssh(
        server, "sh", "-c",
        "id nodock >/dev/null 2>&1 || useradd -m -s /bin/bash nodock; "
        "mkdir -p ~nodock/.ssh && cp /root/.ssh/authorized_keys ~nodock/.ssh/ && "
        "chown -R nodock ~nodock/.ssh && chmod 700 ~nodock/.ssh",
    )  # fmt: skip
    project.write(user="nodock")
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = [line for line in _lines(done, "FAIL") if server in line]
    assert any("docker" in line and "permission denied" in line.lower() for line in failed), failed
    assert "docker group" in done.stdout, done.stdout


def test_a_wrong_registry_password_fails_login_here_and_on_servers(project: Project) -> None:
    project.write(password="not-the-password")
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = [line for line in _lines(done, "FAIL") if "login" in line]
    assert len(failed) == 1 + len(project.lab.servers), done.stdout
    assert "KAMAL_REGISTRY_PASSWORD" in done.stdout


def test_a_stopped_proxy_fails_the_proxy_layer(project: Project, lab_ssh: LabSsh) -> None:
    project.write()
    server = project.lab.servers[1].address
    lab_ssh(server, "docker", "stop", "kamal-proxy")
    try:
        done = project.doctor()
    finally:
        lab_ssh(server, "docker", "start", "kamal-proxy")
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("running" in line and server in line and "exited" in line for line in failed), failed
    assert "dockyard proxy start" in done.stdout


def test_a_wrong_app_port_fails_the_app_layer(project: Project) -> None:
    project.write(app_port=3000)
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("listens on 80, but proxy.app_port is 3000" in line for line in failed), failed
    assert "set proxy.app_port: 80" in done.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
