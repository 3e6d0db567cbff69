"""``accessory boot | reboot | start | stop | restart | details | exec | logs | remove`` for one
accessory or ``all`` (one at a time, in config order), as Kamal 2.11 runs them: files uploaded,
directories created and volumes mounted at boot; the container, image and the accessory's
directory in home removed by ``remove``."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.commands import accessory as acc_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands.argv import Argv, Pipeline
from dockyard.errors import ConfigError, DockyardError
from dockyard.flows.boot import make_network
from dockyard.flows.errors import DockerError
from dockyard.flows.ops.app import DEFAULT_LOG_LINES
from dockyard.flows.ops.base import Interactive, Section, first_line, ssh_session

if TYPE_CHECKING:
    from dockyard.config.models import Accessory, AccessoryPath
    from dockyard.flows.context import DeployContext

ALL = "all"


def select(ctx: DeployContext, name: str) -> list[Accessory]:
    """The accessory called ``name``, or every accessory for ``all``."""
    accessories = list(ctx.config.accessories)
    if name == ALL:
        return accessories
    found = ctx.config.accessory(name)
    if found is None:
        known = ", ".join(a.name for a in accessories) or "none"
        raise ConfigError(
            f"config: no accessory named {name!r} in {ctx.config.config_file}",
            hint=f"accessories in the config: {known} (or `all`)",
        )
    return [found]


def _one(ctx: DeployContext, name: str, what: str) -> Accessory:
    if name == ALL:
        raise DockyardError(f"accessory {what}: name one accessory, not `all`")
    return select(ctx, name)[0]


async def _prepare(ctx: DeployContext, accessory: Accessory, hosts: Sequence[str]) -> None:
    """Registry login (the accessory's own registry if it has one) and the kamal network."""
    login = registry_commands.login_for(ctx.config, accessory.registry)

    async def on_host(host: str) -> None:
        if login is not None:
            await ctx.run(host, login, layer="registry", what="docker login")
        await make_network(ctx, host)

    await ctx.on(hosts, on_host)


def file_data(ctx: DeployContext, accessory: Accessory, entry: AccessoryPath) -> bytes:
    """A file's content to upload; ``*.erb`` rendered with the accessory's env (secrets too)."""
    local = Path(entry.local)
    if not local.is_file():
        raise ConfigError(
            f"config: accessory {accessory.name}: the file {entry.local} does not exist",
            hint=f"fix accessories/{accessory.name}/files in {ctx.config.config_file}",
        )
    if not entry.is_template:
        return local.read_bytes()
    from dockyard.config import render_template

    env: dict[str, str] = dict(accessory.env.clear)
    env.update({k: v.reveal() for k, v in ctx.config.env_secrets(accessory.env).items()})
    return render_template(local, env=env, cwd=ctx.config.root).encode()


async def _boot_on_host(ctx: DeployContext, host: str, accessory: Accessory) -> None:
    """Directories, files, env file, ``docker run``: three round trips plus the uploads."""
    config = ctx.config
    transport = ctx.transport(host)
    files = [(entry, file_data(ctx, accessory, entry)) for entry in accessory.files]
    prepare = [await ctx.audit_argv(f"Booted {accessory.name} accessory")]
    for entry in accessory.directories:
        prepare += acc_commands.directory_steps(entry)
    prepare += [acc_commands.file_directory(entry) for entry, _ in files]
    prepare.append(acc_commands.ensure_env_directory(config))
    await ctx.batch(host, prepare)
    for entry, data in files:
        await transport.put(data, entry.host_path, mode=0o644)
    env_text = acc_commands.env_file_contents(config, accessory).reveal()
    await transport.put(env_text.encode(), acc_commands.env_file_path(config, accessory))
    start = [step for entry, _ in files for step in acc_commands.file_permissions(entry)]
    start.append(acc_commands.run(config, accessory, host))
    await ctx.batch(
        host,
        start,
        hint=f"see `dockyard accessory logs {accessory.name}`; "
        f"`dockyard accessory reboot {accessory.name}` replaces it",
    )
    if accessory.running_proxy:
        await _proxy_deploy(ctx, host, accessory)


async def _proxy_deploy(ctx: DeployContext, host: str, accessory: Accessory) -> None:
    ident = first_line((await ctx.run(host, acc_commands.container_id(accessory))).stdout)
    if not ident:
        raise DockerError(
            f"docker on {host}: accessory {accessory.name} is not running",
            hint=f"see `dockyard accessory logs {accessory.name}`",
        )
    deploy = acc_commands.deploy(ctx.config, accessory, ident)  # the port is added there
    await ctx.run(host, deploy, layer="proxy")


async def boot(ctx: DeployContext, name: str) -> list[str]:
    """Boot on every selected host that has no container of it yet (even a stopped one);
    returns the warnings about skipped hosts."""
    warnings: list[str] = []
    accessories = select(ctx, name)
    async with ctx.lock():
        for accessory in accessories:
            hosts = ctx.accessory_hosts(accessory)
            if not hosts:
                continue
            await _prepare(ctx, accessory, hosts)
            probe = acc_commands.info(accessory, all=True, quiet=True)

            async def present(host: str, probe: Argv = probe) -> bool:
                return bool((await ctx.run(host, probe)).stdout.strip())

            found = await ctx.on(hosts, present)
            existing = [h for h in hosts if found.get(h)]
            if existing:
                warning = (
                    f"Skipping booting `{accessory.name}` on {', '.join(existing)}, "
                    "a container already exists"
                )
                warnings.append(warning)
                ctx.warn(warning)
            todo = [h for h in hosts if h not in existing]
            if accessory.running_proxy:  # it registers with kamal-proxy: boot it where missing
                from dockyard.flows.ops import proxy as proxy_ops

                await proxy_ops.ensure_running(ctx, todo)

            async def on_host(host: str, acc: Accessory = accessory) -> None:
                await _boot_on_host(ctx, host, acc)

            await ctx.on(todo, on_host)
    return warnings


async def reboot(ctx: DeployContext, name: str) -> None:
    """Pull, stop, prune the old container and boot again (no zero-downtime path)."""
    accessories = select(ctx, name)
    async with ctx.lock():
        for accessory in accessories:
            hosts = ctx.accessory_hosts(accessory)
            await _prepare(ctx, accessory, hosts)

            async def on_host(host: str, acc: Accessory = accessory) -> None:
                await ctx.run(host, acc_commands.pull_image(acc), layer="registry",
                              what=f"pulling {acc.image}")  # fmt: skip
                await ctx.run(host, acc_commands.stop(acc), check=False)  # may be stopped
                await ctx.run(host, acc_commands.remove_container(acc))
                await _boot_on_host(ctx, host, acc)

            await ctx.on(hosts, on_host)


async def start(ctx: DeployContext, name: str) -> None:
    accessories = select(ctx, name)
    async with ctx.lock():
        for accessory in accessories:

            async def on_host(host: str, acc: Accessory = accessory) -> None:
                await ctx.audit(host, f"Started {acc.name} accessory")
                await ctx.run(host, acc_commands.start(acc))
                if acc.running_proxy:
                    await _proxy_deploy(ctx, host, acc)

            await ctx.on(ctx.accessory_hosts(accessory), on_host)


async def stop(ctx: DeployContext, name: str) -> None:
    accessories = select(ctx, name)
    async with ctx.lock():
        for accessory in accessories:

            async def on_host(host: str, acc: Accessory = accessory) -> None:
                await ctx.audit(host, f"Stopped {acc.name} accessory")
                await ctx.run(host, acc_commands.stop(acc), check=False)  # Kamal ignores errors
                if acc.running_proxy:
                    await ctx.run(host, acc_commands.remove(acc), check=False)

            await ctx.on(ctx.accessory_hosts(accessory), on_host)


async def restart(ctx: DeployContext, name: str) -> None:
    select(ctx, name)
    async with ctx.lock():
        await stop(ctx, name)
        await start(ctx, name)


def _section(accessory: Accessory, host: str, text: str) -> Section:
    return Section(f"Accessory {accessory.name} Host: {host}", host, text)


async def _stdout(ctx: DeployContext, host: str, command: Argv) -> str:
    return (await ctx.run(host, command)).stdout


async def details(ctx: DeployContext, name: str) -> list[Section]:
    sections: list[Section] = []
    for accessory in select(ctx, name):
        command = acc_commands.info(accessory)

        async def on_host(host: str, command: Argv = command) -> str:
            return await _stdout(ctx, host, command)

        done = await ctx.on(ctx.accessory_hosts(accessory), on_host)
        sections += [_section(accessory, host, text) for host, text in done.items()]
    return sections


async def exec_(
    ctx: DeployContext,
    name: str,
    command: Sequence[str],
    *,
    interactive: bool = False,
    reuse: bool = False,
    tty: bool = True,
) -> list[Section] | Interactive:
    """A new container of the accessory's image, or ``--reuse`` the running one; on every
    selected host, or ``-i`` over ``ssh -t`` on its first host."""
    if not command:
        raise DockyardError("accessory exec: give the command to run")
    accessory = _one(ctx, name, "exec")
    hosts = ctx.accessory_hosts(accessory)
    if interactive:
        host = (hosts or list(accessory.hosts))[0]
        if reuse:
            remote = acc_commands.execute_in_existing_container(
                accessory, command, interactive=True, tty=tty
            )
        else:
            remote = acc_commands.execute_in_new_container(
                ctx.config, accessory, command, interactive=True, tty=tty
            )
        return ssh_session(ctx, host, remote)
    cmd_text = shlex.join(command)
    if reuse:
        argv = acc_commands.execute_in_existing_container(accessory, command)
    else:
        argv = acc_commands.execute_in_new_container(ctx.config, accessory, command)

    async def on_host(host: str) -> str:
        await ctx.audit(host, f"Executed cmd '{cmd_text}' on {accessory.name} accessory")
        return (await ctx.run(host, argv, what=f"accessory exec ({accessory.name})")).stdout

    done = await ctx.on(hosts, on_host)
    return [_section(accessory, host, text) for host, text in done.items()]


async def logs(
    ctx: DeployContext,
    name: str,
    *,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
) -> list[Section]:
    if lines is None and since is None and grep is None:
        lines = DEFAULT_LOG_LINES
    sections: list[Section] = []
    for accessory in select(ctx, name):
        pipeline = acc_commands.logs(
            accessory, timestamps=timestamps, since=since, lines=lines,
            grep=grep, grep_options=grep_options,
        )  # fmt: skip

        async def on_host(host: str, pipeline: Pipeline = pipeline) -> str:
            result = await ctx.run(host, pipeline, check=False)
            if not result.ok and not (grep and result.exit_status == 1):  # grep: no match
                raise ctx.failure(host, pipeline, result, what="accessory logs")
            return result.stdout

        done = await ctx.on(ctx.accessory_hosts(accessory), on_host)
        sections += [_section(accessory, host, text) for host, text in done.items()]
    return sections


def follow_logs(
    ctx: DeployContext,
    name: str,
    *,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
) -> Interactive:
    accessory = _one(ctx, name, "logs --follow")
    host = (ctx.accessory_hosts(accessory) or list(accessory.hosts))[0]
    pipeline = acc_commands.follow_logs(
        accessory, timestamps=timestamps, grep=grep, grep_options=grep_options
    )
    return ssh_session(ctx, host, pipeline)


async def remove(ctx: DeployContext, name: str) -> None:
    """Stop, prune the container, remove the image and the accessory's directory in home
    (its files and directories). Running it twice is fine."""
    accessories = select(ctx, name)
    async with ctx.lock():
        for accessory in accessories:

            async def on_host(host: str, acc: Accessory = accessory) -> None:
                await ctx.audit(host, f"Removed {acc.name} accessory")
                await ctx.run(host, acc_commands.stop(acc), check=False)  # may be stopped
                if acc.running_proxy:
                    await ctx.run(host, acc_commands.remove(acc), check=False)
                await ctx.run(host, acc_commands.remove_container(acc))
                await ctx.run(host, acc_commands.remove_image(acc), check=False)  # gone: fine
                await ctx.run(host, acc_commands.remove_service_directory(acc))

            await ctx.on(ctx.accessory_hosts(accessory), on_host)
