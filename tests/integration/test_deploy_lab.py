"""Dockyard deploys the hello app to the lab's two servers, end to end through the CLI:
setup of v1, deploy of v2 under a request loop with zero failed requests, rollback listing and
rollback to v1, a broken image failing its health check while v1 keeps serving, lock
contention, and `remove` twice leaving nothing behind.

The tests run in file order and share one project (module fixture)."""

from __future__ import annotations

import os
import sys
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
    prepare_app,
    run,
    server_urls,
)
from tests.integration.support import out as _out

pytestmark = pytest.mark.integration

WORKERS = """  workers:
    hosts:
      - {host}
    cmd: python3 /app/app.py
"""
BUILDER = """  driver: docker
  args:
    BASE_IMAGE: dockyard-lab/python:base
    VARIANT: built
"""
EXTRA = """env:
  clear:
    GREETING: hi
  secret:
    - SECRET_TOKEN
deploy_timeout: 10
readiness_delay: 1
"""


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Project]:
    # $DOCKYARD_TEST_PROXY_SOURCE: another local proxy image to deploy (e.g. a known-good
    # build while the working tree's proxy is being changed); default: build dockyard-proxy:lab.
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE") or build_proxy_image()
    with tempfile.TemporaryDirectory(prefix="dockyard-deploy-") as tmp:
        root = Path(tmp)
        app, env, ssh_config = prepare_app(
            lab,
            root,
            hello=("v1", "v2", "broken"),
            proxy=proxy_source,
            secrets="SECRET_TOKEN=t0ps3cret\n",
        )
        for name in ("Dockerfile", "app.py"):  # the hello app, for the build test
            (app / name).write_text((REPO / "lab" / "apps" / "hello" / name).read_text())
        (app / "config" / "deploy.yml").write_text(
            deploy_yml(
                lab,
                roles=WORKERS.format(host=lab.servers[1].address),
                builder=BUILDER,
                ssh_config=ssh_config,
                extra=EXTRA,
            )
        )
        yield Project(app, env, lab)


def test_setup_deploys_v1_to_both_servers(project: Project, lab_ssh: LabSsh) -> None:
    setup = project.dockyard("setup", "-P", "--version", "v1")
    assert setup.returncode == 0, _out(setup)
    assert "Traceback" not in setup.stderr
    assert project.answers() == [(200, "v1"), (200, "v1")]
    reg = project.lab.registry.address
    for server in project.lab.servers:
        names = lab_ssh(server.address, "docker", "ps", "--format", "{{.Names}}").stdout.split()
        assert "hello-web-v1" in names and "kamal-proxy" in names
        labels = lab_ssh(
            server.address, "docker", "inspect", "-f",
            "{{index .Config.Labels \"service\"}} {{index .Config.Labels \"role\"}}",
            "hello-web-v1",
        ).stdout.split()  # fmt: skip
        assert labels == ["hello", "web"]
        image = lab_ssh(
            server.address, "docker", "inspect", "-f", "{{.Config.Image}}", "kamal-proxy"
        ).stdout.strip()
        assert image == f"{reg}/dockyard-proxy:{PROXY_VERSION}"
        env_file = ".kamal/apps/hello/env/roles/web.env"
        mode = lab_ssh(server.address, "stat", "-c", "%a", env_file).stdout.strip()
        assert mode == "600"
        assert "SECRET_TOKEN=t0ps3cret" in lab_ssh(server.address, "cat", env_file).stdout
        env = lab_ssh(server.address, "docker", "exec", "hello-web-v1", "env").stdout.splitlines()
        assert "GREETING=hi" in env and "SECRET_TOKEN=t0ps3cret" in env
        audit = lab_ssh(server.address, "cat", ".kamal/hello-audit.log").stdout
        assert "Pulled image with version v1" in audit
        assert "[web] Booted app version v1" in audit
        assert f"Tagging {reg}/hello:v1 as the latest image" in audit
        # no lock left behind
        assert lab_ssh(server.address, "ls", ".kamal").stdout.find("lock-hello") == -1
    second = project.lab.servers[1].address
    names = lab_ssh(second, "docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert "hello-workers-v1" in names  # the role without the proxy
    listed = lab_ssh(second, "docker", "exec", "kamal-proxy", "kamal-proxy", "list").stdout
    assert "hello-workers" not in listed


def test_deploy_v2_under_load_has_zero_failed_requests(project: Project, lab_ssh: LabSsh) -> None:
    urls = server_urls(project.lab)
    with LoadLoop(urls, ("v1", "v2")) as load:
        started = time.monotonic()
        deploy = project.dockyard("deploy", "-P", "--version", "v2")
        took = time.monotonic() - started
    assert deploy.returncode == 0, _out(deploy)
    assert load.errors == []
    # The load spanned the switch: answers from both versions, and many during the deploy.
    assert load.seen["v1"] > 0 and load.seen["v2"] > 0, load.seen
    assert load.ok_in_block > 10
    print(f"\ndockyard deploy -P (2 servers): {took:.1f}s, {load.ok} requests, 0 errors")
    assert project.answers() == [(200, "v2"), (200, "v2")]
    for server in project.lab.servers:
        running = lab_ssh(server.address, "docker", "ps", "--format", "{{.Names}}").stdout.split()
        assert "hello-web-v2" in running and "hello-web-v1" not in running
        stopped = lab_ssh(
            server.address, "docker", "ps", "-a", "--format", "{{.Names}}"
        ).stdout.split()
        assert "hello-web-v1" in stopped  # kept for rollback


def test_rollback_lists_versions_and_rolls_back_to_v1(project: Project) -> None:
    listed = project.dockyard("rollback")
    assert listed.returncode == 0, _out(listed)
    assert "v1" in listed.stdout and "v2 (current)" in listed.stdout
    missing = project.dockyard("rollback", "nope")
    assert missing.returncode != 0
    assert "not available as a container" in missing.stderr
    urls = server_urls(project.lab)
    with LoadLoop(urls, ("v1", "v2")) as load:
        rollback = project.dockyard("rollback", "v1")
    assert rollback.returncode == 0, _out(rollback)
    assert load.errors == []
    assert load.seen["v2"] > 0 and load.seen["v1"] > 0, load.seen  # before and after
    assert load.ok_in_block > 10
    assert project.answers() == [(200, "v1"), (200, "v1")]


def test_broken_image_fails_health_check_and_v1_keeps_serving(
    project: Project, lab_ssh: LabSsh
) -> None:
    urls = server_urls(project.lab)
    with LoadLoop(urls, ("v1",)) as load:
        broken = project.dockyard("deploy", "-P", "--version", "broken")
    assert broken.returncode != 0
    err = broken.stderr
    assert "Traceback" not in err
    assert "health check on" in err and "hello-web-broken did not become healthy" in err
    assert "the previous version keeps serving" in err
    assert "hint:" in err
    assert load.errors == []
    assert load.ok_in_block > 10  # v1 answered all along the failed deploy
    assert project.answers() == [(200, "v1"), (200, "v1")]
    primary = project.lab.servers[0].address
    assert "lock-hello" not in lab_ssh(primary, "ls", ".kamal").stdout
    for server in project.lab.servers:
        running = lab_ssh(server.address, "docker", "ps", "--format", "{{.Names}}").stdout.split()
        assert "hello-web-broken" not in running
        assert "hello-workers-broken" not in running  # the barrier held the workers back
    second = project.lab.servers[1].address
    running = lab_ssh(second, "docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert "hello-workers-v1" in running


def test_second_deploy_while_locked_fails_clearly(project: Project, lab_ssh: LabSsh) -> None:
    primary = project.lab.servers[0].address
    details = "Locked by: Alice at 2026-11-28T08:00:00Z\nVersion: v9\nMessage: hot fix"
    # Written on the server as Kamal writes it (mkdir, then base64 text), with the server's
    # own base64 rather than our encoder, so the reading side is checked on its own.
    lab_ssh(primary, "mkdir", "-p", ".kamal/lock-hello")
    lab_ssh(primary, "sh", "-c", "base64 > .kamal/lock-hello/details", input=details)
    try:
        locked = project.dockyard("deploy", "-P", "--version", "v2")
    finally:
        lab_ssh(primary, "rm", "-r", ".kamal/lock-hello")
    assert locked.returncode != 0
    assert "Deploy lock already in place" in locked.stderr
    assert "Locked by: Alice" in locked.stderr and "Message: hot fix" in locked.stderr
    assert "Traceback" not in locked.stderr
    assert project.answers() == [(200, "v1"), (200, "v1")]


def test_deploy_builds_pushes_and_deploys_the_image(project: Project, lab_ssh: LabSsh) -> None:
    """Without -P: a local `docker build` (legacy builder: the host has no buildx) with the
    service label, pushed to the lab registry, pulled and booted on both servers."""
    built = project.dockyard("deploy", "--version", "b1")
    assert built.returncode == 0, _out(built)
    assert project.answers() == [(200, "built"), (200, "built")]
    reg = project.lab.registry.address
    label = run(
        ["docker", "inspect", "-f", "{{.Config.Labels.service}}", f"{reg}/hello:b1"]
    ).stdout.strip()
    assert label == "hello"
    second = project.lab.servers[1].address
    running = lab_ssh(second, "docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert "hello-workers-b1" in running and "hello-workers-v1" not in running


def test_remove_leaves_nothing_and_runs_twice(project: Project, lab_ssh: LabSsh) -> None:
    for attempt in range(2):
        removed = project.dockyard("remove", "-y")
        assert removed.returncode == 0, f"attempt {attempt}: {_out(removed)}"
    for server in project.lab.servers:
        names = lab_ssh(
            server.address, "docker", "ps", "-a", "--format", "{{.Names}}"
        ).stdout.split()
        assert not [n for n in names if n.startswith("hello-") or n == "kamal-proxy"]
        images = lab_ssh(
            server.address, "docker", "image", "ls", "--format", "{{.Repository}}"
        ).stdout.split()
        assert not [i for i in images if i.endswith("/hello") or i.endswith("/dockyard-proxy")]
        listing = lab_ssh(server.address, "ls", "-a", ".kamal").stdout.split()
        assert "apps" not in listing or lab_ssh(server.address, "ls", ".kamal/apps").stdout == ""
        assert "proxy" not in listing


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
