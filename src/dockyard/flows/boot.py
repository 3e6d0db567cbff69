"""Booting the app on the servers: the per-host survey, the proxy boot, one role on one host,
the primary-role barrier, boot groups, and tagging the latest image.

Round trips per host for a deploy: one survey batch (network, proxy state, current and running
versions, name clash), the env-file upload, one batch to start the new container, the proxy
deploy (which waits for health), and one batch to stop the old container.

The survey asks docker once for the app's containers (``list_app_containers``: ID, state, role,
name, newest first) and sorts them out here; only a role with several running containers costs
a second question (Kamal's "made from the image tagged latest", :func:`settle`). A rollback
(``start_existing``) knows the container's ID from it, so its start and its kamal-proxy deploy
share a round trip, and with :class:`Tail` its tag (and unlock) rides with the last stop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import proxy as proxy_commands
from dockyard.commands import server as server_commands
from dockyard.commands.argv import Argv, docker
from dockyard.flows import prepare
from dockyard.flows.context import DeployContext
from dockyard.flows.errors import DockerError, FlowProxyError, HealthCheckError
from dockyard.flows.memory import (
    HostMemory,
    container_memory,
    memory_queries,
    parse_host_memory,
    parse_stats,
    stats_command,
)
from dockyard.remote.result import Result

if TYPE_CHECKING:
    from dockyard.config.models import Role

HEALTH_LOG_LINES = 15


class Barrier:
    """Kamal's primary-role health barrier: other roles wait until the first primary container
    is healthy, and give up when it failed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._healthy: bool | None = None

    def open(self) -> None:
        if self._healthy is None:
            self._healthy = True
        self._event.set()

    def close(self) -> bool:
        """Mark it failed; True for the first closer (who prints the logs)."""
        first = self._healthy is None
        if first:
            self._healthy = False
        self._event.set()
        return first

    async def wait(self) -> bool:
        await self._event.wait()
        return bool(self._healthy)


@dataclass
class RoleSurvey:
    """What a role looks like on a host before the boot."""

    current: str | None = None
    running: list[str] = field(default_factory=list)
    clash: bool = False
    all_versions: list[str] = field(default_factory=list)
    #: Container IDs by version (the newest container of each name), from the survey.
    ids: dict[str, str] = field(default_factory=dict)
    #: Running or restarting versions, newest first. With more than one, the current one is
    #: the newest made from the image tagged latest (:func:`settle`), else the newest.
    active: list[str] = field(default_factory=list)


@dataclass
class HostSurvey:
    proxy_image: str | None = None
    proxy_running: bool = False
    roles: dict[str, RoleSurvey] = field(default_factory=dict)
    #: The host's memory (cgroup, meminfo, docker stats) when asked for (flows.memory).
    memory: HostMemory | None = None
    #: False when the survey could not tell that the kamal network exists (then
    #: :func:`ensure_network` makes it before anything joins it).
    network_ready: bool = True
    #: Running containers of the app whose memory the cgroup files did not give (asked of
    #: ``docker stats`` by :func:`settle`).
    memory_missing: list[str] = field(default_factory=list)


#: kamal-proxy's image, whether it runs, and its networks: a running proxy container attached
#: to the kamal network proves the network exists, so the survey need not create it.
PROXY_STATE_FORMAT = (
    "{{.Config.Image}}\t{{.State.Running}}\t"
    "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}"
)


async def survey(
    ctx: DeployContext,
    host: str,
    roles: Sequence[Role],
    version: str,
    *,
    proxy: bool = False,
    network: bool = False,
    memory: bool = False,
) -> HostSurvey:
    """One round trip: (network create,) (proxy state,) the app's containers, from which
    each role's current version, running versions, every version and whether
    ``<prefix>-<version>`` exists (, the memory figures for the memory check). The commands
    run side by side on the host. A second round trip only when a role has several running
    containers (:func:`settle`)."""
    commands = survey_commands(ctx, roles, proxy=proxy, network=network, memory=memory)
    results = await ctx.batch(host, commands, stop_on_error=False, check=False, parallel=True)
    found = parse_survey(
        ctx, host, roles, version, commands, results, proxy=proxy, network=network, memory=memory
    )
    await settle(ctx, host, found)
    return found


_NONE = RoleSurvey()


def _unsettled(ctx: DeployContext, state: HostSurvey) -> list[Role]:
    return [role for role in ctx.config.roles if len(state.roles.get(role.name, _NONE).active) > 1]


async def settle(ctx: DeployContext, host: str, state: HostSurvey) -> None:
    """Kamal's current container when a role has several running (or restarting) ones: the
    newest made from the image tagged latest, else the newest (already in ``current``); and
    ``docker stats`` of the containers whose memory the survey could not read. The common
    case, one running container with its cgroup files, needs no question."""
    roles = _unsettled(ctx, state)
    missing = state.memory_missing  # set only with the memory figures
    if not roles and not missing:
        return
    config = ctx.config
    queries = [
        app_commands._latest_container(config, role, names=True, ancestor=config.latest_image)
        for role in roles
    ]
    if missing:
        queries.append(stats_command(missing))
    results = await ctx.batch(host, queries, stop_on_error=False, check=False, parallel=True)
    if missing:
        stats = results.pop()
        state.memory_missing = []
        if state.memory is not None and stats.ok:
            measured = {**state.memory.containers, **parse_stats(stats.stdout)}
            state.memory = replace(state.memory, containers=measured)
    for role, result in zip(roles, results, strict=True):
        name = app_commands.first_line(result.stdout) if result.ok else None
        if name:
            prefix = app_commands.container_prefix(config, role)
            state.roles[role.name].current = app_commands.version_from_name(name, prefix)


async def settle_all(ctx: DeployContext, surveys: dict[str, HostSurvey]) -> None:
    """:func:`settle` on the hosts that need it (in parallel)."""
    hosts = [h for h, state in surveys.items() if _unsettled(ctx, state) or state.memory_missing]
    if hosts:
        await ctx.on(hosts, lambda host: settle(ctx, host, surveys[host]))


def survey_commands(
    ctx: DeployContext,
    roles: Sequence[Role],
    *,
    proxy: bool = False,
    network: bool = False,
    memory: bool = False,
) -> list[Argv]:
    """The survey's commands (queries, plus the idempotent network and directory creation),
    to send alone (:func:`survey`) or with other commands (the deploy lock's batch)."""
    commands: list[Argv] = []
    if network and not proxy:  # with the proxy's state, only when that does not show it
        commands.append(server_commands.create_network())
    if network:
        commands.append(proxy_commands.ensure_apps_config_directory())
    if proxy:
        commands.append(docker("inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"))
    if roles:
        commands.append(app_commands.list_app_containers(ctx.config))
    if memory:
        commands += memory_queries()
    return commands


def parse_survey(
    ctx: DeployContext,
    host: str,
    roles: Sequence[Role],
    version: str,
    commands: Sequence[Argv],
    results: Sequence[Result],
    *,
    proxy: bool = False,
    network: bool = False,
    memory: bool = False,
) -> HostSurvey:
    """What :func:`survey_commands` found on ``host``; failures of the commands that must
    work raise, naming the host."""
    index = 0
    if network and not proxy:
        check_network_made(ctx, host, commands[0], results[0])
        index = 1
    if network:
        if not results[index].ok:
            raise ctx.failure(host, commands[index], results[index], what="creating .kamal/proxy")
        index += 1
    out = HostSurvey()
    if proxy:
        state = results[index]
        if state.ok and state.stdout.strip():
            image, running, networks = [*state.stdout.strip("\n").split("\t"), "", ""][:3]
            out.proxy_image, out.proxy_running = image.strip(), running.strip() == "true"
            # only a running proxy proves it: a stopped one keeps the name of a network that
            # may have been removed since
            attached = out.proxy_running and server_commands.NETWORK in networks.split()
            out.network_ready = not network or attached
        elif "no such" not in state.stderr.lower() and "not found" not in state.stderr.lower():
            raise ctx.failure(host, commands[index], state, what="inspecting kamal-proxy")
        else:
            out.network_ready = not network
        index += 1
    rows: list[app_commands.ContainerRow] = []
    if roles:
        listed = results[index]
        if not listed.ok:
            raise ctx.failure(host, commands[index], listed, what="listing the app containers")
        index += 1
        rows = app_commands.parse_container_rows(listed.stdout)
        for role in roles:
            out.roles[role.name] = role_survey(ctx, role, version, rows)
    if memory:
        files, usage = results[index], results[index + 1]
        alive = [(row.id, row.name) for row in rows if row.state == "running"]
        found, out.memory_missing = container_memory(usage.stdout if usage.ok else "", alive)
        out.memory = replace(parse_host_memory(files.stdout), containers=found)
    return out


def role_survey(
    ctx: DeployContext, role: Role, version: str, rows: Sequence[app_commands.ContainerRow]
) -> RoleSurvey:
    """One role's part of the container listing (newest first): every version, the running
    ones, the current one (the newest running or restarting; :func:`settle` decides between
    several), the IDs, and whether ``<prefix>-<version>`` exists."""
    prefix = app_commands.container_prefix(ctx.config, role)
    mine = [row for row in rows if row.role == role.name]
    versions = [app_commands.version_from_name(row.name, prefix) for row in mine]
    active = [v for row, v in zip(mine, versions, strict=True) if row.active]
    ids: dict[str, str] = {}
    for row, v in zip(mine, versions, strict=True):
        ids.setdefault(v, row.id)
    return RoleSurvey(
        current=active[0] if active else None,
        running=[v for row, v in zip(mine, versions, strict=True) if row.state == "running"],
        clash=version in versions,
        all_versions=versions,
        ids=ids,
        active=active,
    )


def check_network_made(ctx: DeployContext, host: str, command: Argv, made: Result) -> None:
    """Raise for a failed ``docker network create kamal``; "already exists" is fine."""
    if not made.ok and not server_commands.network_already_exists(made.stderr):
        raise ctx.failure(host, command, made, what="creating the kamal network")


async def make_network(ctx: DeployContext, host: str) -> None:
    """``docker network create kamal`` in its own round trip ("already exists" is fine)."""
    create = server_commands.create_network()
    check_network_made(ctx, host, create, await ctx.run(host, create, check=False))


async def ensure_network(ctx: DeployContext, host: str, state: HostSurvey) -> None:
    """:func:`make_network` unless the survey saw the network."""
    if not state.network_ready:
        await make_network(ctx, host)
        state.network_ready = True


async def boot_proxy(ctx: DeployContext, host: str, state: HostSurvey) -> None:
    """Start kamal-proxy on ``host`` when it is not running: ``docker container start``, else
    ``docker run`` from ``proxy.run`` (or the legacy boot files' defaults). The kamal network
    is made first when the survey did not see it."""
    await ensure_network(ctx, host, state)
    if state.proxy_running:
        return
    settings = proxy_commands.run_settings(ctx.config.proxy_run(host))
    start, run = proxy_commands.start_or_run(settings)
    ctx.info("starting kamal-proxy", host)
    if state.proxy_image is not None:
        started = await ctx.run(host, start, check=False)
        if started.ok:
            await ctx.audit(host, "Booted proxy")
            await wait_for_proxy(ctx, host)
            return
    result = await ctx.run(host, run, check=False, timeout=600)
    if not result.ok:
        text = result.stderr.lower()
        hint = "check proxy.run (registry, repository, version) and the registry login"
        if "address already in use" in text or "port is already allocated" in text:
            hint = "ports 80/443 are taken on the server: stop what uses them, or set proxy.run"
        raise FlowProxyError(
            f"proxy on {host}: could not start kamal-proxy ({result.describe_status()})\n"
            + "\n".join(f"  | {line}" for line in result.stderr.strip().splitlines()[-8:]),
            hint=hint,
        )
    await ctx.audit(host, "Booted proxy")
    await wait_for_proxy(ctx, host)


PROXY_READY_TIMEOUT = 30.0


async def wait_for_proxy(ctx: DeployContext, host: str) -> None:
    """Wait until a just-started kamal-proxy answers on its control socket (``kamal-proxy
    list``), so that the first deploy does not race its start-up."""
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    probe = proxy_commands.list_services()
    while True:
        result = await ctx.run(host, probe, check=False, timeout=PROXY_READY_TIMEOUT)
        if result.ok:
            return
        if time.monotonic() > deadline:
            logs = await ctx.run(host, docker("logs", "--tail", "20", "kamal-proxy"), check=False)
            tail = (logs.stdout + logs.stderr).strip().splitlines()[-20:]
            raise FlowProxyError(
                f"proxy on {host}: kamal-proxy did not become ready within "
                f"{PROXY_READY_TIMEOUT:g}s\n" + "\n".join(f"  | {line}" for line in tail),
                hint="check the proxy image (proxy.run) and `docker logs kamal-proxy`",
            )
        await asyncio.sleep(0.3)


@dataclass
class Tail:
    """Commands that go in the same round trip as a host's last stop of old containers (the
    rollback's tag, audit line and unlock), only once every host of the boot is healthy (as
    the tag waits for the whole boot). ``build`` makes them when that round trip goes out,
    each with its stage: :data:`WITH_STOPS`, :data:`AFTER_STOPS` or :data:`LAST`;
    ``results`` stays None when they did not run."""

    build: Callable[[], Awaitable[list[tuple[Argv, int]]]]
    commands: list[Argv] = field(default_factory=list)
    results: list[Result] | None = None


#: Stages of the round trip that stops a host's old containers (``remote.batch`` stages): the
#: stops go first, side by side with the tail's commands that do not depend on them (audit
#: lines, the tag); the cleanup of the old versions' files and the prune's listings wait for
#: the stops; the lock's release waits for everything, so no other deploy starts while this
#: one still removes files.
WITH_STOPS, AFTER_STOPS, LAST = 0, 1, 2


class AllHealthy:
    """Every host of a boot group is through its boots (True), or one failed (False)."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._ok = True
        self._event = asyncio.Event()
        if count <= 0:
            self._event.set()

    def arrive(self) -> None:
        self._left -= 1
        if self._left <= 0:
            self._event.set()

    def fail(self) -> None:
        self._ok = False
        self._event.set()

    async def wait(self) -> bool:
        await self._event.wait()
        return self._ok


@dataclass
class BootPlan:
    """One role on one host."""

    host: str
    role: Role
    state: RoleSurvey
    barrier: Barrier | None
    primary: bool
    #: Start the existing ``<prefix>-<version>`` container instead of running a new one.
    start_existing: bool = False
    #: On a host's last role: commands for the round trip of its stops (:class:`Tail`),
    #: sent once ``healthy`` says every host of the group is through.
    tail: Tail | None = None
    healthy: AllHealthy | None = None


async def boot_role(ctx: DeployContext, plan: BootPlan) -> None:
    """Boot ``plan.role`` at the context's version on ``plan.host``: rename a clashing
    container, (wait at the barrier,) start the new container, wait until it is healthy (through
    kamal-proxy, or docker's own state), then stop the old one. On failure the new container is
    stopped and the old one keeps serving."""
    config, host, role = ctx.config, plan.host, plan.role
    version = config.version
    name = app_commands.container_name(config, role)
    prefix = app_commands.container_prefix(config, role)
    old = plan.state.current
    prelude: list[Argv] = []
    if plan.state.clash and not plan.start_existing:
        renamed = app_commands.replaced_version(version, app_commands.random_hex(16))
        prelude = await _rename_commands(ctx, role, name, renamed)
        if old == version:
            old = renamed
        if plan.barrier is not None and not plan.primary:  # renamed before the wait
            await ctx.batch(host, prelude)
            prelude = []
    if plan.barrier is not None and not plan.primary:
        ctx.info(f"waiting for the first {config.primary_role_name} container", host)
        if not await plan.barrier.wait():
            raise HealthCheckError(
                f"health check: first {config.primary_role_name} container is unhealthy, "
                f"not booting {role.name} on {host}"
            )

    ctx.info(f"booting {name}", host)
    known = plan.state.ids.get(version) if plan.start_existing else None
    try:
        if known and role.running_proxy and not prelude:
            await _start_and_deploy(ctx, plan, name, known[:12])
        else:
            container_id = await _start(ctx, plan, name, prelude)
            if role.running_proxy:
                await _proxy_deploy(ctx, host, role, container_id, name)
            else:
                await _wait_healthy(ctx, host, container_id, name)
    except _NotStarted as exc:  # the rename failed: nothing of ours to stop
        if plan.barrier is not None and plan.primary:
            plan.barrier.close()
        raise exc.error from None
    except BaseException:
        if plan.barrier is not None and plan.primary:
            plan.barrier.close()
        await ctx.run(host, docker("stop", name), check=False)
        raise
    if plan.barrier is not None and plan.primary:
        plan.barrier.open()

    stops = [v for v in dict.fromkeys([*([old] if old else []), *plan.state.running]) if v]
    stops = [v for v in stops if v != version]
    commands = []
    for stale in stops:
        stop = docker(
            "stop",
            *(("-t", str(role.stop_timeout)) if role.stop_timeout is not None else ()),
            f"{prefix}-{stale}",
        )
        commands.append(stop)
    # once the old version stopped, the other versions' assets and error pages go (below)
    cleanup = prepare.cleanup_commands(ctx, role) if commands else []
    tail: list[tuple[Argv, int]] = []
    if plan.tail is not None:
        if plan.healthy is not None:
            plan.healthy.arrive()
        if plan.healthy is None or await plan.healthy.wait():
            try:
                tail = await plan.tail.build()
            except Exception:  # the caller then sends them on their own
                tail = []
    if commands or tail:
        # One round trip per stage, the stage's docker calls side by side with one script of
        # its other commands. A failed stop is not an error (as before); the tail's results go
        # to the caller.
        items = [(argv, WITH_STOPS) for argv in commands]
        items += [(argv, AFTER_STOPS) for argv in cleanup]
        items += tail
        order = sorted(range(len(items)), key=lambda i: items[i][1])  # stable within a stage
        sent = await ctx.batch(
            host,
            [items[i][0] for i in order],
            stop_on_error=False,
            check=False,
            stages=[items[i][1] for i in order],
        )
        results = [sent[0]] * len(items)
        for position, index in enumerate(order):
            results[index] = sent[position]
        if plan.tail is not None and tail:
            plan.tail.commands = [argv for argv, _ in tail]
            plan.tail.results = results[len(items) - len(tail) :]


async def _rename_commands(ctx: DeployContext, role: Role, name: str, renamed: str) -> list[Argv]:
    """The audit line and ``docker rename`` of a container in the way of the new one."""
    config = ctx.config
    prefix = app_commands.container_prefix(config, role)
    return [
        await ctx.audit_argv(
            f"Renaming container {name} to {prefix}-{renamed} as already in use",
            role=role.name,
        ),
        app_commands.rename_container(config, role, config.version, renamed),
    ]


async def _rename(ctx: DeployContext, host: str, role: Role, name: str, renamed: str) -> None:
    """Rename a container in the way of the new one, in its own round trip."""
    await ctx.batch(host, await _rename_commands(ctx, role, name, renamed))


def env_file_written(commands: Sequence[Sequence[str]], uploads: Sequence[str], path: str) -> bool:
    """Whether ``path`` was written, by the batch command or by an upload (for tests)."""
    return path in uploads or any(
        list(c[:3]) == ["sh", "-c", WRITE_PRIVATE_FILE] and c[-1] == path for c in commands
    )


class _NotStarted(Exception):
    """A command before the new container's start failed (nothing to stop)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


#: Writes stdin to "$1" with mode 0600 (directories as ``mkdir -p`` makes them), via a temp
#: file renamed into place: the env file travels inside the batch's script, not in argv.
WRITE_PRIVATE_FILE = (
    'mkdir -p "$(dirname "$1")" && umask 077 && cat > "$1.tmp" && chmod 600 "$1.tmp" '
    '&& mv -f "$1.tmp" "$1"'
)


def _env_file_command(path: str, contents: str) -> Argv | None:
    """The env file upload as a batch command (mode 0600), or None when it goes over SFTP."""
    return prepare.file_command(WRITE_PRIVATE_FILE, path, contents)


async def _start(
    ctx: DeployContext, plan: BootPlan, name: str, prelude: Sequence[Argv] = ()
) -> str:
    """Start the container; return its ID. ``prelude`` (the rename of a clashing container)
    goes first in the same round trip; its failure raises :class:`_NotStarted`."""
    config, host, role = ctx.config, plan.host, plan.role
    audit = await ctx.audit_argv(f"Booted app version {config.version}", role=role.name)
    if plan.start_existing:
        # the survey listed the container's ID (an ID does not change when it starts)
        known = plan.state.ids.get(config.version)
        commands = [audit, app_commands.start(config, role)]
        if not known:
            commands.append(app_commands.container_id_for(name))
        results = await ctx.batch(host, commands, check=False)
        for argv, result in zip(commands, results, strict=True):
            if not result.ok:
                raise ctx.failure(host, argv, result, what=f"starting {name}")
        container_id = known or app_commands.first_line(results[2].stdout)
    else:
        env_file = app_commands.env_file_path(config, role)
        contents = app_commands.env_file_contents(config, role, host).reveal()
        upload = _env_file_command(env_file, contents)
        if upload is None:
            await _run_prelude(ctx, host, prelude)
            prelude = []
            await ctx.transport(host).put(contents.encode(), env_file, mode=0o600)
        hostname = app_commands.container_hostname(host, app_commands.random_hex(12))
        run = app_commands.run(config, role, host, hostname=hostname)
        # one round trip: (rename,) env file, audit line, docker run
        commands = [*prelude, *([upload] if upload else []), audit, run]
        results = await ctx.batch(host, commands, check=False, timeout=600)
        for index, (argv, result) in enumerate(zip(commands, results, strict=True)):
            if not result.ok:
                error = ctx.failure(host, argv, result, what=f"starting {name}")
                if index < len(prelude):
                    raise _NotStarted(error)
                raise error
        container_id = app_commands.first_line(results[-1].stdout)
    if not container_id:
        raise DockerError(f"docker on {host}: no container ID for {name} after starting it")
    return container_id[:12]


async def _run_prelude(ctx: DeployContext, host: str, prelude: Sequence[Argv]) -> None:
    if not prelude:
        return
    results = await ctx.batch(host, prelude, check=False)
    for argv, result in zip(prelude, results, strict=True):
        if not result.ok:
            raise _NotStarted(ctx.failure(host, argv, result))


async def _start_and_deploy(
    ctx: DeployContext, plan: BootPlan, name: str, container_id: str
) -> None:
    """Start an existing container whose ID the survey gave, and deploy it in kamal-proxy, in
    one round trip (the deploy runs only when the start worked)."""
    config, host, role = ctx.config, plan.host, plan.role
    commands = [
        await ctx.audit_argv(f"Booted app version {config.version}", role=role.name),
        app_commands.start(config, role),
        app_commands.deploy(config, role, container_id),
    ]
    results = await ctx.batch(host, commands, check=False, timeout=config.deploy_timeout + 60)
    for argv, result in zip(commands[:2], results[:2], strict=True):
        if not result.ok:
            raise ctx.failure(host, argv, result, what=f"starting {name}")
    await _deployed(ctx, host, container_id, name, results[2])


async def _proxy_deploy(
    ctx: DeployContext, host: str, role: Role, container_id: str, name: str
) -> None:
    config = ctx.config
    deploy = app_commands.deploy(config, role, container_id)
    result = await ctx.run(host, deploy, check=False, timeout=config.deploy_timeout + 60)
    await _deployed(ctx, host, container_id, name, result)


async def _deployed(
    ctx: DeployContext, host: str, container_id: str, name: str, result: Result
) -> None:
    """Raise the right error for a failed ``kamal-proxy deploy`` (health check or proxy)."""
    if result.ok:
        return
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    answer = lines[-12:]  # the proxy's answer may go on with what its probes saw
    if not any("healthy" in line for line in lines):
        text = result.stderr.lower()
        hint = "is kamal-proxy running? check `dockyard proxy logs`"
        if "no such container" in text:
            hint = "kamal-proxy is not running on this host: run `dockyard setup` or `proxy boot`"
        raise FlowProxyError(
            f"proxy on {host}: kamal-proxy deploy of {name} failed "
            f"({result.describe_status()})\n" + "\n".join(f"  | {line}" for line in answer),
            hint=hint,
        )
    raise await _health_failure(ctx, host, container_id, name, answer, probe_from_proxy=True)


async def _health_failure(
    ctx: DeployContext,
    host: str,
    container_id: str,
    name: str,
    answer: list[str],
    *,
    probe_from_proxy: bool,
) -> HealthCheckError:
    commands: list[Argv] = [docker("logs", "--tail", str(HEALTH_LOG_LINES), container_id)]
    if probe_from_proxy:
        commands.append(docker("logs", "--tail", "300", "kamal-proxy"))
    else:
        commands.append(app_commands.container_health_log(container_id))
    results = await ctx.batch(host, commands, stop_on_error=False, check=False)
    logs = (results[0].stdout + results[0].stderr).strip().splitlines()[-HEALTH_LOG_LINES:]
    probe = _last_probe(results[1].stdout + results[1].stderr, container_id, probe_from_proxy)
    path = "/up"
    message = [f"health check on {host}: {name} did not become healthy"]
    message += [f"  proxy: {line}" for line in answer]
    if probe:
        message.append(f"  last probe: {probe}")
    message.append(f"  last {len(logs)} log lines of {name}:" if logs else "  (no log output)")
    message += [f"  | {line}" for line in logs]
    message.append("  the previous version keeps serving")
    return HealthCheckError(
        "\n".join(message),
        hint=f"make the app answer 200 on its health check path (default {path}) within "
        "deploy_timeout, or fix proxy.healthcheck; see `dockyard app logs`",
    )


def _last_probe(text: str, container_id: str, from_proxy: bool) -> str | None:
    if not from_proxy:
        try:
            health = json.loads(text)
        except ValueError:
            return None
        entries = (health or {}).get("Log") or []
        if not entries:
            return None
        last = entries[-1]
        return f"exit {last.get('ExitCode')}: {str(last.get('Output', '')).strip()[:300]}"
    lines = [line for line in text.splitlines() if "ealthcheck failed" in line]
    mine = [line for line in lines if container_id[:12] in line] or lines
    return mine[-1].strip()[:400] if mine else None


async def _wait_healthy(ctx: DeployContext, host: str, container_id: str, name: str) -> None:
    """Kamal's poll for roles without the proxy: ``healthy`` is ready; ``running`` is ready if
    still running after ``readiness_delay``; anything else is retried until deploy_timeout."""
    config = ctx.config
    deadline = time.monotonic() + config.deploy_timeout
    attempt = 0
    status = ""
    while True:
        result = await ctx.run(host, app_commands.status(container_id), check=False)
        status = result.stdout.strip()
        if status == "healthy":
            return
        if status == "running":
            await asyncio.sleep(config.readiness_delay)
            again = await ctx.run(host, app_commands.status(container_id), check=False)
            status = again.stdout.strip()
            if status in ("running", "healthy"):
                return
        attempt += 1
        if time.monotonic() + attempt > deadline:
            break
        await asyncio.sleep(attempt)
    raise await _health_failure(
        ctx, host, container_id, name, [f"container status: {status or 'unknown'}"],
        probe_from_proxy=False,
    )  # fmt: skip


def boot_groups(ctx: DeployContext, hosts: Sequence[str]) -> list[list[str]]:
    limit = ctx.config.boot.resolved_limit
    if not limit or limit >= len(hosts):
        return [list(hosts)]
    return [list(hosts[i : i + limit]) for i in range(0, len(hosts), limit)]


async def boot_app(
    ctx: DeployContext,
    surveys: dict[str, HostSurvey],
    *,
    start_existing: bool = False,
    tails: Mapping[str, Tail] | None = None,
) -> None:
    """``app boot``: per boot group, hooks around it; hosts in parallel, roles on a host in
    order (primary first), the barrier between the primary role and the others.

    ``tails`` (by host; for a single boot group, without a post-app-boot hook or boot wait):
    commands that ride with each host's last stop once every host is healthy (:class:`Tail`);
    the caller checks their results."""
    config = ctx.config
    hosts = list(surveys)
    roles = ctx.roles
    primary_name = config.primary_role_name
    needs_barrier = any(r.name == primary_name for r in roles) and any(
        r.name != primary_name for r in roles
    )
    barrier = Barrier() if needs_barrier else None
    await prepare.prepare_hosts(ctx, surveys)
    for group in boot_groups(ctx, hosts):
        await ctx.run_hook("pre-app-boot", hosts=group)

        gate = AllHealthy(len(group)) if tails else None

        async def one(host: str, healthy: AllHealthy | None = gate) -> None:
            try:
                roles = ctx.roles_on(host)
                tail = tails.get(host) if tails else None
                for role in roles:
                    last = role is roles[-1]
                    plan = BootPlan(
                        host=host,
                        role=role,
                        state=surveys[host].roles[role.name],
                        barrier=barrier,
                        primary=role.name == primary_name,
                        start_existing=start_existing,
                        tail=tail if last else None,
                        healthy=healthy if last and tail is not None else None,
                    )
                    await boot_role(ctx, plan)
                if (tail is None or not roles) and healthy is not None:
                    healthy.arrive()  # a host without a tail is through once booted
            except BaseException:
                if barrier is not None:
                    barrier.close()
                if healthy is not None:
                    healthy.fail()
                raise

        await ctx.on(group, one)
        await ctx.run_hook("post-app-boot", hosts=group)
        if config.boot.wait:
            await asyncio.sleep(config.boot.wait)
