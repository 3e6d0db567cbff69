"""The top-level flows: setup, deploy, redeploy, rollback (and the versions available for it),
remove, and prune. Steps in Kamal's order (kamal.md §2.3); the lock is released in ``finally``
and post-deploy runs only after a success."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dockyard.commands import app as app_commands
from dockyard.commands import lock as lock_commands
from dockyard.commands import paths
from dockyard.commands import proxy as proxy_commands
from dockyard.commands import prune as prune_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands import server as server_commands
from dockyard.commands.argv import Argv, argv, docker
from dockyard.flows import boot, build, memory, swap
from dockyard.flows.context import DeployContext
from dockyard.flows.errors import DockerError
from dockyard.flows.ops import prune as prune_ops
from dockyard.flows.swap import BootStrategy
from dockyard.remote.result import Result

__all__ = [
    "DeployResult",
    "RollbackResult",
    "deploy",
    "redeploy",
    "remove",
    "rollback",
    "rollback_versions",
    "setup",
]


@dataclass
class DeployResult:
    version: str
    hosts: list[str]
    seconds: float


@dataclass
class RollbackResult:
    version: str
    rolled_back: bool
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def check_docker(ctx: DeployContext, hosts: Sequence[str]) -> None:
    """Setup's light bootstrap: Docker must answer on every host; make ``.kamal``."""

    async def one(host: str) -> None:
        results = await ctx.batch(
            host,
            [docker("version", "--format", "{{.Server.Version}}"), argv("mkdir", "-p", ".kamal")],
            check=False,
        )
        if not results[0].ok:
            text = results[0].stderr.lower()
            if "not found" in text:
                hint = "install Docker on the server (`dockyard server bootstrap`)"
            elif "permission denied" in text:
                hint = "add the SSH user to the docker group, then log in again"
            else:
                hint = "start the Docker daemon on the server"
            raise DockerError(
                f"docker on {host}: Docker is not usable: {results[0].stderr.strip()[-300:]}",
                hint=hint,
            )

    await ctx.on(hosts, one)


async def _deliver(ctx: DeployContext, skip_push: bool) -> None:
    if not skip_push:
        await build.push(ctx)
    await build.pull(ctx)


async def _surveys(
    ctx: DeployContext, hosts: Sequence[str], *, proxy: bool, memory: bool = False
) -> dict[str, boot.HostSurvey]:
    proxy_hosts = set(ctx.proxy_hosts) if proxy else set()
    version = ctx.version

    async def one(host: str) -> boot.HostSurvey:
        return await boot.survey(
            ctx,
            host,
            ctx.roles_on(host),
            version,
            proxy=host in proxy_hosts,
            network=proxy,  # every app host needs the kamal network, not only proxy hosts
            memory=memory,
        )

    return await ctx.on(hosts, one)


def _survey_queries(
    ctx: DeployContext, hosts: Sequence[str], *, proxy: bool, memory: bool = False
) -> dict[str, list[Argv]]:
    """:func:`_surveys`' commands by host, to send with the lock (one round trip)."""
    proxy_hosts = set(ctx.proxy_hosts) if proxy else set()
    return {
        host: boot.survey_commands(
            ctx,
            ctx.roles_on(host),
            proxy=host in proxy_hosts,
            network=proxy,
            memory=memory,
        )
        for host in hosts
    }


def _parse_surveys(
    ctx: DeployContext,
    queries: dict[str, list[Argv]],
    found: dict[str, list[Result]],
    *,
    proxy: bool,
    memory: bool = False,
) -> dict[str, boot.HostSurvey]:
    proxy_hosts = set(ctx.proxy_hosts) if proxy else set()
    return {
        host: boot.parse_survey(
            ctx,
            host,
            ctx.roles_on(host),
            ctx.version,
            commands,
            found[host][-len(commands) :] if commands else [],
            proxy=host in proxy_hosts,
            network=proxy,
            memory=memory,
        )
        for host, commands in queries.items()
    }


def _check_memory(
    ctx: DeployContext, surveys: dict[str, boot.HostSurvey], strategy: BootStrategy
) -> None:
    """Refuse (before anything changes) when the new version does not fit (flows.memory)."""
    if strategy.memory_check:
        stop = [r.name for h in surveys for r in strategy.roles_to_stop(ctx, h)]
        memory.check_surveys(ctx, surveys, strategy=strategy.name, stop_roles=stop)


async def _boot_proxies(ctx: DeployContext, surveys: dict[str, boot.HostSurvey]) -> None:
    proxy_hosts = [h for h in ctx.proxy_hosts if h in surveys]
    if not proxy_hosts:
        return
    ctx.step("Ensuring kamal-proxy is running...")
    await ctx.on(proxy_hosts, lambda host: boot.boot_proxy(ctx, host, surveys[host]))


async def _finish_commands(ctx: DeployContext, *, prune: bool) -> list[tuple[Argv, int]]:
    """Tag the image as latest (audit line, ``docker tag``); with ``prune``, the prune's
    audit lines and its two listings (:func:`dockyard.flows.ops.prune.plan` reads them).
    Each with its stage: the listings come after the rest (they must see the tag, and the
    stops of a boot's round trip, :class:`boot.Tail`)."""
    config = ctx.config
    commands: list[Argv] = [
        await ctx.audit_argv(f"Tagging {config.absolute_image} as the latest image"),
        app_commands.tag_latest_image(config),
    ]
    if prune:
        commands += await prune_ops.queries(ctx)
    first_listing = len(commands) - 2 if prune else len(commands)
    return [
        (argv, boot.WITH_STOPS if index < first_listing else boot.AFTER_STOPS)
        for index, argv in enumerate(commands)
    ]


async def _finish_hosts(
    ctx: DeployContext, hosts: Sequence[str], *, prune: bool, unlock: bool = False
) -> None:
    """Tag the image as latest on every host and prune: one round trip per host, and one
    more where there is something to remove; with ``unlock`` the lock goes with the primary
    host's removals."""
    plans: dict[str, prune_commands.PrunePlan | None] = {}

    async def one(host: str) -> None:
        staged = await _finish_commands(ctx, prune=prune)
        commands = [argv for argv, _ in staged]
        stages = [stage for _, stage in staged]
        results = await ctx.batch(host, commands, stop_on_error=False, check=False, stages=stages)
        for command, result in zip(commands[:2], results[:2], strict=True):
            if not result.ok:
                raise ctx.failure(host, command, result, what="tagging the latest image")
        if prune:
            plans[host] = prune_ops.plan(ctx, host, results)

    await ctx.on(hosts, one)
    if prune or unlock:
        await prune_ops.apply(ctx, plans, unlock=unlock)


async def deploy(
    ctx: DeployContext,
    *,
    skip_push: bool = False,
    proxy_boot: bool = True,
    prune: bool = True,
    setup: bool = False,
    strategy: BootStrategy | None = None,
) -> DeployResult:
    """``deploy`` (and, with ``proxy_boot``/``prune`` off, ``redeploy``)."""
    started = time.monotonic()
    strategy = strategy or BootStrategy.resolve(ctx.config)
    hosts = ctx.app_hosts
    version = ctx.version
    command = "setup" if setup else "deploy" if proxy_boot else "redeploy"
    ctx.step(f"{command.capitalize()} {ctx.config.service} {version} to {', '.join(hosts)}")
    if not setup and not skip_push:
        await build.push(ctx)
    # Without setup, one round trip per host before anything changes: the lock (on the
    # primary host), the "Pulled image" audit line, what the host has of the image, and the
    # survey (unless a pre-deploy hook must run before it). The registry's digest for the tag
    # is asked from here meanwhile: a host that has it already is not pulled again.
    digest_task = None if setup else asyncio.create_task(build.registry_digest(ctx))
    survey_now = not setup and not ctx.has_hook("pre-deploy")
    queries: dict[str, list[Argv]] = {}
    if not setup:
        await ctx.warm_up(ctx.lock_targets(hosts))
        audit = await ctx.audit_argv(f"Pulled image with version {version}")
        queries = {host: [audit, build.pull_check(ctx.config)] for host in hosts}
    if survey_now:
        found_by = _survey_queries(ctx, hosts, proxy=proxy_boot, memory=strategy.memory_check)
        for host in hosts:
            queries[host] += found_by[host]
    owned = not ctx.holding_lock  # else the lock is not ours to release
    try:
        async with ctx.lock("Automatic deploy lock", then=queries) as found:
            if setup:
                await check_docker(ctx, ctx.hosts)
                await ctx.run_hook("docker-setup")  # Kamal's bootstrap ends with it
                await _deliver(ctx, skip_push)
            else:
                if survey_now:
                    # The memory check needs only the first batch: a deploy that does not fit
                    # stops before anything changes, the image pull included.
                    surveys = _parse_surveys(
                        ctx, found_by, found, proxy=proxy_boot, memory=strategy.memory_check
                    )
                    await boot.settle_all(ctx, surveys)
                    _check_memory(ctx, surveys, strategy)
                await _pull_where_needed(ctx, hosts, queries, found, digest_task)
            await ctx.run_hook("pre-deploy")
            if not survey_now:
                ctx.step("Inspecting the servers...")
                surveys = await _surveys(ctx, hosts, proxy=proxy_boot, memory=strategy.memory_check)
                _check_memory(ctx, surveys, strategy)
            await _rest_of_deploy(
                ctx,
                surveys,
                strategy,
                proxy_boot=proxy_boot,
                prune=prune,
                setup=setup,
                unlock=owned and not setup,  # setup holds the lock through post-deploy
            )
            if setup:  # as in Kamal, setup holds the lock through post-deploy
                runtime = time.monotonic() - started
                await ctx.run_hook("post-deploy", runtime=round(runtime))
    finally:
        if digest_task is not None and not digest_task.done():
            digest_task.cancel()
    runtime = time.monotonic() - started
    if not setup:
        await ctx.run_hook("post-deploy", runtime=round(runtime))
    return DeployResult(version, hosts, runtime)


async def _pull_where_needed(
    ctx: DeployContext,
    hosts: Sequence[str],
    queries: dict[str, list[Argv]],
    found: dict[str, list[Result]],
    digest_task: asyncio.Task[str | None] | None,
) -> None:
    """After the first batch: check its audit line, and pull on the hosts whose copy of the
    tag is missing or differs from the registry's (all of them when the registry's digest is
    unknown)."""
    registry = await digest_task if digest_task is not None else None
    to_pull = []
    for host in hosts:
        audit, check = found[host][0], found[host][1]
        if not audit.ok:
            raise ctx.failure(host, queries[host][0], audit, what="audit log")
        if not build.already_pulled(ctx, host, check, registry):
            to_pull.append(host)
    if to_pull:
        await build.pull(ctx, to_pull, audit=False)
    fresh = [host for host in hosts if host not in to_pull]
    if fresh:
        ctx.step(f"{ctx.config.absolute_image} is up to date on {', '.join(fresh)}")


async def _rest_of_deploy(
    ctx: DeployContext,
    surveys: dict[str, boot.HostSurvey],
    strategy: BootStrategy,
    *,
    proxy_boot: bool,
    prune: bool,
    setup: bool,
    unlock: bool = False,
) -> None:
    """Deploy after the survey and the memory check: proxy boot, (accessories,) boot, tag,
    prune; with ``unlock`` the lock is released with the last removals."""
    hosts = list(surveys)
    version = ctx.version
    if proxy_boot:
        await _boot_proxies(ctx, surveys)
    if setup and ctx.accessories:  # Kamal's setup boots every accessory here
        from dockyard.flows.ops import accessory as accessory_ops

        await accessory_ops.boot(ctx, accessory_ops.ALL)
    ctx.step(f"Booting {version}{' (swap)' if strategy.swap else ''}...")
    step = "Tagging the image and pruning..." if prune else "Tagging the image..."
    if _finish_with_the_stops(ctx, hosts, strategy):
        await _boot_with_tails(ctx, surveys, prune=prune, unlock=unlock, step=step)
        return
    await swap.boot_app(ctx, surveys, strategy)
    ctx.step(step)
    await _finish_hosts(ctx, hosts, prune=prune, unlock=unlock)


async def setup(ctx: DeployContext, *, skip_push: bool = False) -> DeployResult:
    """``setup``: check Docker on the servers, then deploy (the proxy is booted as needed)."""
    return await deploy(ctx, skip_push=skip_push, setup=True)


async def redeploy(ctx: DeployContext, *, skip_push: bool = False) -> DeployResult:
    return await deploy(ctx, skip_push=skip_push, proxy_boot=False, prune=False)


async def rollback(
    ctx: DeployContext, version: str, *, strategy: BootStrategy | None = None
) -> RollbackResult:
    """Boot an existing container version again: start it, switch kamal-proxy to it, stop the
    current one. When some host lacks that version nothing changes (a message, not an error)."""
    started = time.monotonic()
    strategy = strategy or BootStrategy.resolve(ctx.config)
    ctx.with_version(version)
    hosts = ctx.app_hosts
    ctx.step(f"Rolling back {ctx.config.service} to {version} on {', '.join(hosts)}")
    # the lock and the survey in one round trip per host
    queries = _survey_queries(ctx, hosts, proxy=False, memory=strategy.memory_check)
    reentrant = ctx.holding_lock  # then the lock is not ours to release
    async with ctx.lock("Automatic deploy lock", then=queries) as found:
        surveys = _parse_surveys(ctx, queries, found, proxy=False, memory=strategy.memory_check)
        missing = [
            f"{host} ({role.name})"
            for host in hosts
            for role in ctx.roles_on(host)
            if version not in surveys[host].roles[role.name].all_versions
        ]
        if missing:
            return RollbackResult(version, False, missing)
        await boot.settle_all(ctx, surveys)
        _check_memory(ctx, surveys, strategy)
        if await ctx.run_hook("pre-deploy"):  # the hook may have changed the servers
            surveys = await _surveys(ctx, hosts, proxy=False)
        if _finish_with_the_stops(ctx, hosts, strategy):
            await _boot_with_tails(
                ctx, surveys, prune=False, unlock=not reentrant, start_existing=True
            )
        else:
            await swap.boot_app(ctx, surveys, strategy, start_existing=True)
            await _finish_hosts(ctx, hosts, prune=False)
    runtime = time.monotonic() - started
    await ctx.run_hook("post-deploy", runtime=round(runtime))
    return RollbackResult(version, True, [], runtime)


def _finish_with_the_stops(
    ctx: DeployContext, hosts: Sequence[str], strategy: BootStrategy
) -> bool:
    """Whether the tag (and, on a lone primary host, the unlock) can ride in the round trip
    that stops the old containers: nothing may run between the boot and the tag (one boot
    group, no post-app-boot hook, no boot wait; the swap strategy has its own stops)."""
    return (
        not strategy.swap
        and len(boot.boot_groups(ctx, hosts)) == 1
        and not ctx.has_hook("post-app-boot")
        and not ctx.config.boot.wait
    )


async def _boot_with_tails(
    ctx: DeployContext,
    surveys: dict[str, boot.HostSurvey],
    *,
    prune: bool,
    unlock: bool,
    start_existing: bool = False,
    step: str | None = None,
) -> None:
    """Boot with the tag (and the prune's listings) riding in each host's round trip that
    stops the old containers (:class:`boot.Tail`). The lock's release (``unlock``) goes in
    that round trip too on a lone primary host without a prune; else with the primary
    host's removals, after the other hosts'."""
    hosts = list(surveys)
    in_tail = unlock and not prune and hosts == [ctx.primary_host]
    said: list[str] = []  # the step is said once, when the first tail goes out
    tails = {
        host: boot.Tail(_finish_builder(ctx, prune=prune, unlock=in_tail, said=said, step=step))
        for host in hosts
    }
    await boot.boot_app(ctx, surveys, start_existing=start_existing, tails=tails)
    plans = await _check_tails(ctx, tails, prune=prune, unlock=in_tail)
    if prune or (unlock and not in_tail):
        await prune_ops.apply(ctx, plans, unlock=unlock and not in_tail)


def _finish_builder(
    ctx: DeployContext,
    *,
    prune: bool,
    unlock: bool,
    said: list[str] | None = None,
    step: str | None = None,
) -> Callable[[], Awaitable[list[tuple[Argv, int]]]]:
    """The commands of :func:`_finish_hosts` (audit line, tag, the prune's queries), then
    the lock's release with ``unlock``, each with its stage in the round trip of the stops
    (:class:`boot.Tail`): built when they go out, so the audit lines have that time."""
    config = ctx.config

    async def build() -> list[tuple[Argv, int]]:
        if step and said is not None and not said:
            said.append(step)
            ctx.step(step)
        staged = await _finish_commands(ctx, prune=prune)
        if unlock:
            ctx.step("Releasing the deploy lock...")
            release = lock_commands.release(config.service, config.destination)
            staged += [(argv, boot.LAST) for argv in release]
        return staged

    return build


async def _check_tails(
    ctx: DeployContext, tails: Mapping[str, boot.Tail], *, prune: bool, unlock: bool
) -> dict[str, prune_commands.PrunePlan | None]:
    """After a boot with :class:`boot.Tail`s: note the lock's release (as
    ``ctx.release_lock`` does), raise for a failed audit line or tag (as
    :func:`_finish_hosts`), finish where a tail did not go out, and return the prune plans
    by host (with ``prune``)."""
    if unlock:  # the release went last in the lone primary host's tail
        (host,) = tails
        results = tails[host].results
        if results is not None:
            release = lock_commands.release(ctx.config.service, ctx.config.destination)
            ctx.lock_released(results[-len(release) :])
    plans: dict[str, prune_commands.PrunePlan | None] = {}

    async def one(host: str) -> None:
        tail = tails[host]
        assert tail.results is not None
        for command, result in zip(tail.commands[:2], tail.results[:2], strict=True):
            if not result.ok:
                raise ctx.failure(host, command, result, what="tagging the latest image")
        if prune:  # (no release in a tail with the prune: its listings come last)
            plans[host] = prune_ops.plan(ctx, host, tail.results)

    sent = [host for host, tail in tails.items() if tail.results is not None]
    await ctx.on(sent, one)
    left = [host for host, tail in tails.items() if tail.results is None]
    if left:  # tagged (and pruned) on their own
        await _finish_hosts(ctx, left, prune=prune)
    return plans


@dataclass
class VersionInfo:
    version: str
    hosts: list[str]
    current_on: list[str]


async def rollback_versions(ctx: DeployContext) -> list[VersionInfo]:
    """Versions that exist as containers (for every selected role) on hosts, newest first,
    and where each one is the current version."""
    hosts = ctx.app_hosts
    await ctx.connect(hosts)
    try:
        probe_version = ctx.version
    except Exception:  # no git and no --version: any name works for a survey
        probe_version = "-"
    surveys = await _surveys_for(ctx, hosts, probe_version)
    found: dict[str, VersionInfo] = {}
    for host in hosts:
        roles = ctx.roles_on(host)
        if not roles:
            continue
        common: list[str] | None = None
        for role in roles:
            versions = surveys[host].roles[role.name].all_versions
            common = versions if common is None else [v for v in common if v in versions]
        for version in common or []:
            if "_replaced_" in version:
                continue
            info = found.setdefault(version, VersionInfo(version, [], []))
            info.hosts.append(host)
            if all(surveys[host].roles[r.name].current == version for r in roles):
                info.current_on.append(host)
    return list(found.values())


async def _surveys_for(
    ctx: DeployContext, hosts: Sequence[str], version: str
) -> dict[str, boot.HostSurvey]:
    async def one(host: str) -> boot.HostSurvey:
        return await boot.survey(ctx, host, ctx.roles_on(host), version)

    return await ctx.on(hosts, one)


async def remove(ctx: DeployContext) -> list[str]:
    """``remove``: the app's containers, images and files on every host, kamal-proxy too when
    no other app uses it, and the registry login. Safe to run twice."""
    config = ctx.config
    hosts = ctx.hosts
    ctx.step(f"Removing {config.service} from {', '.join(hosts)}")
    async with ctx.lock("Automatic deploy lock"):

        async def one(host: str) -> None:
            roles = ctx.roles_on(host)
            first: list[Argv] = []
            for role in roles:
                if role.running_proxy:
                    first.append(app_commands.remove(config, role))
            filters = ("--filter", f"label=service={config.service}")
            dest = ("--filter", f"label=destination={config.destination or ''}")
            first += [
                docker("ps", "-q", *filters, *dest),
                docker("ps", "-q", "-a", *filters, *dest),
            ]
            results = await ctx.batch(host, first, stop_on_error=False, check=False)
            running = results[-2].stdout.split()
            every = results[-1].stdout.split()
            second: list[Argv] = []
            if running:
                second.append(docker("stop", *running))
            if every:
                second.append(docker("rm", "--force", *every))
            second += [
                app_commands.remove_images(config),
                argv("rm", "-rf", paths.app_directory(config.service, config.destination)),
                argv("rm", "-rf", paths.proxy_app_directory(config.service, config.destination)),
                server_commands.list_app_directories(),
            ]
            results = await ctx.batch(host, second, stop_on_error=False, check=False)
            for command, result in zip(second[:-1], results[:-1], strict=True):
                if not result.ok:
                    raise ctx.failure(host, command, result, what="removing the app")
            others = server_commands.count_lines(results[-1].stdout) if results[-1].ok else 0
            third: list[Argv] = []
            if others == 0 and host in ctx.proxy_hosts:
                third += [
                    docker("container", "rm", "--force", "kamal-proxy"),
                    proxy_commands.remove_proxy_directory(),
                ]
                settings = proxy_commands.run_settings(config.proxy_run(host))
                if settings is not None:
                    third.append(docker("image", "rm", settings.image))
            login = registry_commands.login_for(config)
            if login is not None:
                third.append(registry_commands.logout_for(config))
            third.append(await ctx.audit_argv(f"Removed app {config.service}"))
            await ctx.batch(host, third, stop_on_error=False, check=False)

        await ctx.on(hosts, one)
        if ctx.accessories:  # Kamal's remove ends with `accessory remove all`
            from dockyard.flows.ops import accessory as accessory_ops

            await accessory_ops.remove(ctx, accessory_ops.ALL)
    return hosts
