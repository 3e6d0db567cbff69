"""`dockyard doctor` on the lab: everything passes after a setup, then each layer is broken on
purpose (SSH reach, SSH auth, Docker permission, registry login, proxy stopped, app_port wrong)
and doctor names that layer and host, says how to fix it and exits non-zero. Lint findings are
warnings only. Tests share one deployed project (module fixture)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    Project,
    build_proxy_image,
    deploy_yml,
    prepare_app,
)
from tests.integration.support import out as _out

pytestmark = pytest.mark.integration


@dataclass
class DoctorProject(Project):
    """The deployed project; `write()` rewrites its config, broken on purpose where asked."""

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
        (self.root / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={password or lab.registry.password}\n"
        )
        (self.root / "config" / "deploy.yml").write_text(
            deploy_yml(
                lab,
                hosts=hosts,
                app_port=app_port,
                proxy_host="hello.test",
                ssh_user=user,
                ssh_key=key,
                ssh_config=self.ssh_config,
                extra=f"{env}deploy_timeout: 20\n",
            )
        )

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return self.dockyard("doctor")


def _lines(proc: subprocess.CompletedProcess[str], verdict: str) -> list[str]:
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith(verdict)]


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[DoctorProject]:
    build_proxy_image()
    with tempfile.TemporaryDirectory(prefix="dockyard-doctor-") as tmp:
        root = Path(tmp)
        app, env, ssh_config = prepare_app(lab, root, hello=("v1",))
        project = DoctorProject(app, env, lab, ssh_config)
        project.write()
        setup = project.dockyard("setup", "-P", "--version", "v1")
        assert setup.returncode == 0, _out(setup)
        try:
            yield project
        finally:
            project.write()
            project.dockyard("remove", "-y")


def test_everything_passes_after_setup(project: DoctorProject) -> None:
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


def test_lint_findings_are_warnings(project: DoctorProject) -> None:
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


def test_an_unreachable_host_fails_the_ssh_layer(project: DoctorProject) -> None:
    # The registry's address has no sshd: connection refused.
    project.write(extra_host=project.lab.registry.address.split(":")[0])
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("reach" in line and "connection refused" in line for line in failed), failed
    assert "Traceback" not in done.stderr


def test_a_wrong_key_fails_ssh_auth(project: DoctorProject, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    project.write(key=str(key))
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert len([line for line in failed if "auth" in line]) == len(project.lab.servers), failed
    assert "authorized_keys" in done.stdout


def test_a_user_outside_the_docker_group_fails_the_docker_check(
    project: DoctorProject, lab_ssh: LabSsh
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


def test_the_local_layer_names_a_missing_secret_and_a_broken_config(
    project: DoctorProject,
) -> None:
    project.write(env="env:\n  secret:\n    - APP_SECRET\n")
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("secrets" in line and "APP_SECRET" in line for line in failed), failed
    config = project.root / "config" / "deploy.yml"
    config.write_text(config.read_text().replace("servers:", "servrs:"))
    broken = project.doctor()
    assert broken.returncode == 1, _out(broken)
    (line,) = _lines(broken, "FAIL")
    assert "config" in line and "servrs" in line, broken.stdout
    assert "Traceback" not in broken.stderr


def test_a_wrong_registry_password_fails_login_here_and_on_servers(project: DoctorProject) -> None:
    project.write(password="not-the-password")
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = [line for line in _lines(done, "FAIL") if "login" in line]
    assert len(failed) == 1 + len(project.lab.servers), done.stdout
    assert "KAMAL_REGISTRY_PASSWORD" in done.stdout


def test_a_stopped_proxy_fails_the_proxy_layer(project: DoctorProject, lab_ssh: LabSsh) -> None:
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


def test_a_wrong_app_port_fails_the_app_layer(project: DoctorProject) -> None:
    project.write(app_port=3000)
    done = project.doctor()
    assert done.returncode == 1, _out(done)
    failed = _lines(done, "FAIL")
    assert any("listens on 80, but proxy.app_port is 3000" in line for line in failed), failed
    assert "set proxy.app_port: 80" in done.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
