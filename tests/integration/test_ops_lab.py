"""The operational commands on the lab's real servers: an accessory booted, restarted and
removed with its files, directories and volume; the deploy lock; app details/logs/exec/version
on a running container started with Kamal's names and labels; prune keeping the retained
versions; server exec."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dockyard.config import Config, load_config
from dockyard.errors import DockyardError, LockHeldError
from dockyard.flows.context import DeployContext, Selection, open_context
from dockyard.flows.ops import accessory, app, lock, prune, server
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    HELLO_IMAGE,
    REPO,
    Project,
    deploy_yml,
    login_on_server,
    make_app,
    push_images,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Path]:
    """A project whose images are in the lab registry: `opslab` (the hello app) and
    `opslab-store` (the same image, used as an accessory)."""
    with tempfile.TemporaryDirectory(prefix="dockyard-ops-") as tmp:
        root = Path(tmp)
        reg = lab.registry.address
        pushes = [(f"{HELLO_IMAGE}:v1", f"{reg}/{name}:v1") for name in ("opslab", "opslab-store")]
        push_images(lab, root, pushes)
        make_app(root, lab, "STORE_TOKEN=tok3n\n")
        (root / "config" / "store.conf").write_text("answer = 42\n")
        yield root


def write_config(root: Path, lab: LabDoc, service: str, extra: str = "") -> Config:
    (root / "config" / "deploy.yml").write_text(
        deploy_yml(lab, service=service, proxy=False, extra=extra)
    )
    return load_config(None, None, root=root, env={}, version="v1")


def with_ctx(
    lab: LabDoc,
    config: Config,
    body: Callable[[DeployContext], Awaitable[T]],
    selection: Selection | None = None,
) -> T:
    async def go() -> T:
        environ = {"DOCKYARD_SSH_KNOWN_HOSTS": lab.ssh.known_hosts}
        async with open_context(config, selection=selection, environ=environ) as ctx:
            return await asyncio.wait_for(body(ctx), 300)

    return asyncio.run(go())


ACCESSORY = """accessories:
  store:
    image: {reg}/opslab-store:v1
    host: {host}
    env:
      clear:
        STORE_MODE: lab
      secret:
        - STORE_TOKEN
    files:
      - config/store.conf:/etc/store.conf
    directories:
      - data:/data
    volumes:
      - opslab-store-vol:/vol
"""


def test_accessory_boot_restart_remove_with_files_directories_and_volume(
    lab: LabDoc, lab_ssh: LabSsh, project: Path
) -> None:
    host = lab.servers[1].address
    config = write_config(
        project, lab, "opslab", ACCESSORY.format(reg=lab.registry.address, host=host)
    )

    def on_host(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return lab_ssh(host, *argv, check=check)

    try:
        assert with_ctx(lab, config, lambda ctx: accessory.boot(ctx, "store")) == []
        state = on_host("docker", "inspect", "-f", "{{.State.Status}}", "opslab-store")
        assert state.stdout.strip() == "running"
        inside = on_host("docker", "exec", "opslab-store", "cat", "/etc/store.conf")
        assert inside.stdout == "answer = 42\n"
        env = on_host("docker", "exec", "opslab-store", "sh", "-c", "echo $STORE_MODE $STORE_TOKEN")
        assert env.stdout.strip() == "lab tok3n"
        # the directory is a bind mount of ~/opslab-store/data; the volume is a named volume
        on_host("docker", "exec", "opslab-store", "sh", "-c", "echo kept > /data/f")
        assert on_host("cat", "opslab-store/data/f").stdout == "kept\n"
        assert on_host("stat", "-c", "%a", "opslab-store/etc/store.conf").stdout.strip() == "755"
        assert (
            on_host(
                "stat", "-c", "%a", ".kamal/apps/opslab/env/accessories/store.env"
            ).stdout.strip()
            == "600"
        )
        mounts = on_host(
            "docker",
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}",
            "opslab-store",
        ).stdout
        assert "opslab-store-vol:/vol" in mounts

        # a second boot skips the host, with a warning
        warnings = with_ctx(lab, config, lambda ctx: accessory.boot(ctx, "store"))
        assert warnings == [f"Skipping booting `store` on {host}, a container already exists"]

        before = on_host("docker", "inspect", "-f", "{{.State.StartedAt}}", "opslab-store").stdout
        with_ctx(lab, config, lambda ctx: accessory.restart(ctx, "store"))
        after = on_host("docker", "inspect", "-f", "{{.State.StartedAt}}", "opslab-store").stdout
        assert after != before
        assert on_host("docker", "exec", "opslab-store", "cat", "/data/f").stdout == "kept\n"

        details = with_ctx(lab, config, lambda ctx: accessory.details(ctx, "store"))
        assert [s.host for s in details] == [host] and "opslab-store" in details[0].text

        audit = on_host("cat", ".kamal/opslab-audit.log").stdout
        assert "Booted store accessory" in audit and "Started store accessory" in audit
    finally:
        with_ctx(lab, config, lambda ctx: accessory.remove(ctx, "store"))
    assert on_host("docker", "ps", "-a", "-q", "--filter", "name=opslab-store").stdout == ""
    assert on_host("test", "-e", "opslab-store", check=False).returncode == 1  # files + data gone
    images = on_host("docker", "image", "ls", "-q", f"{lab.registry.address}/opslab-store")
    assert images.stdout == ""
    # like Kamal, a named volume survives `accessory remove` (data is never dropped silently)
    assert on_host("docker", "volume", "inspect", "opslab-store-vol", check=False).returncode == 0
    on_host("docker", "volume", "rm", "opslab-store-vol")
    # and removing again is fine
    with_ctx(lab, config, lambda ctx: accessory.remove(ctx, "store"))


def test_lock_acquire_status_release(lab: LabDoc, lab_ssh: LabSsh, project: Path) -> None:
    config = write_config(project, lab, "opslock")
    assert with_ctx(lab, config, lock.status) == lock.NO_LOCK
    with_ctx(lab, config, lambda ctx: lock.acquire(ctx, "Testing the lock"))
    try:
        status = with_ctx(lab, config, lock.status)
        assert "Message: Testing the lock" in status and "Version: v1" in status
        # On the server in Kamal's layout, read with the server's base64 as Kamal reads it:
        # the primary host only, .kamal/lock-<service>/details.
        primary, *others = [s.address for s in lab.servers]
        decoded = lab_ssh(primary, "sh", "-c", "base64 -d .kamal/lock-opslock/details").stdout
        assert decoded.startswith("Locked by: ")
        assert "\nVersion: v1\n" in decoded and decoded.rstrip().endswith(
            "Message: Testing the lock"
        )
        for other in others:
            assert "lock-opslock" not in lab_ssh(other, "ls", "-a", ".kamal", check=False).stdout
        with pytest.raises(LockHeldError, match="Testing the lock"):
            with_ctx(lab, config, lambda ctx: lock.acquire(ctx, "second"))
    finally:
        released = with_ctx(lab, config, lock.release)
    assert released.startswith("Released the deploy lock on ")
    assert with_ctx(lab, config, lock.status) == lock.NO_LOCK
    assert with_ctx(lab, config, lock.release) == lock.NO_LOCK


def test_app_details_logs_exec_version_on_a_running_container(
    lab: LabDoc, lab_ssh: LabSsh, project: Path
) -> None:
    host = lab.servers[0].address
    reg = lab.registry.address
    config = write_config(project, lab, "opslab")
    login_on_server(lab, lab_ssh, host)
    lab_ssh(host, "docker", "pull", f"{reg}/opslab:v1")
    lab_ssh(host, "sh", "-c", "docker network create kamal || true")
    lab_ssh(host, "docker", "rm", "-f", "opslab-web-v1", check=False)
    lab_ssh(
        host,
        "docker",
        "run",
        "--detach",
        "--name",
        "opslab-web-v1",
        "--network",
        "kamal",
        "--label",
        "service=opslab",
        "--label",
        "role=web",
        "--label",
        "destination",
        f"{reg}/opslab:v1",
        "sh",
        "-c",
        "echo booted-opslab; exec python3 /app/app.py",
    )
    only = Selection.parse(host)
    try:
        details = with_ctx(lab, config, app.details, only)
        assert [s.title for s in details] == [f"App Host: {host}"]
        assert "opslab-web-v1" in details[0].text
        everywhere = with_ctx(lab, config, app.version)
        assert {s.host: s.text for s in everywhere} == {host: "v1", lab.servers[1].address: ""}
        logs = with_ctx(lab, config, lambda ctx: app.logs(ctx, grep="booted"), only)
        assert "booted-opslab" in logs[0].text
        reused = with_ctx(
            lab,
            config,
            lambda ctx: app.exec_(ctx, ["python3", "-c", "print('in-container')"], reuse=True),
            only,
        )
        assert isinstance(reused, list) and reused[0].text == "in-container\n"
        lab_ssh(host, "rm", "-rf", ".kamal/apps/opslab/env/roles/web.env")
        with pytest.raises(DockyardError, match=r"env/roles/web\.env") as info:
            with_ctx(lab, config, lambda ctx: app.exec_(ctx, ["true"], version="v1"), only)
        assert "deploy first" in info.value.render()
        # what a boot leaves behind: the role's env file
        lab_ssh(
            host,
            "sh",
            "-c",
            "mkdir -p .kamal/apps/opslab/env/roles && touch .kamal/apps/opslab/env/roles/web.env",
        )
        fresh = with_ctx(
            lab,
            config,
            lambda ctx: app.exec_(
                ctx, ["sh", "-c", "echo $KAMAL_X"], env={"KAMAL_X": "new"}, version="v1"
            ),
            only,
        )
        assert isinstance(fresh, list) and fresh[0].text == "new\n"
        containers = with_ctx(lab, config, app.containers, only)
        assert "opslab-web-v1" in containers[0].text
        assert "opslab-web-exec" not in containers[0].text  # the throw-away one is gone
    finally:
        lab_ssh(host, "docker", "rm", "-f", "opslab-web-v1", check=False)


def test_prune_keeps_the_retained_versions(lab: LabDoc, lab_ssh: LabSsh, project: Path) -> None:
    host = lab.servers[1].address
    reg = lab.registry.address
    config = write_config(project, lab, "opsprune")
    login_on_server(lab, lab_ssh, host)
    lab_ssh(host, "docker", "pull", f"{reg}/opslab:v1")
    for n in range(1, 5):
        lab_ssh(
            host,
            "sh",
            "-c",
            f"printf 'FROM {reg}/opslab:v1\\nLABEL service=opsprune n={n}\\n' | "
            f"DOCKER_BUILDKIT=0 docker build -q -t {reg}/opsprune:v{n} -",
        )
        lab_ssh(
            host,
            "docker",
            "create",
            "--name",
            f"opsprune-web-v{n}",
            "--label",
            "service=opsprune",
            "--label",
            "role=web",
            "--label",
            "destination",
            f"{reg}/opsprune:v{n}",
        )
    try:
        removed = with_ctx(
            lab, config, lambda ctx: prune.all_(ctx, retain=2), Selection.parse(host)
        )
        assert sorted(removed[host][2:]) == [f"{reg}/opsprune:v1", f"{reg}/opsprune:v2"]
        names = lab_ssh(
            host,
            "docker",
            "ps",
            "-a",
            "--filter",
            "label=service=opsprune",
            "--format",
            "{{.Names}}",
        ).stdout.split()
        assert sorted(names) == ["opsprune-web-v3", "opsprune-web-v4"]
        tags = lab_ssh(
            host, "docker", "image", "ls", f"{reg}/opsprune", "--format", "{{.Tag}}"
        ).stdout.split()
        assert sorted(tags) == ["v3", "v4"]
        # the base image of another service is untouched
        assert lab_ssh(host, "docker", "image", "ls", "-q", f"{reg}/opslab:v1").stdout.strip()
    finally:
        lab_ssh(
            host,
            "sh",
            "-c",
            "docker ps -aq --filter label=service=opsprune | xargs -r docker rm -f; "
            f"docker image ls -q {reg}/opsprune | xargs -r docker rmi -f",
            check=False,
        )


def test_server_exec_runs_on_every_host_and_audits(
    lab: LabDoc, lab_ssh: LabSsh, project: Path
) -> None:
    config = write_config(project, lab, "opsexec")
    sections = with_ctx(lab, config, lambda ctx: server.exec_(ctx, ["cat", "/etc/hostname"]))
    assert isinstance(sections, list)
    by_host = {s.host: s.text.strip() for s in sections}
    assert set(by_host) == {s.address for s in lab.servers}
    for address, name in by_host.items():
        assert name == lab_ssh(address, "cat", "/etc/hostname").stdout.strip()
        assert (
            "Executed cmd 'cat /etc/hostname'"
            in lab_ssh(address, "tail", "-n", "1", ".kamal/opsexec-audit.log").stdout
        )


def test_cli_lock_and_server_exec_end_to_end(lab: LabDoc, project: Path) -> None:
    """The commands as a user types them: global options, output per host, exit codes."""
    write_config(project, lab, "opscli")
    env = {
        "DOCKYARD_SSH_KNOWN_HOSTS": lab.ssh.known_hosts,
        "VERSION": "v7",
        "PYTHONPATH": str(REPO / "src"),
    }

    def dockyard(*args: str) -> subprocess.CompletedProcess[str]:
        return Project(project, env, lab).dockyard(*args, timeout=300)

    first = lab.servers[0].address
    done = dockyard("server", "exec", "-h", first, "echo", "hi-from", "$(hostname)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"App Host: {first}\nhi-from ")
    assert lab.servers[1].address not in done.stdout

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        details = dockyard("app", "details")
        timings.append(time.perf_counter() - started)
        assert details.returncode == 0, details.stderr
    assert details.stdout.count("App Host: ") == len(lab.servers)
    sys.stdout.write(
        f"\ndockyard app details on {len(lab.servers)} servers: "
        f"{', '.join(f'{t:.2f}' for t in timings)} s\n"
    )

    acquired = dockyard("lock", "acquire", "-m", "cli test")
    assert acquired.returncode == 0, acquired.stderr
    try:
        status = dockyard("lock", "status")
        assert "Version: v7" in status.stdout and "Message: cli test" in status.stdout
        again = dockyard("lock", "acquire", "-m", "second")
        assert again.returncode == 1
        assert "cli test" in again.stderr and "Traceback" not in again.stderr
    finally:
        released = dockyard("lock", "release")
    assert released.returncode == 0, released.stderr
    assert dockyard("lock", "status").stdout.strip() == "There is no deploy lock"


def test_server_bootstrap_leaves_docker_alone_where_it_runs(
    lab: LabDoc, lab_ssh: LabSsh, project: Path
) -> None:
    config = write_config(project, lab, "opsboot")
    identity = (
        "docker info -f '{{.ID}}'; pidof dockerd; readlink -f \"$(command -v docker)\"; "
        "docker version -f '{{.Server.Version}}'"
    )
    before = {}
    for server_info in lab.servers:
        lab_ssh(server_info.address, "rm", "-rf", ".kamal/opsboot-audit.log")
        before[server_info.address] = lab_ssh(server_info.address, "sh", "-c", identity).stdout
    with_ctx(lab, config, server.bootstrap)
    for server_info in lab.servers:
        # the same engine, still running, the same binary: Docker was left alone
        after = lab_ssh(server_info.address, "sh", "-c", identity).stdout
        assert after == before[server_info.address] and len(after.split()) == 4, after
        assert lab_ssh(server_info.address, "test", "-d", ".kamal").returncode == 0
        # the lock taken for bootstrap is gone again
        assert (
            lab_ssh(
                server_info.address, "test", "-e", ".kamal/lock-opsboot", check=False
            ).returncode
            == 1
        )
    assert with_ctx(lab, config, lock.status) == lock.NO_LOCK
