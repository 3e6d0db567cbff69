"""The swap strategy against FakePool: the exact order of pause, stop, start, deploy, resume on
a host; the old version restored when the new one fails; roles without the proxy; other roles
stopped during the swap; rollback by swap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dockyard.cli import main
from dockyard.commands.app import SURVEY_FORMAT
from dockyard.commands.prune import CONTAINER_LIST_FORMAT
from dockyard.config import Config
from dockyard.flows import deploy as flows
from dockyard.flows.context import DeployContext, Event
from dockyard.flows.errors import FlowProxyError, HealthCheckError
from dockyard.flows.swap import BootStrategy, max_pause
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote.fanout import HostsFailedError

from .conftest import MakeConfig

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
CONFIG = """service: hello
image: hello
servers:
  web:
    - 10.0.0.1
  workers:
    hosts:
      - 10.0.0.1
    cmd: sleep infinity
registry:
  server: reg.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
deploy_timeout: 10
drain_timeout: 5
proxy:
  run:
    registry: reg.test:5000
    repository: dockyard-proxy
    version: v0.9.2
"""
PROXY = ["docker", "exec", "kamal-proxy", "kamal-proxy"]


def server(*, deploy_fails: bool = False, paused_ok: bool = True):  # type: ignore[no-untyped-def]
    def script(fake: FakeTransport) -> None:
        deploys: list[str] = []

        def respond(args: list[str]) -> Result | None:
            if args[:2] == ["docker", "inspect"] and args[-1] == "kamal-proxy":
                return Result(0, "reg.test:5000/dockyard-proxy:v0.9.2\ttrue\tkamal \n", "")
            if args[:3] == ["docker", "inspect", "-f"]:
                return Result(0, "hello\n", "")
            if args[:3] == ["docker", "inspect", "--format"]:
                return Result(0, "running\n", "")  # a role without the proxy: its state
            if args[:2] == ["docker", "ps"] and SURVEY_FORMAT in args:
                # the survey's one listing: v1 runs, v0 is stopped, for both roles
                return Result(0, listing(
                    ("cur0c0ffee12", "running", "web", "hello-web-v1"),
                    ("cur1c0ffee12", "running", "workers", "hello-workers-v1"),
                    ("oldc0ffee123", "exited", "web", "hello-web-v0"),
                    ("old1c0ffee12", "exited", "workers", "hello-workers-v0"),
                ), "")  # fmt: skip
            if args[:2] == ["docker", "ps"] and CONTAINER_LIST_FORMAT in args:
                return Result(0, "", "")  # the prune's listing: nothing to remove
            if args[:2] == ["docker", "ps"] and "--format" in args:
                role = next(a.split("=")[-1] for a in args if a.startswith("label=role="))
                versions = ["v1"]
                if "--all" in args:
                    versions = ["v1", "v0"]
                return Result(0, "".join(f"hello-{role}-{v}\n" for v in versions), "")
            if args[:2] == ["docker", "run"]:
                return Result(0, "newc0ffee1234567\n", "")
            if args[:3] == ["docker", "container", "ls"]:
                return Result(0, "oldc0ffee1234567\n", "")
            if args[:5] == [*PROXY, "pause"] and not paused_ok:
                return Result(1, "", "Error: service not found\n")
            if args[:5] == [*PROXY, "deploy"]:
                deploys.append(args[6])
                if deploy_fails and args[6].startswith("--target=newc0ffee"):
                    return Result(
                        1, "", "Error: target failed to become healthy within configured timeout"
                    )
            if args[:2] == ["docker", "logs"]:
                return Result(0, "booting\n", "")
            return None

        fake.responder = respond

    return script


def listing(*rows: tuple[str, str, str, str]) -> str:
    """Output of the survey's ``docker ps --all`` (ID, state, role label, name; newest first)."""
    return "".join("\t".join(row) + "\n" for row in rows)


def make_ctx(config: Config, pool: FakePool) -> tuple[DeployContext, list[Event]]:
    events: list[Event] = []
    local = FakeTransport(host="local")
    local.on(["git", "config", "user.email"], Result(0, "dev@example.com\n", ""))
    local.on(["git", "config", "user.name"], Result(0, "Dev\n", ""))
    ctx = DeployContext(
        config=config, pool=pool, reporter=events.append, local=local, clock=lambda: NOW
    )
    return ctx, events


def _steps(commands: list[list[str]]) -> list[list[str]]:
    """The commands that change something, shortened."""
    out = []
    for args in commands:
        if args[:4] == PROXY:
            out.append([args[4], args[5], *[a for a in args[6:7] if a.startswith("--target")]])
        elif args[:2] in (["docker", "stop"], ["docker", "start"]):
            out.append(args[1:])
        elif args[:2] == ["docker", "run"]:
            out.append(["run", args[args.index("--name") + 1]])
    return out


def _swap(config: Config, **kw: object) -> BootStrategy:
    return BootStrategy.resolve(config, strategy="swap", skip_memory_check=True, **kw)  # type: ignore[arg-type]


def test_swap_order_per_role_primary_first(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v2")
    pool = FakePool(setup=server())
    ctx, _ = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    steps = _steps(pool.transports["10.0.0.1"].commands)
    assert steps == [
        # web: held in the proxy while only one version is in memory
        ["pause", "hello-web"],
        ["stop", "hello-web-v1"],
        ["run", "hello-web-v2"],
        ["deploy", "hello-web", "--target=newc0ffee123:80"],
        ["resume", "hello-web"],
        # workers (no proxy): stop the old one, start the new one
        ["stop", "-t", "5", "hello-workers-v1"],
        ["run", "hello-workers-v2"],
    ]
    pause = next(c for c in pool.transports["10.0.0.1"].commands if c[4:5] == ["pause"])
    assert pause[6:] == ["--drain-timeout=5s", f"--max-pause={max_pause(config, config.roles[0])}s"]


def test_a_failed_health_check_restores_the_old_version(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v2")
    pool = FakePool(setup=server(deploy_fails=True))
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(HostsFailedError) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    steps = _steps(pool.transports["10.0.0.1"].commands)
    assert steps == [
        ["pause", "hello-web"],
        ["stop", "hello-web-v1"],
        ["run", "hello-web-v2"],
        ["deploy", "hello-web", "--target=newc0ffee123:80"],
        ["stop", "hello-web-v2"],  # the new one out
        ["start", "hello-web-v1"],  # the old one back, and in the proxy
        ["deploy", "hello-web", "--target=oldc0ffee123:80"],
        ["resume", "hello-web"],
    ]  # and the workers role is not booted (the primary role failed)
    (host, error), *_ = info.value.failures
    assert host == "10.0.0.1" and isinstance(error, HealthCheckError)
    assert "hello-web-v1 was started again and kamal-proxy resumed" in error.message


def test_other_roles_are_stopped_during_the_swap_and_started_after(
    make_config: MakeConfig,
) -> None:
    config = make_config(CONFIG, version="v2")
    pool = FakePool(setup=server())
    ctx, _ = make_ctx(config, pool)
    ctx.selection = type(ctx.selection).parse(roles="web")
    asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config, stop_other_roles=True)))
    steps = _steps(pool.transports["10.0.0.1"].commands)
    assert steps == [
        ["stop", "-t", "5", "hello-workers-v1"],
        ["pause", "hello-web"],
        ["stop", "hello-web-v1"],
        ["run", "hello-web-v2"],
        ["deploy", "hello-web", "--target=newc0ffee123:80"],
        ["resume", "hello-web"],
        ["start", "hello-workers-v1"],
    ]


def test_swap_without_the_service_in_the_proxy_goes_on_unpaused(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v2")
    pool = FakePool(setup=server(paused_ok=False))
    ctx, events = make_ctx(config, pool)
    ctx.selection = type(ctx.selection).parse(roles="web")
    asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    steps = _steps(pool.transports["10.0.0.1"].commands)
    assert steps[1:] == [
        ["stop", "hello-web-v1"],
        ["run", "hello-web-v2"],
        ["deploy", "hello-web", "--target=newc0ffee123:80"],
    ]
    assert any("swapping without a pause" in e.text for e in events if e.kind == "warn")


def test_a_pause_that_fails_otherwise_changes_nothing(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v2")

    def broken_proxy(fake: FakeTransport) -> None:
        server()(fake)
        fake.on([*PROXY, "pause"], Result(1, "", "Error: connection refused\n"))

    pool = FakePool(setup=broken_proxy)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(HostsFailedError) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    assert isinstance(info.value.failures[0][1], FlowProxyError)
    assert _steps(pool.transports["10.0.0.1"].commands) == [["pause", "hello-web"]]


def test_a_failed_tag_after_the_swap_is_reported_and_the_lock_released(
    make_config: MakeConfig,
) -> None:
    """The swap finishes without the boot tails: its tag-and-prune round trip checks the
    tag too (the path several boot groups, a post-app-boot hook or boot.wait also take)."""
    config = make_config(CONFIG, version="v2")

    def untaggable(fake: FakeTransport) -> None:
        server()(fake)
        fake.on(["docker", "tag"], Result(1, "", "Error: no such image\n"))

    pool = FakePool(setup=untaggable)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(HostsFailedError) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    (host, error), *_ = info.value.failures
    assert host == "10.0.0.1"
    assert "tagging the latest image failed" in error.render()
    commands = pool.transports["10.0.0.1"].commands
    assert any(c[:2] == ["docker", "tag"] for c in commands)
    assert ["rm", "-r", ".kamal/lock-hello"] in commands and not ctx.holding_lock


def test_rollback_by_swap_starts_the_existing_container(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v1")
    pool = FakePool(setup=server())
    ctx, _ = make_ctx(config, pool)
    ctx.selection = type(ctx.selection).parse(roles="web")
    result = asyncio.run(flows.rollback(ctx, "v0", strategy=_swap(config)))
    assert result.rolled_back
    assert _steps(pool.transports["10.0.0.1"].commands) == [
        ["pause", "hello-web"],
        ["stop", "hello-web-v1"],
        ["start", "hello-web-v0"],
        ["deploy", "hello-web", "--target=oldc0ffee123:80"],
        ["resume", "hello-web"],
    ]


def test_a_redeploy_of_the_running_version_swaps_it_too(make_config: MakeConfig) -> None:
    config = make_config(CONFIG, version="v1")  # v1 runs already
    pool = FakePool(setup=server())
    ctx, _ = make_ctx(config, pool)
    ctx.selection = type(ctx.selection).parse(roles="web")
    asyncio.run(flows.deploy(ctx, skip_push=True, strategy=_swap(config)))
    commands = pool.transports["10.0.0.1"].commands
    rename = next(c for c in commands if c[:2] == ["docker", "rename"])
    assert rename[2] == "hello-web-v1" and rename[3].startswith("hello-web-v1_replaced_")
    assert _steps(commands) == [
        ["pause", "hello-web"],
        ["stop", rename[3]],  # the renamed old one stops before the new one starts
        ["run", "hello-web-v1"],
        ["deploy", "hello-web", "--target=newc0ffee123:80"],
        ["resume", "hello-web"],
    ]


def test_the_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("deploy", "rollback"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        for flag in ("--strategy", "--skip-memory-check", "--stop-other-roles"):
            assert flag in out, (command, flag)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(
        "service: s\nimage: s\nservers: [127.0.0.1]\nbuilder:\n  arch: amd64\n"
        "registry:\n  username: u\n  password: p\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "deploy", "-P", "--version", "v1",
         "--strategy", "rolling"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        # this checkout's package, whatever the caller's PYTHONPATH (relative or not) says
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")},
    )  # fmt: skip
    assert proc.returncode == 2  # refused before any connection
    assert "--strategy rolling: unknown boot strategy" in proc.stderr
    assert "parallel, swap" in proc.stderr
    assert "Traceback" not in proc.stderr
