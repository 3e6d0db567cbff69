"""``app start | stop | details | exec | containers | images | logs | remove | live |
maintenance | stale_containers | version``, as Kamal 2.11 runs them on the servers."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands import server as server_commands
from dockyard.errors import DockyardError
from dockyard.flows.errors import DockerError
from dockyard.flows.ops.base import Interactive, Section, first_line, ssh_session

if TYPE_CHECKING:
    from dockyard.config.models import Role
    from dockyard.flows.context import DeployContext

#: Kamal's default for ``logs`` without --since/--grep, and for ``logs -f``.
DEFAULT_LOG_LINES = 100
DEFAULT_FOLLOW_LINES = 10

RoleBody = Callable[[str, "Role"], Awaitable["str | None"]]


# --- the current container ------------------------------------------------------------------


async def current_container(
    ctx: DeployContext, host: str, role: Role, *, names: bool = False
) -> str | None:
    """The newest running container of the role (ID, or name with ``names``), preferring one
    made from the image tagged latest; None when nothing of the role runs on the host.

    The latest image's ID and the fallback (newest running of the role) are asked in one round
    trip; the container made from the latest image only when that image exists."""
    config = ctx.config
    (fallback,) = app_commands.current_container_queries(config, role, None, names=names)
    image, newest = await ctx.batch(host, [app_commands.latest_image_id(config), fallback])
    if first_line(image.stdout):
        preferred = app_commands.current_container_queries(config, role, image.stdout, names=names)[
            0
        ]
        found = first_line((await ctx.run(host, preferred)).stdout)
        if found:
            return found
    return first_line(newest.stdout)


async def current_version(ctx: DeployContext, host: str, role: Role) -> str | None:
    name = await current_container(ctx, host, role, names=True)
    if name is None:
        return None
    return app_commands.version_from_name(name, app_commands.container_prefix(ctx.config, role))


async def per_role(
    ctx: DeployContext, body: RoleBody, *, hosts: Sequence[str] | None = None
) -> list[Section]:
    """``body(host, role)`` for each selected role on each app host (hosts in parallel, roles
    on a host in order, primary role first); a returned text becomes a section."""

    async def on_host(host: str) -> list[Section]:
        sections = []
        for role in ctx.roles_on(host):
            text = await body(host, role)
            if text is not None:
                sections.append(Section(f"App Host: {host}", host, text))
        return sections

    done = await ctx.on(ctx.app_hosts if hosts is None else hosts, on_host)
    return [section for host in done for section in done[host]]


async def per_host(
    ctx: DeployContext, hosts: Sequence[str], body: Callable[[str], Awaitable[str]], title: str
) -> list[Section]:
    done = await ctx.on(hosts, body)
    return [Section(f"{title} Host: {host}", host, text) for host, text in done.items()]


# --- listing --------------------------------------------------------------------------------


async def details(ctx: DeployContext) -> list[Section]:
    """``docker ps`` of each selected role on each app host: one round trip per host (the
    roles' listings side by side)."""

    async def on_host(host: str) -> list[Section]:
        roles = ctx.roles_on(host)
        commands = [app_commands.info(ctx.config, role) for role in roles]
        if len(commands) == 1:  # no batch script for one command
            results = [await ctx.run(host, commands[0])]
        else:
            results = await ctx.batch(host, commands, stop_on_error=False, parallel=True)
        return [Section(f"App Host: {host}", host, r.stdout) for r in results]

    done = await ctx.on(ctx.app_hosts, on_host)
    return [section for host in done for section in done[host]]


async def containers(ctx: DeployContext) -> list[Section]:
    async def body(host: str) -> str:
        return (await ctx.run(host, app_commands.list_containers(ctx.config, None))).stdout

    return await per_host(ctx, ctx.app_hosts, body, "App")


async def images(ctx: DeployContext) -> list[Section]:
    async def body(host: str) -> str:
        return (await ctx.run(host, app_commands.list_images(ctx.config))).stdout

    return await per_host(ctx, ctx.app_hosts, body, "App")


async def version(ctx: DeployContext) -> list[Section]:
    """The current running version on each app host (of its first selected role)."""

    async def body(host: str) -> str:
        roles = ctx.roles_on(host)
        return (await current_version(ctx, host, roles[0]) if roles else None) or ""

    return await per_host(ctx, ctx.app_hosts, body, "App")


async def rollback_versions(ctx: DeployContext) -> list[Section]:
    """Per app host and role: the versions whose containers still exist (newest first), other
    than the running one: what ``rollback VERSION`` can return to (Kamal only shows this
    through ``app containers``). One listing of the app's containers per host (a second round
    trip only where a role has several running containers)."""

    async def on_host(host: str) -> list[Section]:
        listed = await ctx.run(host, app_commands.list_app_containers(ctx.config))
        return await rollback_sections(ctx, host, listed.stdout)

    done = await ctx.on(ctx.app_hosts, on_host)
    return [section for host in done for section in done[host]]


async def rollback_sections(ctx: DeployContext, host: str, listing: str) -> list[Section]:
    """:func:`rollback_versions`' sections for ``host`` from the output of
    ``list_app_containers`` (which container is current, as the boot's survey decides)."""
    from dockyard.flows import boot as boot_flow

    roles = ctx.roles_on(host)
    rows = app_commands.parse_container_rows(listing)
    state = boot_flow.HostSurvey(
        roles={role.name: boot_flow.role_survey(ctx, role, "-", rows) for role in roles}
    )
    await boot_flow.settle(ctx, host, state)
    sections = []
    for role in roles:
        found = state.roles[role.name]
        versions = [
            v
            for v in found.all_versions
            if v != found.current and "_replaced_" not in v and not v.startswith("exec-")
        ]
        text = f"{role.name}: {' '.join(versions) or '(none)'}"
        sections.append(Section(f"Rollback versions on {host}", host, text))
    return sections


# --- boot -------------------------------------------------------------------------------------


async def boot(ctx: DeployContext, version: str | None = None) -> str:
    """Kamal's ``app boot``: the same boot as a deploy (name clash renamed, new container
    started, healthy through kamal-proxy or docker, old one stopped; boot groups, hooks and the
    primary-role barrier), without build, pull or proxy boot; then the image is tagged latest.
    Without ``version`` the image tagged latest is booted (Kamal's ``version_or_latest``).
    Returns the version booted."""
    from dockyard.flows import boot as boot_flow

    ctx.with_version(version or ctx.config.latest_tag)
    booted = ctx.config.version
    hosts = ctx.app_hosts
    async with ctx.lock():
        ctx.step(f"Booting {ctx.config.service} {booted} on {', '.join(hosts)}...")

        async def survey(host: str) -> boot_flow.HostSurvey:
            return await boot_flow.survey(ctx, host, ctx.roles_on(host), booted, network=True)

        surveys = await ctx.on(hosts, survey)
        await boot_flow.boot_app(ctx, surveys)

        async def tag(host: str) -> None:
            audit = await ctx.audit_argv(f"Tagging {ctx.config.absolute_image} as the latest image")
            await ctx.batch(host, [audit, app_commands.tag_latest_image(ctx.config)])

        await ctx.on(hosts, tag)
    return booted


# --- start, stop, live, maintenance -----------------------------------------------------------


async def start(ctx: DeployContext) -> None:
    """``docker start <prefix-version>`` (errors ignored), then re-register proxy roles."""
    config = ctx.config

    async def body(host: str, role: Role) -> None:
        await ctx.audit(host, f"Started app version {config.version}", role=role.name)
        await ctx.run(host, app_commands.start(config, role), check=False)
        if not role.running_proxy:
            return
        running = await current_version(ctx, host, role)
        if running is None:
            raise DockerError(
                f"docker on {host}: no running container of role {role.name} after `docker start`",
                hint="see `dockyard app containers` and `dockyard app logs`",
            )
        ident = await ctx.run(host, app_commands.container_id_for_version(config, role, running))
        target = first_line(ident.stdout)
        if target is None:
            raise DockerError(f"docker on {host}: container of version {running} vanished")
        await ctx.run(host, app_commands.deploy(config, role, target), layer="proxy")

    async with ctx.lock():
        await per_role(ctx, body)


async def stop(ctx: DeployContext) -> None:
    """For proxy roles with a running container, ``kamal-proxy remove``; then stop it."""

    async def body(host: str, role: Role) -> None:
        await ctx.audit(host, "Stopped app", role=role.name)
        ident = await current_container(ctx, host, role)
        if ident is None:
            return
        if role.running_proxy:  # errors ignored, as Kamal does
            await ctx.run(host, app_commands.remove(ctx.config, role), check=False)
        await ctx.run(host, app_commands.stop(role, ident), check=False)

    async with ctx.lock():
        await per_role(ctx, body)


async def live(ctx: DeployContext) -> None:
    async def body(host: str, role: Role) -> None:
        if role.running_proxy:
            await ctx.run(host, app_commands.live(ctx.config, role), layer="proxy")

    async with ctx.lock():
        await per_role(ctx, body)


async def maintenance(
    ctx: DeployContext, *, drain_timeout: int | None = None, message: str | None = None
) -> None:
    timeout = ctx.config.drain_timeout if drain_timeout is None else drain_timeout

    async def body(host: str, role: Role) -> None:
        if role.running_proxy:
            command = app_commands.maintenance(
                ctx.config, role, drain_timeout=timeout, message=message
            )
            await ctx.run(host, command, layer="proxy")

    async with ctx.lock():
        await per_role(ctx, body)


# --- stale containers -------------------------------------------------------------------------


async def stale_containers(ctx: DeployContext, *, stop: bool = False) -> list[Section]:
    """Running containers of a role other than its current version; stopped with ``stop``."""

    async def body(host: str, role: Role) -> str | None:
        listed = await ctx.run(host, app_commands.list_versions(ctx.config, role))
        prefix = app_commands.container_prefix(ctx.config, role)
        versions = app_commands.parse_versions(listed.stdout, prefix)
        current = await current_version(ctx, host, role)
        lines = []
        for old in app_commands.stale_versions(versions, current):
            if not stop:
                lines.append(f"Detected stale container for role {role.name} with version {old}")
                continue
            lines.append(f"Stopping stale container for role {role.name} with version {old}")
            found = await ctx.run(
                host, app_commands.container_id_for_version(ctx.config, role, old)
            )
            for ident in found.stdout.split():
                await ctx.run(host, app_commands.stop(role, ident))
        return "\n".join(lines) if lines else None

    if not stop:
        return await per_role(ctx, body)
    async with ctx.lock():
        return await per_role(ctx, body)


# --- exec -------------------------------------------------------------------------------------


async def exec_(
    ctx: DeployContext,
    command: Sequence[str],
    *,
    interactive: bool = False,
    reuse: bool = False,
    env: Mapping[str, str] | None = None,
    detach: bool = False,
    version: str | None = None,
    tty: bool = True,
) -> list[Section] | Interactive:
    """Kamal's four modes: a new container of the image (``latest`` unless --version), or
    ``--reuse`` the running one; each on every selected role×host, or ``-i`` over ``ssh -t``
    on the primary host."""
    if not command:
        raise DockyardError("app exec: give the command to run, e.g. `dockyard app exec ls`")
    if detach and (interactive or reuse):
        raise DockyardError("app exec: --detach cannot be combined with --interactive or --reuse")
    if reuse and version is None:
        primary = ctx.primary_host
        roles = ctx.roles_on(primary) or ctx.roles
        version = await current_version(ctx, primary, roles[0])
        if version is None:
            raise DockerError(
                f"docker on {primary}: no running app container to reuse",
                hint="deploy first, or drop --reuse to run a new container",
            )
    config = ctx.config.with_version(version or ctx.config.latest_tag)

    if interactive:
        host = ctx.primary_host
        role = (ctx.roles_on(host) or ctx.roles)[0]
        if reuse:
            remote = app_commands.execute_in_existing_container(
                config, role, command, env=env, interactive=True, tty=tty
            )
        else:
            remote = app_commands.execute_in_new_container(
                config, role, host, command, suffix=app_commands.random_hex(6),
                env=env, interactive=True, tty=tty,
            )  # fmt: skip
        return ssh_session(ctx, host, remote)

    if not reuse:
        await login(ctx, ctx.app_hosts)
    cmd_text = shlex.join(command)

    async def body(host: str, role: Role) -> str:
        await ctx.audit(host, f"Executed cmd '{cmd_text}' on app version {config.version}",
                        role=role.name)  # fmt: skip
        if reuse:
            argv = app_commands.execute_in_existing_container(config, role, command, env=env)
        else:
            argv = app_commands.execute_in_new_container(
                config, role, host, command,
                suffix=app_commands.random_hex(6), env=env, detach=detach,
            )  # fmt: skip
        result = await ctx.run(
            host,
            argv,
            what=f"app exec on role {role.name}",
            hint=None
            if reuse
            else "a new container reads the role's env file, which `dockyard deploy` writes: "
            "deploy first, or use --reuse to run in the running container",
        )
        return result.stdout

    return await per_role(ctx, body)


async def login(ctx: DeployContext, hosts: Sequence[str]) -> None:
    """``docker login`` on the hosts (nothing for a local registry)."""
    command = registry_commands.login_for(ctx.config)
    if command is None:
        return

    async def on_host(host: str) -> None:
        await ctx.run(host, command, layer="registry", what="docker login")

    await ctx.on(hosts, on_host)


# --- logs -------------------------------------------------------------------------------------


async def logs(
    ctx: DeployContext,
    *,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
    container_id: str | None = None,
) -> list[Section]:
    if lines is None and since is None and grep is None:
        lines = DEFAULT_LOG_LINES

    async def body(host: str, role: Role) -> str:
        ident = container_id or await current_container(ctx, host, role)
        if ident is None:
            return f"No running container of role {role.name}"
        pipeline = app_commands.logs(
            ident, timestamps=timestamps, since=since, lines=lines,
            grep=grep, grep_options=grep_options,
        )  # fmt: skip
        result = await ctx.run(host, pipeline, check=False)
        if not result.ok and not (grep and result.exit_status == 1):  # grep: no match
            raise ctx.failure(host, pipeline, result, what=f"app logs of role {role.name}")
        return result.stdout

    return await per_role(ctx, body)


async def follow_logs(
    ctx: DeployContext,
    *,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
    container_id: str | None = None,
) -> Interactive:
    """``logs -f`` on the primary host (of the primary role unless -r), over ``ssh -t``."""
    host = ctx.primary_host
    role = (ctx.roles_on(host) or ctx.roles)[0]
    ident = container_id or await current_container(ctx, host, role)
    if ident is None:
        raise DockerError(
            f"docker on {host}: no running container of role {role.name}",
            hint="deploy first, or see `dockyard app containers`",
        )
    pipeline = app_commands.follow_logs(
        ident, timestamps=timestamps, lines=DEFAULT_FOLLOW_LINES if lines is None else lines,
        grep=grep, grep_options=grep_options,
    )  # fmt: skip
    return ssh_session(ctx, host, pipeline)


# --- remove -----------------------------------------------------------------------------------


async def remove(ctx: DeployContext) -> None:
    """Stop, prune the containers and, on hosts where every role is targeted, the images and
    the app directories. Running it twice is fine."""
    config = ctx.config

    async def on_host(host: str) -> None:
        roles = ctx.roles_on(host)
        for role in roles:
            await ctx.audit(host, "Removed app containers", role=role.name)
            await ctx.run(host, app_commands.remove_containers(config, role))
        if {r.name for r in config.host_roles(host)} <= {r.name for r in roles}:
            await ctx.run(host, app_commands.remove_images(config))
            app_dir = server_commands.remove_app_directory(config.service, config.destination)
            await ctx.run(host, app_dir, check=False)  # already gone on a second run
            await ctx.run(host, app_commands.remove_proxy_app_directory(config), check=False)

    async with ctx.lock():
        await stop(ctx)
        await ctx.on(ctx.app_hosts, on_host)
