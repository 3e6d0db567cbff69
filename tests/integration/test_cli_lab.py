"""The commands that complete Kamal's set, through the CLI on the lab's two servers:
`registry login/logout` on the lab registry, `setup` booting an accessory, `app boot` (a given
version, and the latest tag), `proxy reboot` (all at once and `--rolling`) and `proxy boot`,
`remove` removing the accessory, `setup` with a local `localhost:PORT` registry that the servers
pull from through SSH reverse forwards, `build dev` with the classic builder, and
`server bootstrap` as root and as a non-root user.

The tests run in file order and share the module's projects."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    HELLO_IMAGE,
    PROXY_IMAGE,
    PYTHON,
    REPO,
    Project,
    build_proxy_image,
    deploy_yml,
    get,
    lab_pushes,
    make_app,
    out,
    push_images,
    run,
    server_urls,
    write_ssh_config,
)

pytestmark = pytest.mark.integration

PLAIN_REGISTRY_IMAGE = "dockyard-lab/plain-registry:test"


def _get(url: str) -> tuple[int, str]:
    """`get`, with a connection error as the status 0 (and its repr as the body)."""
    try:
        return get(url)
    except OSError as exc:
        return 0, repr(exc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class CliProject(Project):
    def ok(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = self.dockyard(*args, timeout=timeout)
        assert done.returncode == 0, f"dockyard {' '.join(args)}:\n{out(done)}"
        assert "Traceback" not in done.stderr
        return done

    def answers(self) -> list[tuple[int, str]]:
        return [_get(url) for url in server_urls(self.lab)]


def _ssh_section(lab: LabDoc, root: Path, user: str | None = None) -> str:
    ssh_config = write_ssh_config(root, lab)
    return f"""ssh:
  user: {user or lab.ssh.user}
  keys_only: true
  keys:
    - {lab.ssh.key}
  config: {ssh_config}
"""


def _proxy_source() -> str:
    source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE")
    if source:
        return source
    if run(["docker", "image", "inspect", PROXY_IMAGE]).returncode != 0:
        build_proxy_image()
    return PROXY_IMAGE


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dockyard-cli-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def project(lab: LabDoc, workdir: Path) -> CliProject:
    """The hello app on both servers from the lab registry, with an accessory `store` (the
    same image) on the second server."""
    reg = lab.registry.address
    pushes = [
        *lab_pushes(lab, ["v1"], _proxy_source()),
        (f"{HELLO_IMAGE}:v1", f"{reg}/hello-store:v1"),
    ]
    env = push_images(lab, workdir, pushes)  # the host's docker login stays untouched
    root = make_app(workdir / "app", lab)
    (root / "config" / "store.conf").write_text("kept = yes\n")
    (root / "config" / "deploy.yml").write_text(
        deploy_yml(
            lab,
            builder="  driver: docker\n",
            ssh_config=write_ssh_config(workdir, lab),
            extra=f"""deploy_timeout: 15
accessories:
  store:
    image: {reg}/hello-store:v1
    host: {lab.servers[1].address}
    files:
      - config/store.conf:/etc/store.conf
    directories:
      - data:/data
""",
        )
    )
    return CliProject(root, env, lab)


def _docker_auths(lab_ssh: LabSsh, address: str) -> dict[str, object]:
    done = lab_ssh(address, "cat", ".docker/config.json", check=False)
    if done.returncode != 0:
        return {}
    auths: dict[str, object] = json.loads(done.stdout).get("auths", {})
    return auths


def test_registry_login_and_logout_here_and_on_the_servers(
    project: CliProject, lab_ssh: LabSsh
) -> None:
    reg = project.lab.registry.address
    local_config = Path(project.env["DOCKER_CONFIG"]) / "config.json"
    addresses = [s.address for s in project.lab.servers]

    project.ok("registry", "logout")
    assert reg not in json.loads(local_config.read_text()).get("auths", {})
    for address in addresses:
        assert reg not in _docker_auths(lab_ssh, address)

    project.ok("registry", "login", "-L")  # the servers only
    assert reg not in json.loads(local_config.read_text()).get("auths", {})
    for address in addresses:
        assert reg in _docker_auths(lab_ssh, address)

    project.ok("registry", "logout", "-R")  # here only
    project.ok("registry", "login")
    assert reg in json.loads(local_config.read_text()).get("auths", {})
    for address in addresses:
        assert reg in _docker_auths(lab_ssh, address)

    # a wrong password is refused with the host named, and no traceback
    (project.root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=wrong\n")
    try:
        bad = project.dockyard("registry", "login", "-L", "-h", addresses[0])
    finally:
        (project.root / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={project.lab.registry.password}\n"
        )
    assert bad.returncode != 0
    assert addresses[0] in bad.stderr and "login" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_setup_boots_the_accessory_with_the_app(project: CliProject, lab_ssh: LabSsh) -> None:
    project.ok("setup", "-P", "--version", "v1")
    assert project.answers() == [(200, "v1"), (200, "v1")]
    store_host = project.lab.servers[1].address
    state = lab_ssh(store_host, "docker", "inspect", "-f", "{{.State.Status}}", "hello-store")
    assert state.stdout.strip() == "running"
    inside = lab_ssh(store_host, "docker", "exec", "hello-store", "cat", "/etc/store.conf")
    assert inside.stdout == "kept = yes\n"
    assert "Booted store accessory" in lab_ssh(store_host, "cat", ".kamal/hello-audit.log").stdout
    other = project.lab.servers[0].address
    names = lab_ssh(other, "docker", "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "hello-store" not in names  # only on its own host


def _names(lab_ssh: LabSsh, address: str, *extra: str) -> list[str]:
    return lab_ssh(address, "docker", "ps", *extra, "--format", "{{.Names}}").stdout.split()


def test_app_boot_reboots_a_version_and_boots_the_latest_tag(
    project: CliProject, lab_ssh: LabSsh
) -> None:
    first = project.lab.servers[0].address
    before = lab_ssh(first, "docker", "inspect", "-f", "{{.Id}}", "hello-web-v1").stdout.strip()

    done = project.ok("app", "boot", "--version", "v1")
    assert "Booted v1" in done.stderr
    assert project.answers() == [(200, "v1"), (200, "v1")]
    for server in project.lab.servers:
        running = _names(lab_ssh, server.address)
        assert "hello-web-v1" in running
        every = _names(lab_ssh, server.address, "-a")
        assert any(n.startswith("hello-web-v1_replaced_") for n in every)  # the old one, renamed
    after = lab_ssh(first, "docker", "inspect", "-f", "{{.Id}}", "hello-web-v1").stdout.strip()
    assert after != before

    # without --version: the image tagged latest (which setup tagged as v1's image)
    project.ok("app", "boot")
    assert project.answers() == [(200, "v1"), (200, "v1")]
    for server in project.lab.servers:
        running = _names(lab_ssh, server.address)
        assert "hello-web-latest" in running and "hello-web-v1" not in running
        audit = lab_ssh(server.address, "cat", ".kamal/hello-audit.log").stdout
        assert "[web] Booted app version latest" in audit

    project.ok("app", "boot", "--version", "v1")  # back to a versioned container
    for server in project.lab.servers:
        running = _names(lab_ssh, server.address)
        assert "hello-web-v1" in running and "hello-web-latest" not in running


def _proxy_id(lab_ssh: LabSsh, address: str) -> str:
    return lab_ssh(address, "docker", "inspect", "-f", "{{.Id}}", "kamal-proxy").stdout.strip()


def _answers_within(project: CliProject, seconds: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    answers = project.answers()
    while answers != [(200, "v1"), (200, "v1")] and time.monotonic() < deadline:
        time.sleep(0.3)
        answers = project.answers()
    return answers


def test_proxy_reboot_all_at_once_and_rolling_then_boot(
    project: CliProject, lab_ssh: LabSsh
) -> None:
    addresses = [s.address for s in project.lab.servers]
    hooks = project.root / ".kamal" / "hooks"
    hooks.mkdir(exist_ok=True)
    trail = project.root / "hook-trail"
    for name in ("pre-proxy-reboot", "post-proxy-reboot"):
        (hooks / name).write_text(f'#!/bin/sh\necho "{name} $KAMAL_HOSTS" >> {trail}\n')
        (hooks / name).chmod(0o755)
    try:
        ids = {a: _proxy_id(lab_ssh, a) for a in addresses}
        project.ok("proxy", "reboot", "-y")
        rebooted = {a: _proxy_id(lab_ssh, a) for a in addresses}
        assert all(rebooted[a] and rebooted[a] != ids[a] for a in addresses)
        # the new proxy restored the routes from its state volume
        assert _answers_within(project, 10) == [(200, "v1"), (200, "v1")]
        assert trail.read_text().splitlines() == [
            f"pre-proxy-reboot {','.join(addresses)}",
            f"post-proxy-reboot {','.join(addresses)}",
        ]
        trail.unlink()

        project.ok("proxy", "reboot", "--rolling", "-y")
        rolled = {a: _proxy_id(lab_ssh, a) for a in addresses}
        assert all(rolled[a] != rebooted[a] for a in addresses)
        assert _answers_within(project, 10) == [(200, "v1"), (200, "v1")]
        assert trail.read_text().splitlines() == [
            line for a in addresses for line in (f"pre-proxy-reboot {a}", f"post-proxy-reboot {a}")
        ]
        for address in addresses:
            assert "Rebooted proxy" in lab_ssh(address, "cat", ".kamal/hello-audit.log").stdout
    finally:
        for name in ("pre-proxy-reboot", "post-proxy-reboot"):
            (hooks / name).unlink()

    # not confirmed: nothing happens
    unconfirmed = run(
        [str(PYTHON), "-m", "dockyard", "proxy", "reboot"],
        env=project.env,
        cwd=project.root,
        input="n\n",
    )
    assert unconfirmed.returncode == 0 and "Aborted" in unconfirmed.stderr
    assert {a: _proxy_id(lab_ssh, a) for a in addresses} == rolled

    # proxy boot: starts a stopped proxy, leaves a running one alone
    lab_ssh(addresses[0], "docker", "stop", "kamal-proxy")
    assert _get(f"http://{addresses[0]}/")[0] == 0
    project.ok("proxy", "boot")
    assert _proxy_id(lab_ssh, addresses[0]) == rolled[addresses[0]]  # started, not replaced
    assert _proxy_id(lab_ssh, addresses[1]) == rolled[addresses[1]]
    assert _answers_within(project, 10) == [(200, "v1"), (200, "v1")]


def test_remove_removes_the_accessory_too(project: CliProject, lab_ssh: LabSsh) -> None:
    project.ok("remove", "-y")
    store_host = project.lab.servers[1].address
    for server in project.lab.servers:
        every = _names(lab_ssh, server.address, "-a")
        assert not [n for n in every if n.startswith("hello")], every
    assert lab_ssh(store_host, "test", "-e", "hello-store", check=False).returncode == 1
    images = lab_ssh(store_host, "docker", "image", "ls", "-q", "--filter",
                     f"reference={project.lab.registry.address}/hello-store")  # fmt: skip
    assert images.stdout.strip() == ""
    project.ok("remove", "-y")  # twice is fine


# --- a local registry (localhost:PORT) ---------------------------------------------------------


@pytest.fixture(scope="module")
def plain_registry_image(workdir: Path) -> str:
    """A registry image with plain HTTP and no auth (Kamal runs registry:3, which cannot be
    pulled here): the lab registry's binary with another config."""
    context = workdir / "plain-registry"
    context.mkdir()
    (context / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        "    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\n"
        "http:\n  addr: :5000\n"
    )
    (context / "Dockerfile").write_text(
        "FROM dockyard-lab/registry:latest\n"
        "COPY config.yml /etc/docker/registry/plain.yml\n"
        'ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/plain.yml"]\n'
    )
    built = run(
        ["docker", "build", "-q", "-t", PLAIN_REGISTRY_IMAGE, str(context)],
        env={"DOCKER_BUILDKIT": "0"},
    )
    assert built.returncode == 0, built.stderr
    return PLAIN_REGISTRY_IMAGE


@pytest.fixture(scope="module")
def local_project(lab: LabDoc, workdir: Path, plain_registry_image: str) -> Iterator[CliProject]:
    port = _free_port()
    root = make_app(workdir / "local", lab)
    for name in ("Dockerfile", "app.py"):
        (root / name).write_text((REPO / "lab" / "apps" / "hello" / name).read_text())
    (root / "config" / "deploy.yml").write_text(
        deploy_yml(
            lab,
            registry=f"registry:\n  server: localhost:{port}\n",
            builder="""  driver: docker
  args:
    BASE_IMAGE: dockyard-lab/python:base
    VARIANT: local
""",
            ssh_config=write_ssh_config(workdir, lab),
            extra="deploy_timeout: 15\n",
        )
    )
    env = {
        "DOCKER_CONFIG": str(workdir / "docker-local"),
        "DOCKYARD_LOCAL_REGISTRY_IMAGE": plain_registry_image,
    }
    project = CliProject(root, env, lab)
    try:
        yield project
    finally:
        project.dockyard("registry", "remove")
        run(["docker", "rm", "--force", "kamal-docker-registry"])


def test_setup_with_a_local_registry_pulls_through_ssh_tunnels(
    local_project: CliProject, lab_ssh: LabSsh
) -> None:
    lab = local_project.lab
    registry = local_project.root / "config" / "deploy.yml"
    port = int(registry.read_text().split("server: localhost:")[1].split()[0])
    # The proxy image comes from the lab registry, where the servers log in by themselves;
    # the app image only from the local registry, with no login anywhere.
    for server in lab.servers:
        lab_ssh(server.address, "docker", "login", lab.registry.address, "-u",
                lab.registry.username, "--password-stdin", input=lab.registry.password)  # fmt: skip
    local_project.ok("registry", "setup")
    state = run(["docker", "inspect", "-f", "{{.State.Running}} {{.Config.Image}}",
                  "kamal-docker-registry"])  # fmt: skip
    assert state.stdout.split() == ["true", PLAIN_REGISTRY_IMAGE]

    done = local_project.ok("setup", "--version", "lv1", timeout=900)
    assert "Forwarding the local registry" in done.stderr
    assert local_project.answers() == [(200, "local"), (200, "local")]
    for server in lab.servers:
        image = lab_ssh(server.address, "docker", "inspect", "-f", "{{.Config.Image}}",
                        "hello-web-lv1").stdout.strip()  # fmt: skip
        assert image == f"localhost:{port}/hello:lv1"
        assert f"localhost:{port}" not in _docker_auths(lab_ssh, server.address)
        # the forward is closed after the pull
        probe = lab_ssh(server.address, "curl", "-sS", "-m", "3",
                        f"http://127.0.0.1:{port}/v2/", check=False)  # fmt: skip
        assert probe.returncode == 7, (probe.returncode, probe.stdout)  # connection refused
    # the image is in the local registry (pushed by the classic builder)
    tags = _get(f"http://127.0.0.1:{port}/v2/hello/tags/list")
    assert tags[0] == 200 and "lv1" in tags[1]

    local_project.ok("remove", "-y")
    local_project.ok("registry", "remove")
    gone = run(["docker", "ps", "-a", "-q", "--filter", "name=^kamal-docker-registry$"])
    assert gone.stdout.strip() == ""
    refused = local_project.dockyard("registry", "login")
    assert refused.returncode != 0 and "cannot use `registry login`" in refused.stderr


def test_build_dev_tags_the_working_tree_dirty(local_project: CliProject) -> None:
    app = local_project.root / "app.py"
    app.write_text(app.read_text() + "\n# a local edit\n")
    done = local_project.ok("build", "dev", "--version", "dev1", timeout=900)
    port = local_project.root.joinpath("config", "deploy.yml").read_text()
    port_text = port.split("server: localhost:")[1].split()[0]
    tags = done.stdout.split()
    assert tags == [f"localhost:{port_text}/hello:dev1-dirty",
                    f"localhost:{port_text}/hello:latest-dirty"]  # fmt: skip
    for tag in tags:
        label = run(["docker", "image", "inspect", "-f",
                      '{{index .Config.Labels "service"}}', tag])  # fmt: skip
        assert label.returncode == 0 and label.stdout.strip() == "hello"
        run(["docker", "image", "rm", tag])
    # The builder commands: without buildx (Debian's docker.io, this lab) they say what is
    # missing; with it they create and remove Kamal's builder.
    create = local_project.dockyard("build", "create")
    assert "Traceback" not in create.stderr
    if run(["docker", "buildx", "version"]).returncode != 0:
        assert create.returncode == 1 and "buildx plugin" in create.stderr
    else:
        assert create.returncode == 0, create.stderr
        removed = local_project.dockyard("build", "remove")
        assert removed.returncode == 0, removed.stderr


# --- server bootstrap -------------------------------------------------------------------------


def test_server_bootstrap_as_root_installs_nothing(project: CliProject, lab_ssh: LabSsh) -> None:
    first = project.lab.servers[0].address
    before = lab_ssh(first, "sh", "-c", "docker -v; ls -i /usr/bin/docker").stdout
    project.ok("server", "bootstrap")
    # nothing was installed (the servers cannot reach get.docker.com: an install would fail)
    assert lab_ssh(first, "sh", "-c", "docker -v; ls -i /usr/bin/docker").stdout == before
    assert lab_ssh(first, "test", "-d", ".kamal", check=False).returncode == 0


def test_server_bootstrap_for_a_non_root_user_handles_the_docker_group(
    lab: LabDoc, lab_ssh: LabSsh, workdir: Path
) -> None:
    first = lab.servers[0].address
    user = "deployer"
    lab_ssh(first, "sh", "-c",
            f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/sh {user};"
            f" gpasswd -d {user} docker >/dev/null 2>&1;"
            f" mkdir -p /home/{user}/.ssh && cp /root/.ssh/authorized_keys /home/{user}/.ssh/"
            f" && chown -R {user}: /home/{user}/.ssh && chmod 700 /home/{user}/.ssh")  # fmt: skip
    root = workdir / "nonroot"
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / ".kamal").mkdir(exist_ok=True)
    (root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=x\n")
    (root / "config" / "deploy.yml").write_text(
        f"""service: nonroot
image: nonroot
servers:
  - {first}
registry:
  server: {lab.registry.address}
  username: {lab.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
{_ssh_section(lab, workdir, user)}"""
    )
    project = CliProject(root, {}, lab)
    try:
        # not in the docker group and no sudo: a clear error naming the host and what to do
        refused = project.dockyard("server", "bootstrap")
        assert refused.returncode != 0, out(refused)
        assert "Traceback" not in refused.stderr
        assert first in refused.stderr and "docker group" in refused.stderr
        assert f"usermod -aG docker {user}" in refused.stderr
        # no lock left behind after the failure
        home = lab_ssh(first, "ls", "-a", f"/home/{user}/.kamal", check=False).stdout
        assert "lock-nonroot" not in home

        lab_ssh(first, "usermod", "-aG", "docker", user)  # what the hint says, done as root
        project.ok("server", "bootstrap")
        # the new group applies to the next SSH session: docker works for the user now
        ps = project.ok("server", "exec", "docker", "info", "--format", "{{.ServerVersion}}")
        assert ps.stdout.splitlines()[0] == f"App Host: {first}" and ps.stdout.split()[-1]
        assert lab_ssh(first, "test", "-d", f"/home/{user}/.kamal", check=False).returncode == 0
    finally:
        lab_ssh(first, "userdel", "-r", user, check=False)
