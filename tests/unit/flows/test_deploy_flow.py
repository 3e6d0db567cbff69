"""The deploy flows against FakePool: exact commands per host, in order, and the errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard.commands.app import SURVEY_FORMAT
from dockyard.config import Config
from dockyard.flows import deploy as flows
from dockyard.flows.boot import PROXY_STATE_FORMAT, WRITE_PRIVATE_FILE, env_file_written
from dockyard.flows.context import DeployContext, Event
from dockyard.flows.errors import DockerError, HealthCheckError, HookError, RegistryError
from dockyard.flows.memory import CONTAINER_MEMORY_SCRIPT
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote.argv import ArgvLike, raw_args
from dockyard.remote.fanout import HostsFailedError

from .conftest import MakeConfig

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
WEB_ONLY = """service: hello
image: hello
servers:
  - 10.0.0.1
  - 10.0.0.2
registry:
  server: reg.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  run:
    registry: reg.test:5000
    repository: dockyard-proxy
    version: v0.9.2
"""
LABELS = ["--filter", "label=service=hello", "--filter", "label=destination=",
          "--filter", "label=role=web"]  # fmt: skip


def listing(*rows: tuple[str, str, str, str]) -> str:
    """Output of the survey's ``docker ps --all`` (ID, state, role label, name; newest first)."""
    return "".join("\t".join(row) + "\n" for row in rows)


def server(  # type: ignore[no-untyped-def]
    current: str | None = None,
    proxy_running: bool = True,
    health_ok: bool = True,
    stopped: tuple[str, ...] = (),
):
    def script(fake: FakeTransport) -> None:
        def respond(args: list[str]) -> Result | None:
            if args[:2] == ["docker", "ps"] and SURVEY_FORMAT in args:
                rows = [(f"{current}c0ffee1234"[:12], "running", "web", f"hello-web-{current}")]
                rows = rows if current else []
                rows += [
                    (f"{v}dead0000000"[:12], "exited", "web", f"hello-web-{v}") for v in stopped
                ]
                return Result(0, listing(*rows), "")
            if args[:3] == ["sh", "-c", CONTAINER_MEMORY_SCRIPT] and current:
                # the running container's memory from its cgroup (full ID, bytes)
                return Result(0, f"{current}c0ffee1234".ljust(64, "0") + "\t1000000\n", "")
            if args[:2] == ["docker", "inspect"] and args[-1] == "kamal-proxy":
                if proxy_running:
                    return Result(0, "reg.test:5000/dockyard-proxy:v0.9.2\ttrue\tkamal \n", "")
                return Result(1, "", "Error: No such object: kamal-proxy\n")
            if args[:3] == ["docker", "inspect", "-f"]:
                return Result(0, "hello\n", "")
            if args[:2] == ["docker", "ps"] and "--latest" in args:
                return Result(0, f"hello-web-{current}\n" if current else "", "")
            if args[:2] == ["docker", "ps"] and "--format" in args:
                return Result(0, f"hello-web-{current}\n" if current else "", "")
            if args[:2] == ["docker", "run"] and "--name" in args:
                return Result(0, "abcdef1234567890\n", "")
            if args[:4] == ["docker", "exec", "kamal-proxy", "kamal-proxy"] and not health_ok:
                return Result(
                    1, "", "Error: target failed to become healthy within configured timeout\n"
                )
            if args[:2] == ["docker", "logs"] and "kamal-proxy" in args:
                return Result(0, '{"msg":"Healthcheck failed","target":"abcdef123456",'
                                 '"error":"status 500"}\n', "")  # fmt: skip
            if args[:2] == ["docker", "logs"]:
                return Result(0, "booting\nlistening on 80\n", "")
            return None

        fake.responder = respond

    return script


def make_ctx(config: Config, pool: FakePool) -> tuple[DeployContext, list[Event]]:
    events: list[Event] = []
    local = FakeTransport(host="local")
    local.on(["git", "config", "user.email"], Result(0, "dev@example.com\n", ""))
    local.on(["git", "config", "user.name"], Result(0, "Dev\n", ""))
    ctx = DeployContext(
        config=config, pool=pool, reporter=events.append, local=local, clock=lambda: NOW
    )
    return ctx, events


def _shape(args: list[str]) -> list[str]:
    """Commands with random parts and audit lines reduced to something stable."""
    if args[:2] == ["sh", "-c"] and args[2].startswith('mkdir -p "$1" && printf'):
        return ["audit", args[-1].split("] ", 2)[-1]]
    if args[:2] == ["docker", "run"]:
        return ["docker", "run", args[args.index("--name") + 1]]
    if args[:2] == ["docker", "login"]:
        return ["docker", "login", args[2]]
    return args


#: What deploying v2 finishes with: the tag (audit line first), then the prune's audit lines
#: and its two listings.
FINISH_V2 = [
    ["audit", "Tagging reg.test:5000/hello:v2 as the latest image"],
    ["docker", "tag", "reg.test:5000/hello:v2", "reg.test:5000/hello:latest"],
    ["audit", "Pruned containers"],
    ["audit", "Pruned images"],
    ["docker", "ps", "-a", "--filter", "label=service=hello", "--format",
     "{{.ID}}\t{{.State}}\t{{.Image}}"],
    ["docker", "image", "ls", "--filter", "label=service=hello", "--format",
     "{{.ID}} {{.Repository}}:{{.Tag}}"],
]  # fmt: skip


def test_deploy_commands_per_host_in_order(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")
    pool = FakePool(setup=server(current="v1"))
    ctx, _ = make_ctx(config, pool)
    batches = record_batches(ctx)
    result = asyncio.run(flows.deploy(ctx, skip_push=True))
    assert result.hosts == ["10.0.0.1", "10.0.0.2"]
    primary = [_shape(c) for c in pool.transports["10.0.0.1"].commands]
    other = [_shape(c) for c in pool.transports["10.0.0.2"].commands]
    # one batch: the lock, the audit line, what the host has of the image, the survey
    lock = [["mkdir", "-p", ".kamal"], ["mkdir", ".kamal/lock-hello"],
            ["tee", ".kamal/lock-hello/details"]]  # fmt: skip
    pull_check = [
        ["audit", "Pulled image with version v2"],
        ["docker", "image", "inspect", "--format",
         "{{json .RepoDigests}} {{.Config.Labels.service}}", "reg.test:5000/hello:v2"],
    ]  # fmt: skip
    # no registry digest to compare with (tests do not ask the registry): pulled
    pulled = [
        ["docker", "pull", "reg.test:5000/hello:v2"],
        ["docker", "inspect", "-f", "{{ .Config.Labels.service }}", "reg.test:5000/hello:v2"],
    ]
    survey = [
        # no network create: the running proxy is attached to the kamal network
        ["mkdir", "-p", ".kamal/proxy/apps-config"],
        ["docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"],
        # one listing of the app's containers answers for every role
        ["docker", "ps", "--all", *LABELS[:4], "--format", SURVEY_FORMAT],
        # the memory check's figures (flows.memory), in the same batch
        ["grep", "-s", "-H", "", "/proc/meminfo", "/sys/fs/cgroup/memory.max",
         "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
         "/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat"],
        ["sh", "-c", CONTAINER_MEMORY_SCRIPT, "sh", "/sys/fs/cgroup"],
    ]  # fmt: skip
    boot = [
        ["sh", "-c", WRITE_PRIVATE_FILE, "sh", ".kamal/apps/hello/env/roles/web.env"],
        ["audit", "[web] Booted app version v2"],
        ["docker", "run", "hello-web-v2"],
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "hello-web",
         "--target=abcdef123456:80", "--deploy-timeout=30s", "--drain-timeout=30s",
         "--buffer-requests", "--buffer-responses", "--log-request-header=Cache-Control",
         "--log-request-header=Last-Modified", "--log-request-header=User-Agent"],
        ["docker", "stop", "hello-web-v1"],
    ]  # fmt: skip
    # in the stop's round trip: the tag, and the prune's two listings (nothing to remove here)
    finish = FINISH_V2
    release = [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]
    assert primary == lock + pull_check + survey + pulled + boot + finish + release
    assert other == [["mkdir", "-p", ".kamal"], *pull_check, *survey, *pulled, *boot, *finish]
    # the stop and the finish share a round trip on each host; the lock goes alone after
    # both (nothing to remove)
    other_batches = [commands for host, commands in batches if host == "10.0.0.2"]
    assert other_batches[-1] == [["docker", "stop", "hello-web-v1"], *finish]
    assert batches[-1] == ("10.0.0.1", release)
    # the env file went up (mode 0600, in the batch's script, not in argv) before the start
    calls = pool.transports["10.0.0.2"].calls
    written = [c for c in calls if c.argv[:3] == ["sh", "-c", WRITE_PRIVATE_FILE]]
    assert len(written) == 1 and written[0].stdin is not None
    assert b"KAMAL_REGISTRY_PASSWORD" not in written[0].line.encode()
    assert env_file_written([c.argv for c in calls], [], ".kamal/apps/hello/env/roles/web.env")
    assert not pool.transports["10.0.0.2"].uploads
    # the stored credentials worked: no registry login at all
    assert not any(c[:2] == ["docker", "login"] for c in pool.transports["10.0.0.1"].commands)


def test_deploy_on_one_host_prunes_with_the_lock_release(make_config: MakeConfig) -> None:
    """Two round trips after the boot: the stop with the tag and the prune's listings, then
    the removals they call for with the lock's release."""
    config = make_config(ONE_HOST, version="v2")
    containers = "".join(
        f"c{n}\t{'running' if n == 9 else 'exited'}\treg.test:5000/hello:v{n}\n"
        for n in range(9, 0, -1)
    )  # v9 runs, v8..v1 stopped (newest first): retain 5 -> v3, v2, v1 go
    images = "".join(f"i{n} reg.test:5000/hello:v{n}\n" for n in range(1, 10))
    images += "i0 <none>:<none>\nil reg.test:5000/hello:latest\n"

    def setup(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        fake.on(["docker", "ps", "-a", "--filter", "label=service=hello", "--format"],
                Result(0, containers, ""))  # fmt: skip
        fake.on(["docker", "image", "ls"], Result(0, images, ""))
        fake.on(["docker", "rmi", "reg.test:5000/hello:v2"], Result(1, "", "Error: in use\n"))

    pool = FakePool(setup=setup)
    ctx, events = make_ctx(config, pool)
    staged: list[Sequence[int] | None] = []
    batches = record_batches(ctx, staged)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    assert [commands[0] for _, commands in batches[-2:]] == [
        ["docker", "stop", "hello-web-v1"],
        ["docker", "rm", "c3"],
    ]
    # In the stop's batch, the tag and the audit lines go beside the stop (one stage); the
    # prune's listings wait for it, so that they see the old container stopped.
    assert batches[-2][1] == [["docker", "stop", "hello-web-v1"], *FINISH_V2]
    assert staged[-2] == [0, 0, 0, 0, 0, 1, 1]
    assert batches[-1][1] == [
        ["docker", "rm", "c3"],
        ["docker", "rm", "c2"],
        ["docker", "rm", "c1"],
        ["docker", "image", "prune", "--force", "--filter", "label=service=hello"],
        ["docker", "rmi", "reg.test:5000/hello:v1"],  # in the listing's order
        ["docker", "rmi", "reg.test:5000/hello:v2"],
        ["docker", "rmi", "reg.test:5000/hello:v3"],
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]
    assert not ctx.holding_lock
    warnings = [e.text for e in events if e.kind == "warn" and "prune" in e.text]
    assert warnings == ["could not remove image reg.test:5000/hello:v2 (kept, prune goes on): "
                        "Error: in use"]  # fmt: skip


def test_pull_logs_in_once_when_the_registry_asks(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")

    def script(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        fake.on(
            ["docker", "pull"],
            Result(1, "", "Error response from daemon: no basic auth credentials\n"),
            Result(0, "v2: Pulling from hello\n", ""),
        )

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    commands = [_shape(c) for c in pool.transports["10.0.0.2"].commands]
    first_pull = commands.index(["docker", "pull", "reg.test:5000/hello:v2"])
    assert ["audit", "Pulled image with version v2"] in commands[:first_pull]
    assert commands[first_pull : first_pull + 4] == [
        ["docker", "pull", "reg.test:5000/hello:v2"],  # the label check did not run
        ["docker", "login", "reg.test:5000"],
        ["docker", "pull", "reg.test:5000/hello:v2"],
        ["docker", "inspect", "-f", "{{ .Config.Labels.service }}", "reg.test:5000/hello:v2"],
    ]
    login = next(c for c in pool.transports["10.0.0.2"].calls if c.argv[:2] == ["docker", "login"])
    # the password goes on stdin, never into the server's process list
    assert login.argv == ["docker", "login", "reg.test:5000", "-u", "bob", "--password-stdin"]
    assert login.stdin == b"s3cret"


def test_refused_login_is_a_registry_error(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")

    def script(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        fake.on(["docker", "pull"], Result(1, "", "unauthorized: authentication required\n"))
        fake.on(["docker", "login"], Result(1, "", "Error response from daemon: unauthorized\n"))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(Exception) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    text = info.value.render()  # type: ignore[attr-defined]
    assert "registry on 10.0.0.1: docker login to reg.test:5000 was refused" in text
    assert "check registry.username and the password secret" in text


def test_a_failed_audit_line_stops_the_deploy_before_anything_changes(
    make_config: MakeConfig,
) -> None:
    config = make_config(WEB_ONLY, version="v2")

    def script(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        if fake.host == "10.0.0.2":  # the first batch's "Pulled image" audit line fails
            fake.on(["sh", "-c"], Result(1, "", "sh: .kamal/hello-audit.log: Read-only\n"))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(DockerError) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    text = info.value.render()
    assert text.startswith("docker on 10.0.0.2: audit log failed (exit 1)")
    assert "hello-audit.log: Read-only" in text
    for transport in pool.transports.values():
        assert not any(c[:2] in (["docker", "pull"], ["docker", "run"]) for c in transport.commands)
    primary = pool.transports["10.0.0.1"].commands
    assert primary[-2:] == [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]
    assert not ctx.holding_lock


def test_deploy_boots_the_proxy_when_it_is_missing(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v1")
    pool = FakePool(setup=server(proxy_running=False))
    ctx, _ = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    commands = pool.transports["10.0.0.2"].commands
    # (the proxy's run has a $PWD bind mount, so it goes through a shell)
    lines = [" ".join(c) for c in commands]
    proxy = next(i for i, line in enumerate(lines) if "docker run --name kamal-proxy" in line)
    assert "reg.test:5000/dockyard-proxy:v0.9.2 kamal-proxy run" in lines[proxy]
    app = next(i for i, line in enumerate(lines) if line.startswith("docker run --detach"))
    assert proxy < app
    ready = lines.index("docker exec kamal-proxy kamal-proxy list")  # waits for the socket
    assert proxy < ready < app
    assert ["docker", "container", "start", "kamal-proxy"] not in commands  # no container yet
    assert not any(c[:2] == ["docker", "stop"] for c in commands)  # nothing old to stop
    # no proxy to show the kamal network: it is made before the proxy runs
    network = lines.index("docker network create kamal")
    assert network < proxy


def deploy_seeing_proxy(
    make_config: MakeConfig, state: str, *rules: tuple[list[str], Result]
) -> list[list[str]]:
    """Deploy v2 where ``docker inspect kamal-proxy`` answers ``state`` (image, running,
    networks), with extra scripted ``rules``; the primary host's commands."""
    config = make_config(WEB_ONLY, version="v2")

    def setup(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        fake.on(
            ["docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"],
            Result(0, state, ""),
        )
        for prefix, result in rules:
            fake.on(prefix, result)

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    return pool.transports["10.0.0.1"].commands


def test_deploy_makes_the_network_a_running_proxy_is_not_attached_to(
    make_config: MakeConfig,
) -> None:
    commands = deploy_seeing_proxy(
        make_config,
        "reg.test:5000/dockyard-proxy:v0.9.2\ttrue\tbridge \n",
        (["docker", "network", "create", "kamal"],
         Result(1, "", "Error response from daemon: network with name kamal already exists\n")),
    )  # fmt: skip
    network = commands.index(["docker", "network", "create", "kamal"])
    app = next(i for i, c in enumerate(commands) if c[:2] == ["docker", "run"])
    assert network < app  # "already exists" is fine
    assert not any(c[:2] == ["docker", "run"] and "kamal-proxy" in c for c in commands)


def test_a_stopped_proxy_does_not_vouch_for_the_network(make_config: MakeConfig) -> None:
    """A stopped container keeps the name of a network that may have been removed since."""
    commands = deploy_seeing_proxy(
        make_config,
        "reg.test:5000/dockyard-proxy:v0.9.2\tfalse\tkamal \n",
        (["docker", "exec", "kamal-proxy", "kamal-proxy", "list"], Result(0, "", "")),
    )
    network = commands.index(["docker", "network", "create", "kamal"])
    start = commands.index(["docker", "container", "start", "kamal-proxy"])
    assert network < start


def test_health_check_failure_stops_new_container_and_releases_lock(
    make_config: MakeConfig,
) -> None:
    config = make_config(WEB_ONLY, version="v2")
    pool = FakePool(setup=server(current="v1", health_ok=False))
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(Exception) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    text = info.value.args[0] if info.value.args else str(info.value)
    assert "health check on 10.0.0.1: hello-web-v2 did not become healthy" in text
    assert "last probe:" in text and "status 500" in text
    assert "listening on 80" in text
    commands = pool.transports["10.0.0.1"].commands
    assert ["docker", "stop", "hello-web-v2"] in commands
    assert ["docker", "stop", "hello-web-v1"] not in commands
    assert commands[-1] == ["rm", "-r", ".kamal/lock-hello"]
    assert not ctx.holding_lock
    inner = getattr(info.value, "failures", [])
    assert inner and all(isinstance(e, HealthCheckError) for _, e in inner)


def test_pull_failure_names_registry_and_host(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v9")

    def script(fake: FakeTransport) -> None:
        server()(fake)
        fake.on(["docker", "pull"], Result(1, "", "manifest for reg.test:5000/hello:v9 not found"))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(Exception) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    failures = info.value.failures  # type: ignore[attr-defined]
    assert {h for h, _ in failures} == {"10.0.0.1", "10.0.0.2"}
    assert all(isinstance(e, RegistryError) for _, e in failures)
    assert "docker pull reg.test:5000/hello:v9 failed" in info.value.render()  # type: ignore[attr-defined]
    # nothing was booted, and the lock (taken with the first batch) was released
    primary = pool.transports["10.0.0.1"].commands
    assert not any(c[:2] == ["docker", "run"] for c in primary)
    assert primary[-2:] == [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]


def record_batches(
    ctx: DeployContext, stages: list[Sequence[int] | None] | None = None
) -> list[tuple[str, list[list[str]]]]:
    """Wrap ``ctx.batch`` to note each round trip's host and (shaped) commands, and each one's
    stages in ``stages`` when given."""
    batches: list[tuple[str, list[list[str]]]] = []
    original = ctx.batch

    async def batch(host: str, commands: Sequence[ArgvLike], **kw: Any) -> list[Result]:
        batches.append((host, [_shape(raw_args(c)) for c in commands]))
        if stages is not None:
            stages.append(kw.get("stages"))
        return await original(host, commands, **kw)

    ctx.batch = batch  # type: ignore[method-assign]
    return batches


def test_rollback_starts_the_existing_container(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")
    pool = FakePool(setup=server(current="v2", stopped=("v1",)))
    ctx, _ = make_ctx(config, pool)
    batches = record_batches(ctx)
    result = asyncio.run(flows.rollback(ctx, "v1"))
    assert result.rolled_back
    commands = [_shape(c) for c in pool.transports["10.0.0.2"].commands]
    survey = [
        ["docker", "ps", "--all", *LABELS[:4], "--format", SURVEY_FORMAT],
        ["grep", "-s", "-H", "", "/proc/meminfo", "/sys/fs/cgroup/memory.max",
         "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
         "/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat"],
        ["sh", "-c", CONTAINER_MEMORY_SCRIPT, "sh", "/sys/fs/cgroup"],
    ]  # fmt: skip
    deploy = ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "hello-web",
              "--target=v1dead000000:80", "--deploy-timeout=30s", "--drain-timeout=30s",
              "--buffer-requests", "--buffer-responses", "--log-request-header=Cache-Control",
              "--log-request-header=Last-Modified", "--log-request-header=User-Agent"]  # fmt: skip
    # the container's ID comes from the survey: no `docker container ls` after the start, and
    # kamal-proxy's deploy goes with the start; the old container's stop, the audit line and
    # the tag go in one round trip
    finish = [
        ["docker", "stop", "hello-web-v2"],
        ["audit", "Tagging reg.test:5000/hello:v1 as the latest image"],
        ["docker", "tag", "reg.test:5000/hello:v1", "reg.test:5000/hello:latest"],
    ]
    start = [["audit", "[web] Booted app version v1"], ["docker", "start", "hello-web-v1"], deploy]
    assert commands == [["mkdir", "-p", ".kamal"], *survey, *start, *finish]
    assert [b for h, b in batches if h == "10.0.0.2"] == [
        [["mkdir", "-p", ".kamal"], *survey],
        start,
        finish,
    ]
    # two hosts: the lock is released once both are done, on its own
    primary = [b for h, b in batches if h == "10.0.0.1"]
    assert primary[-2:] == [
        finish,
        [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]],
    ]
    assert pool.transports["10.0.0.2"].uploads == []
    assert not ctx.holding_lock


ONE_HOST = WEB_ONLY.replace("  - 10.0.0.2\n", "")


def failed_rollback(
    config: Config, *, failing: tuple[list[str], Result] | None = None, **state: Any
) -> tuple[HostsFailedError, FakePool, DeployContext]:
    """``rollback v1`` from v2 (v1 stopped) on servers scripted by ``server(**state)``, with
    the commands starting with ``failing[0]`` answering ``failing[1]``; it must fail."""

    def script(fake: FakeTransport) -> None:
        server(current="v2", stopped=("v1",), **state)(fake)
        if failing is not None:
            fake.on(*failing)

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(HostsFailedError) as info:
        asyncio.run(flows.rollback(ctx, "v1"))
    return info.value, pool, ctx


def test_rollback_start_failure_deploys_nothing_and_releases_the_lock(
    make_config: MakeConfig,
) -> None:
    error, pool, ctx = failed_rollback(
        make_config(ONE_HOST, version="v2"),
        failing=(["docker", "start"], Result(1, "", "Error: port is already allocated\n")),
    )
    assert "starting hello-web-v1 failed" in error.render()
    commands = pool.transports["10.0.0.1"].commands
    assert not any(c[:2] == ["docker", "exec"] for c in commands)  # no kamal-proxy deploy
    assert ["docker", "stop", "hello-web-v2"] not in commands  # the old one keeps serving
    assert commands[-3:] == [
        ["docker", "stop", "hello-web-v1"],  # as before: the failed start is stopped
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]
    assert not ctx.holding_lock


def test_rollback_on_one_host_stops_tags_and_unlocks_in_one_round_trip(
    make_config: MakeConfig,
) -> None:
    config = make_config(ONE_HOST, version="v2")
    pool = FakePool(setup=server(current="v2", stopped=("v1",)))
    ctx, events = make_ctx(config, pool)
    staged: list[Sequence[int] | None] = []
    batches = record_batches(ctx, staged)
    assert asyncio.run(flows.rollback(ctx, "v1")).rolled_back
    assert [h for h, _ in batches] == ["10.0.0.1"] * 3
    assert batches[-1][1] == [
        ["docker", "stop", "hello-web-v2"],
        ["audit", "Tagging reg.test:5000/hello:v1 as the latest image"],
        ["docker", "tag", "reg.test:5000/hello:v1", "reg.test:5000/hello:latest"],
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]
    # the stop, the audit line and the tag side by side; the lock's release after all of them
    assert staged[-1] == [0, 0, 0, 2, 2]
    assert not ctx.holding_lock
    assert "Releasing the deploy lock..." in [e.text for e in events if e.kind == "step"]
    assert not [e for e in events if e.kind == "warn" and "lock" in e.text]


def test_rollback_failed_stop_is_ignored_and_the_lock_still_goes(make_config: MakeConfig) -> None:
    config = make_config(ONE_HOST, version="v2")

    def script(fake: FakeTransport) -> None:
        server(current="v2", stopped=("v1",))(fake)
        fake.on(["docker", "stop", "hello-web-v2"], Result(1, "", "Error: cannot stop\n"))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    assert asyncio.run(flows.rollback(ctx, "v1")).rolled_back  # as before: a warning at most
    commands = pool.transports["10.0.0.1"].commands
    assert commands[-3:] == [
        ["docker", "tag", "reg.test:5000/hello:v1", "reg.test:5000/hello:latest"],
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]
    assert not ctx.holding_lock


def test_rollback_failed_tag_is_reported_after_the_lock_went(make_config: MakeConfig) -> None:
    error, pool, ctx = failed_rollback(
        make_config(ONE_HOST, version="v2"),
        failing=(["docker", "tag"], Result(1, "", "Error: no such image\n")),
    )
    assert "tagging the latest image failed" in error.render()
    commands = pool.transports["10.0.0.1"].commands
    assert commands[-2:] == [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]
    assert commands.count(["rm", "-r", ".kamal/lock-hello"]) == 1  # released once
    assert not ctx.holding_lock


def test_rollback_health_failure_neither_tags_nor_stops_anywhere(make_config: MakeConfig) -> None:
    """A host whose new container is unhealthy: the other host stops its old container but
    tags nothing (the tag waits for every host), and the lock is released."""
    config = make_config(WEB_ONLY, version="v2")

    def script(fake: FakeTransport) -> None:
        server(current="v2", stopped=("v1",), health_ok=fake.host != "10.0.0.2")(fake)

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(HostsFailedError) as info:
        asyncio.run(flows.rollback(ctx, "v1"))
    assert [host for host, _ in info.value.failures] == ["10.0.0.2"]
    assert "health check on 10.0.0.2: hello-web-v1 did not become healthy" in (info.value.render())
    assert "listening on 80" in info.value.render()  # the container's logs
    for host in ("10.0.0.1", "10.0.0.2"):
        assert not any(c[:2] == ["docker", "tag"] for c in pool.transports[host].commands)
    assert ["docker", "stop", "hello-web-v2"] in pool.transports["10.0.0.1"].commands
    assert ["docker", "stop", "hello-web-v1"] in pool.transports["10.0.0.2"].commands
    assert pool.transports["10.0.0.1"].commands[-1] == ["rm", "-r", ".kamal/lock-hello"]
    assert not ctx.holding_lock


def test_rollback_with_a_post_app_boot_hook_tags_after_it(make_config: MakeConfig) -> None:
    config = make_config(ONE_HOST, version="v2")
    hooks = config.root / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "post-app-boot").write_text("#!/bin/sh\n")
    pool = FakePool(setup=server(current="v2", stopped=("v1",)))
    ctx, _ = make_ctx(config, pool)
    batches = record_batches(ctx)
    assert asyncio.run(flows.rollback(ctx, "v1")).rolled_back
    assert [b for _, b in batches][-3:] == [
        [["docker", "stop", "hello-web-v2"]],
        [["audit", "Tagging reg.test:5000/hello:v1 as the latest image"],
         ["docker", "tag", "reg.test:5000/hello:v1", "reg.test:5000/hello:latest"]],
        [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]],
    ]  # fmt: skip


def test_rollback_with_several_running_containers_asks_which_is_current(
    make_config: MakeConfig,
) -> None:
    """Two containers of the role run: the current one is the newest made from the image
    tagged latest (Kamal's rule), asked in a second round trip; that one is stopped."""
    config = make_config(ONE_HOST, version="v2")

    def script(fake: FakeTransport) -> None:
        server()(fake)
        fake.on(
            ["docker", "ps", "--all"],
            Result(0, listing(
                ("c3c3c3c3c3c3", "running", "web", "hello-web-v3"),
                ("c2c2c2c2c2c2", "restarting", "web", "hello-web-v2"),
                ("c1c1c1c1c1c1", "exited", "web", "hello-web-v1"),
                ("c0c0c0c0c0c0", "running", "worker", "hello-worker-v9"),
            ), ""),
        )  # fmt: skip
        fake.on(["docker", "ps", "--latest"], Result(0, "hello-web-v2\n", ""))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    assert asyncio.run(flows.rollback(ctx, "v1")).rolled_back
    commands = pool.transports["10.0.0.1"].commands
    asked = [c for c in commands if c[:3] == ["docker", "ps", "--latest"]]
    assert asked == [
        ["docker", "ps", "--latest", "--format", "{{.Names}}", *LABELS,
         "--filter", "status=running", "--filter", "status=restarting",
         "--filter", "ancestor=reg.test:5000/hello:latest"],
    ]  # fmt: skip
    # v2 (current) and v3 (running) are stopped; the worker role's container is not ours
    stops = [c for c in commands if c[:2] == ["docker", "stop"]]
    assert stops == [["docker", "stop", "hello-web-v2"], ["docker", "stop", "hello-web-v3"]]
    deploy = next(c for c in commands if c[4:5] == ["deploy"])
    assert "--target=c1c1c1c1c1c1:80" in deploy


def test_rollback_to_a_missing_version_changes_nothing(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")
    pool = FakePool(setup=server(current="v2"))
    ctx, _ = make_ctx(config, pool)
    result = asyncio.run(flows.rollback(ctx, "v0"))
    assert not result.rolled_back
    assert result.missing == ["10.0.0.1 (web)", "10.0.0.2 (web)"]
    for fake in pool.transports.values():
        assert not any(c[:2] in (["docker", "start"], ["docker", "stop"]) for c in fake.commands)


def test_barrier_stops_other_roles_when_primary_fails(make_config: MakeConfig) -> None:
    config = make_config(version="v2")  # web on .1 .2, workers on .3

    pool = FakePool(setup=server(current="v1", health_ok=False))
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(Exception) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    text = info.value.render()  # type: ignore[attr-defined]
    assert "first web container is unhealthy, not booting workers on 10.0.0.3" in text
    workers = pool.transports["10.0.0.3"].commands
    assert not any(c[:2] == ["docker", "run"] for c in workers)


def test_hooks_run_in_kamal_order_with_lock_state(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")
    hooks = config.root / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    names = ["pre-connect", "pre-build", "pre-deploy", "pre-app-boot", "post-app-boot",
             "post-deploy"]  # fmt: skip
    for name in names:
        (hooks / name).write_text("#!/bin/sh\n")
    pool = FakePool(setup=server(current="v1"))
    ctx, _ = make_ctx(config, pool)
    ctx.command = "deploy"
    asyncio.run(flows.deploy(ctx, skip_push=True))
    local = ctx.local
    assert isinstance(local, FakeTransport)
    ran = [(c.argv[-1].rsplit("/", 1)[-1], c.env or {}) for c in local.calls if c.argv[0] == "sh"]
    assert [name for name, _ in ran] == [
        "pre-connect",
        "pre-deploy",
        "pre-app-boot",
        "post-app-boot",
        "post-deploy",
    ]  # no build with -P, so no pre-build
    env = dict(ran)
    assert env["pre-deploy"]["KAMAL_LOCK"] == "true"
    assert env["post-deploy"]["KAMAL_LOCK"] == "false"
    assert "KAMAL_RUNTIME" in env["post-deploy"] and "KAMAL_RUNTIME" not in env["pre-deploy"]
    assert env["pre-app-boot"]["KAMAL_HOSTS"] == "10.0.0.1,10.0.0.2"
    assert env["pre-deploy"]["KAMAL_REGISTRY_PASSWORD"] == "s3cret"
    assert "KAMAL_REGISTRY_PASSWORD" not in env["pre-app-boot"]
    assert env["post-deploy"]["KAMAL_COMMAND"] == "deploy"


def test_failed_pre_deploy_hook_releases_the_lock(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY, version="v2")
    hooks = config.root / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-deploy").write_text("#!/bin/sh\nexit 1\n")
    pool = FakePool(setup=server(current="v1"))
    ctx, _ = make_ctx(config, pool)
    assert isinstance(ctx.local, FakeTransport)
    ctx.local.on(["sh", "-c"], Result(1, "", "database migrations pending\n"))
    with pytest.raises(HookError, match="Hook `pre-deploy` failed"):
        asyncio.run(flows.deploy(ctx, skip_push=True))
    primary = pool.transports["10.0.0.1"].commands
    assert primary[-1] == ["rm", "-r", ".kamal/lock-hello"]
    assert not any(c[:2] == ["docker", "run"] for c in primary)


def test_boot_limit_boots_hosts_in_groups_with_hooks_per_group(make_config: MakeConfig) -> None:
    config = make_config(WEB_ONLY + "boot:\n  limit: 1\n", version="v2")
    hooks = config.root / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    for name in ("pre-app-boot", "post-app-boot"):
        (hooks / name).write_text("#!/bin/sh\n")
    pool = FakePool(setup=server(current="v1"))
    ctx, _ = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    assert isinstance(ctx.local, FakeTransport)
    ran = [
        (c.argv[-1].rsplit("/", 1)[-1], (c.env or {}).get("KAMAL_HOSTS"))
        for c in ctx.local.calls
        if c.argv[0] == "sh"
    ]
    assert ran == [
        ("pre-app-boot", "10.0.0.1"),
        ("post-app-boot", "10.0.0.1"),
        ("pre-app-boot", "10.0.0.2"),
        ("post-app-boot", "10.0.0.2"),
    ]


DIGEST = "sha256:" + "ab" * 32


def test_a_host_with_the_registrys_digest_is_not_pulled_again(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(WEB_ONLY, version="v2")
    asked: list[tuple[object, ...]] = []

    async def tag_digest(*args: object) -> str:
        asked.append(args)
        return DIGEST

    monkeypatch.setattr("dockyard.flows.digest.tag_digest", tag_digest)

    def script(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        # 10.0.0.1 has the tag as the registry has it; 10.0.0.2 an older image of that tag
        held = DIGEST if fake.host == "10.0.0.1" else "sha256:" + "cd" * 32
        fake.on(
            ["docker", "image", "inspect"],
            Result(0, f'["reg.test:5000/hello@{held}"] hello\n', ""),
        )

    pool = FakePool(setup=script)
    ctx, events = make_ctx(config, pool)
    ctx.ask_registry = True
    asyncio.run(flows.deploy(ctx, skip_push=True))
    assert asked == [("reg.test:5000", "hello", "v2", "bob", "s3cret")]
    pulls = {
        host: [c for c in t.commands if c[:2] == ["docker", "pull"]]
        for host, t in pool.transports.items()
    }
    assert pulls == {"10.0.0.1": [], "10.0.0.2": [["docker", "pull", "reg.test:5000/hello:v2"]]}
    # the audit line is written on both, as Kamal does
    for transport in pool.transports.values():
        shapes = [_shape(c) for c in transport.commands]
        assert ["audit", "Pulled image with version v2"] in shapes
        assert ["docker", "run", "hello-web-v2"] in shapes
    assert any("is up to date on 10.0.0.1" in e.text for e in events)


def test_a_present_image_without_the_service_label_is_refused(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(WEB_ONLY, version="v2")

    async def tag_digest(*args: object) -> str:
        return DIGEST

    monkeypatch.setattr("dockyard.flows.digest.tag_digest", tag_digest)

    def script(fake: FakeTransport) -> None:
        server(current="v1")(fake)
        fake.on(
            ["docker", "image", "inspect"], Result(0, f'["reg.test:5000/hello@{DIGEST}"] \n', "")
        )

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)
    ctx.ask_registry = True
    with pytest.raises(RegistryError, match="service"):
        asyncio.run(flows.deploy(ctx, skip_push=True))
    primary = pool.transports["10.0.0.1"].commands
    assert not any(c[:2] == ["docker", "run"] for c in primary)
    assert primary[-1] == ["rm", "-r", ".kamal/lock-hello"]


def test_the_env_file_command_writes_exact_bytes_with_mode_0600(tmp_path: Path) -> None:
    import stat

    from dockyard.flows.boot import _env_file_command
    from dockyard.remote.batch import run_batch
    from dockyard.remote.local import LocalTransport

    cases = {"empty.env": "", "two.env": "A=1\nSECRET=x y\n"}
    commands = []
    for name, text in cases.items():
        command = _env_file_command(str(tmp_path / "roles" / name), text)
        assert command is not None
        commands.append(command)
    results = asyncio.run(run_batch(LocalTransport(), commands))
    assert all(r.ok for r in results), results
    for name, text in cases.items():
        path = tmp_path / "roles" / name
        assert path.read_text() == text
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # text a here-document cannot carry byte for byte goes over SFTP instead
    assert _env_file_command("x.env", "NO_NEWLINE=1") is None
