"""The ``swap`` boot strategy: only one version of a role in memory at a time.

Kamal's boot (``parallel`` here) starts the new container next to the old one, so a host needs
the memory of both for a moment. On a small server ``swap`` does, per host and role (primary
role first):

1. ``kamal-proxy pause <service>``: new requests are held in the proxy, not failed, and the
   requests in flight finish (``--drain-timeout``); ``--max-pause`` bounds the hold;
2. stop the old container(s);
3. start the new one, and ``kamal-proxy deploy`` it: the proxy health-checks it directly (the
   pause only holds clients' requests) and switches its target, keeping the service paused;
4. ``kamal-proxy resume``: the held requests go to the new container.

If the new container fails (start or health check), it is stopped, the old one is started
again and deployed back in the proxy, then the proxy resumes, and the error is raised (so the
command exits non-zero). Roles without the proxy: stop the old container, start the new one,
wait for it. With ``boot.stop_roles`` (or ``--stop-other-roles``), other roles' containers on
the host are stopped during its swap and started again afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dockyard.commands import app as app_commands
from dockyard.commands import proxy as proxy_commands
from dockyard.commands.argv import Argv, docker
from dockyard.errors import ConfigError, DockyardError
from dockyard.flows import boot
from dockyard.flows.context import DeployContext
from dockyard.flows.errors import HealthCheckError

if TYPE_CHECKING:
    from dockyard.config.models import Config, Role

__all__ = ["STRATEGIES", "BootStrategy", "boot_app", "swap_role"]

STRATEGIES = ("parallel", "swap")
#: docker stop's own grace period when no -t is given.
DOCKER_STOP_SECONDS = 10


@dataclass(frozen=True, slots=True)
class BootStrategy:
    """How to boot: the strategy, whether to check memory first, which roles to stop."""

    name: Literal["parallel", "swap"] = "parallel"
    memory_check: bool = True
    #: Roles whose containers are stopped on a host while it swaps (``boot.stop_roles``).
    stop_roles: tuple[str, ...] = ()
    #: ``--stop-other-roles``: every role on the host that is not being booted.
    stop_other_roles: bool = False

    @classmethod
    def resolve(
        cls,
        config: Config,
        *,
        strategy: str | None = None,
        skip_memory_check: bool = False,
        stop_other_roles: bool = False,
    ) -> BootStrategy:
        """The command line over ``boot`` in the config."""
        name = config.boot.strategy if strategy is None else strategy.strip().lower()
        if name not in STRATEGIES:
            raise ConfigError(
                f"--strategy {strategy}: unknown boot strategy",
                hint=f"use one of: {', '.join(STRATEGIES)}",
            )
        if stop_other_roles and name != "swap":
            raise ConfigError(
                "--stop-other-roles needs the swap strategy", hint="add --strategy swap"
            )
        return cls(
            name="swap" if name == "swap" else "parallel",
            memory_check=config.boot.memory_check and not skip_memory_check,
            stop_roles=config.boot.stop_roles,
            stop_other_roles=stop_other_roles,
        )

    @property
    def swap(self) -> bool:
        return self.name == "swap"

    def roles_to_stop(self, ctx: DeployContext, host: str) -> list[Role]:
        """The roles on ``host`` stopped during its swap (not those being booted)."""
        if not self.swap:
            return []
        booted = {role.name for role in ctx.roles_on(host)}
        out = []
        for role in ctx.config.roles:
            if role.name in booted or host not in role.hosts:
                continue
            if self.stop_other_roles or role.name in self.stop_roles:
                out.append(role)
        return out


async def boot_app(
    ctx: DeployContext,
    surveys: Mapping[str, boot.HostSurvey],
    strategy: BootStrategy,
    *,
    start_existing: bool = False,
) -> None:
    """``app boot`` with the chosen strategy (``parallel`` is :func:`boot.boot_app`)."""
    if not strategy.swap:
        await boot.boot_app(ctx, dict(surveys), start_existing=start_existing)
        return
    config = ctx.config
    hosts = list(surveys)
    roles = ctx.roles
    primary_name = config.primary_role_name
    needs_barrier = any(r.name == primary_name for r in roles) and any(
        r.name != primary_name for r in roles
    )
    barrier = boot.Barrier() if needs_barrier else None
    for group in boot.boot_groups(ctx, hosts):
        await ctx.run_hook("pre-app-boot", hosts=group)

        async def one(host: str) -> None:
            plans = [
                boot.BootPlan(
                    host=host,
                    role=role,
                    state=surveys[host].roles[role.name],
                    barrier=barrier,
                    primary=role.name == primary_name,
                    start_existing=start_existing,
                )
                for role in ctx.roles_on(host)
            ]
            try:
                await swap_host(ctx, host, plans, strategy.roles_to_stop(ctx, host))
            except BaseException:
                if barrier is not None:
                    barrier.close()
                raise

        await ctx.on(group, one)
        await ctx.run_hook("post-app-boot", hosts=group)
        if config.boot.wait:
            await asyncio.sleep(config.boot.wait)


async def swap_host(
    ctx: DeployContext, host: str, plans: Sequence[boot.BootPlan], stop_roles: Sequence[Role]
) -> None:
    """Stop ``stop_roles``' running containers, swap each role in order, start them again."""
    stopped = await _stop_roles(ctx, host, stop_roles) if stop_roles else []
    try:
        for plan in plans:
            await swap_role(ctx, plan)
    finally:
        if stopped:
            ctx.info(f"starting {', '.join(stopped)} again", host)
            results = await ctx.batch(
                host, [docker("start", name) for name in stopped], stop_on_error=False, check=False
            )
            for name, result in zip(stopped, results, strict=True):
                if not result.ok:
                    ctx.warn(f"could not start {name} again: {result.stderr.strip()}", host)


async def _stop_roles(ctx: DeployContext, host: str, roles: Sequence[Role]) -> list[str]:
    config = ctx.config
    queries = [app_commands.list_versions(config, r, statuses=("running",)) for r in roles]
    results = await ctx.batch(host, queries, stop_on_error=False, check=False)
    names: list[str] = []
    stops: list[Argv] = []
    for role, result in zip(roles, results, strict=True):
        prefix = app_commands.container_prefix(config, role)
        for version in app_commands.parse_versions(result.stdout if result.ok else "", prefix):
            name = f"{prefix}-{version}"
            names.append(name)
            stops.append(app_commands.stop(role, name))
    if stops:
        ctx.info(f"stopping {', '.join(names)} during the swap", host)
        await ctx.batch(host, stops, stop_on_error=False, check=True)
    return names


def max_pause(config: Config, role: Role) -> int:
    """How long kamal-proxy may hold a request: stopping the old container, the new one's
    health check, and (if that fails) the old one's, with some slack."""
    stop = role.stop_timeout if role.stop_timeout is not None else DOCKER_STOP_SECONDS
    return stop + 2 * (config.deploy_timeout + 5) + 10


async def swap_role(ctx: DeployContext, plan: boot.BootPlan) -> None:
    """Swap ``plan.role`` on ``plan.host`` (see the module docstring)."""
    config, host, role = ctx.config, plan.host, plan.role
    version = config.version
    name = app_commands.container_name(config, role)
    prefix = app_commands.container_prefix(config, role)
    running = [v for v in dict.fromkeys([plan.state.current, *plan.state.running]) if v]
    if not running or (plan.start_existing and version in running):
        # Nothing to swap out (first boot), or rolling back to what runs: the usual boot.
        await boot.boot_role(ctx, plan)
        return
    old = plan.state.current or running[0]
    if plan.state.clash and not plan.start_existing:
        # ``<prefix>-<version>`` exists (maybe running: a redeploy of the same version)
        renamed = app_commands.replaced_version(version, app_commands.random_hex(16))
        await boot._rename(ctx, host, role, name, renamed)
        running = [renamed if v == version else v for v in running]
        old = renamed if old == version else old
    if plan.barrier is not None and not plan.primary:
        ctx.info(f"waiting for the first {config.primary_role_name} container", host)
        if not await plan.barrier.wait():
            raise HealthCheckError(
                f"health check: first {config.primary_role_name} container is unhealthy, "
                f"not booting {role.name} on {host}"
            )

    service = prefix
    paused = False
    if role.running_proxy:
        pause = proxy_commands.pause(
            service, drain_timeout=config.drain_timeout, max_pause=max_pause(config, role)
        )
        result = await ctx.run(host, pause, check=False, timeout=config.drain_timeout + 30)
        if result.ok:
            paused = True
            ctx.info(f"paused {service} in kamal-proxy (requests are held)", host)
        elif "not found" in (result.stderr + result.stdout).lower():
            ctx.warn(f"{service} is not deployed in kamal-proxy: swapping without a pause", host)
        else:
            raise ctx.failure(host, pause, result, layer="proxy", what=f"pausing {service}")
    try:
        ctx.info(f"swapping {prefix}-{old} for {name}", host)
        stops = [app_commands.stop(role, f"{prefix}-{v}") for v in running]
        await ctx.batch(host, stops, stop_on_error=False, check=True)
        try:
            container_id = await boot._start(ctx, plan, name)
            if role.running_proxy:
                await boot._proxy_deploy(ctx, host, role, container_id, name)
            else:
                await boot._wait_healthy(ctx, host, container_id, name)
        except BaseException as exc:
            if plan.barrier is not None and plan.primary:
                plan.barrier.close()
            await ctx.run(host, docker("stop", name), check=False)
            restored = await _restore(ctx, host, role, f"{prefix}-{old}")
            if isinstance(exc, DockyardError):
                note = (
                    f"swap: {prefix}-{old} was started again"
                    + (" and kamal-proxy resumed" if paused else "")
                    if restored is None
                    else f"swap: restoring {prefix}-{old} failed too: {restored}"
                )
                raise _with_note(exc, note) from exc
            raise
        if plan.barrier is not None and plan.primary:
            plan.barrier.open()
    finally:
        if paused:
            resumed = await ctx.run(host, proxy_commands.resume(service), check=False)
            if resumed.ok:
                ctx.info(f"resumed {service} in kamal-proxy", host)
            else:
                ctx.warn(
                    f"could not resume {service} in kamal-proxy: {resumed.stderr.strip()} "
                    f"(run `dockyard app live`)",
                    host,
                )


async def _restore(ctx: DeployContext, host: str, role: Role, old_name: str) -> str | None:
    """Start ``old_name`` again and point kamal-proxy back at it; None on success, else why."""
    ctx.warn(f"starting {old_name} again", host)
    config = ctx.config
    commands = [docker("start", old_name), app_commands.container_id_for(old_name)]
    results = await ctx.batch(host, commands, check=False)
    if not results[0].ok:
        return results[0].stderr.strip() or "docker start failed"
    container_id = app_commands.first_line(results[1].stdout)
    if not role.running_proxy:
        return None
    if not container_id:
        return f"no container ID for {old_name}"
    deploy = app_commands.deploy(config, role, container_id[:12])
    result = await ctx.run(host, deploy, check=False, timeout=config.deploy_timeout + 60)
    if not result.ok:
        return (result.stderr.strip() or result.stdout.strip())[-300:] or "kamal-proxy deploy"
    return None


def _with_note(exc: DockyardError, note: str) -> DockyardError:
    """The same kind of error with a line added (the exception itself when it cannot be)."""
    message = exc.message.replace("the previous version keeps serving", "").rstrip()
    try:
        return type(exc)(f"{message}\n  {note}", hint=exc.hint)
    except TypeError:
        return exc
