"""``proxy boot | reboot [--rolling] | start | stop | restart | details | logs | remove |
boot_config set|get|reset``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.commands import proxy as proxy_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands import server as server_commands
from dockyard.commands.argv import Argv
from dockyard.flows.errors import FlowProxyError
from dockyard.flows.ops.app import DEFAULT_LOG_LINES, per_host
from dockyard.flows.ops.base import Interactive, Section, ssh_session

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext


async def _network(ctx: DeployContext, hosts: list[str]) -> None:
    """``docker network create kamal`` on every host; "already exists" is fine."""
    from dockyard.flows import boot as boot_flow

    await ctx.on(hosts, lambda host: boot_flow.make_network(ctx, host))


async def _login(ctx: DeployContext, host: str) -> None:
    login = registry_commands.login_for(ctx.config)
    if login is not None:
        await ctx.run(
            host, login, layer="registry", what="docker login",
            hint="check registry.username and the password secret",
        )  # fmt: skip


async def run_argv(ctx: DeployContext, host: str) -> Argv:
    """The proxy's ``docker run``: from the host's ``proxy.run``, else from the (deprecated)
    boot-config files in ``.kamal/proxy`` with Kamal's defaults for absent files."""
    from_config = proxy_commands.run_for_host(ctx.config, host)
    if from_config is not None:
        return from_config
    reads = [proxy_commands.read_boot_file(path) for path in proxy_commands.BOOT_FILES]
    results = await ctx.batch(host, reads, stop_on_error=False, check=False)
    options, image, version, run_command = (r.stdout if r.ok else None for r in results)
    return proxy_commands.legacy_run(options, image, version, run_command)


async def boot(ctx: DeployContext) -> None:
    """Kamal's ``proxy boot``: the kamal network on every host; on proxy hosts refuse a proxy
    older than the minimum version, then start the stopped container or run a new one (with a
    registry login first). A running proxy is left alone."""
    async with ctx.lock():
        await _network(ctx, ctx.hosts)
        await ctx.on(ctx.proxy_hosts, lambda host: boot_host(ctx, host))


async def boot_host(ctx: DeployContext, host: str) -> None:
    """Boot kamal-proxy on one host unless it runs (see :func:`boot`); the kamal network and
    ``.kamal/proxy/apps-config`` are made in the same round trip as the state check."""
    from dockyard.flows import boot as boot_flow

    state = await boot_flow.survey(ctx, host, [], "-", proxy=True, network=True)
    await boot_flow.ensure_network(ctx, host, state)
    version = proxy_commands.parse_version(state.proxy_image or "")
    if version and proxy_commands.is_older(version):
        raise FlowProxyError(
            f"proxy on {host}: kamal-proxy version {version} is too old (the minimum "
            f"is {proxy_commands.MINIMUM_VERSION})",
            hint="run `dockyard proxy reboot` to replace it",
        )
    if state.proxy_running:
        ctx.info("kamal-proxy is already running", host)
        return
    await _login(ctx, host)
    if state.proxy_image is None and ctx.config.proxy_run(host) is None:
        # no container and no proxy.run: honour the boot-config files
        await _run(ctx, host, await run_argv(ctx, host))
        return
    await boot_flow.boot_proxy(ctx, host, state)


async def ensure_running(ctx: DeployContext, hosts: list[str]) -> None:
    """Boot kamal-proxy where it is not running on ``hosts`` (for proxied accessories)."""
    if hosts:
        await ctx.on(hosts, lambda host: boot_host(ctx, host))


async def _run(ctx: DeployContext, host: str, run: Argv) -> None:
    from dockyard.flows import boot as boot_flow

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
    await boot_flow.wait_for_proxy(ctx, host)


async def reboot(ctx: DeployContext, *, rolling: bool = False) -> None:
    """Kamal's ``proxy reboot``: per group (every proxy host at once, or one host at a time
    with ``rolling``), the ``pre-proxy-reboot`` hook, then on each host: audit, registry login,
    stop and remove the container, ``docker run`` a new one; then ``post-proxy-reboot``.
    Apps on a host are unreachable between the stop and the new proxy's start; the new proxy
    restores its routes from its state volume."""
    hosts = ctx.proxy_hosts
    groups = [[host] for host in hosts] if rolling else [hosts]
    async with ctx.lock():
        await _network(ctx, hosts)
        for group in groups:
            if not group:
                continue
            await ctx.run_hook("pre-proxy-reboot", hosts=group)

            async def on_host(host: str) -> None:
                await ctx.audit(host, "Rebooted proxy")
                await _login(ctx, host)
                run = await run_argv(ctx, host)
                ctx.info("stopping and removing kamal-proxy", host)
                await ctx.run(host, proxy_commands.stop(), check=False)  # may not be running
                await ctx.batch(
                    host,
                    [
                        proxy_commands.remove_container(),
                        proxy_commands.ensure_apps_config_directory(),
                    ],
                    layer="proxy",
                )
                ctx.info("starting kamal-proxy", host)
                await _run(ctx, host, run)

            await ctx.on(group, on_host)
            await ctx.run_hook("post-proxy-reboot", hosts=group)


async def start(ctx: DeployContext) -> None:
    async def on_host(host: str) -> None:
        await ctx.audit(host, "Started proxy")
        await ctx.run(host, proxy_commands.start(), layer="proxy", what="starting kamal-proxy")

    async with ctx.lock():
        await ctx.on(ctx.proxy_hosts, on_host)


async def stop(ctx: DeployContext) -> None:
    async def on_host(host: str) -> None:
        await ctx.audit(host, "Stopped proxy")
        await ctx.run(host, proxy_commands.stop(), layer="proxy", what="stopping kamal-proxy")

    async with ctx.lock():
        await ctx.on(ctx.proxy_hosts, on_host)


async def restart(ctx: DeployContext) -> None:
    async with ctx.lock():
        await stop(ctx)
        await start(ctx)


async def details(ctx: DeployContext) -> list[Section]:
    async def body(host: str) -> str:
        return (await ctx.run(host, proxy_commands.info())).stdout

    return await per_host(ctx, ctx.proxy_hosts, body, "Proxy")


async def logs(
    ctx: DeployContext,
    *,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
) -> list[Section]:
    if lines is None and since is None and grep is None:
        lines = DEFAULT_LOG_LINES
    pipeline = proxy_commands.logs(
        timestamps=timestamps, since=since, lines=lines, grep=grep, grep_options=grep_options
    )

    async def body(host: str) -> str:
        result = await ctx.run(host, pipeline, check=False)
        if not result.ok and not (grep and result.exit_status == 1):  # grep: no match
            raise ctx.failure(host, pipeline, result, layer="proxy", what="proxy logs")
        return result.stdout

    return await per_host(ctx, ctx.proxy_hosts, body, "Proxy")


def follow_logs(
    ctx: DeployContext,
    *,
    grep: str | None = None,
    grep_options: str | None = None,
    timestamps: bool = True,
) -> Interactive:
    host = (ctx.proxy_hosts or [ctx.primary_host])[0]
    pipeline = proxy_commands.follow_logs(
        timestamps=timestamps, grep=grep, grep_options=grep_options
    )
    return ssh_session(ctx, host, pipeline)


async def remove(ctx: DeployContext, *, force: bool = False) -> str | None:
    """Remove the proxy container, its image and ``.kamal/proxy``. Without ``force`` it
    refuses (returns the reason) while apps are still installed on a host."""
    hosts = ctx.proxy_hosts
    async with ctx.lock():
        if not force:

            async def installed(host: str) -> int:
                listed = await ctx.run(host, server_commands.list_app_directories(), check=False)
                return server_commands.count_lines(listed.stdout) if listed.ok else 0

            counts = await ctx.on(hosts, installed)
            busy = [h for h in hosts if counts.get(h)]
            if busy:
                return (
                    f"Not removing the proxy: apps are still installed on {', '.join(busy)} "
                    "(remove them first, or use --force)"
                )

        async def on_host(host: str) -> None:
            await ctx.audit(host, "Removed proxy")
            await ctx.run(host, proxy_commands.stop(), check=False)  # may be stopped already
            await ctx.run(host, proxy_commands.remove_container(), layer="proxy")
            await ctx.run(host, proxy_commands.remove_image(), layer="proxy")
            await ctx.run(host, proxy_commands.remove_proxy_directory(), check=False)

        await ctx.on(hosts, on_host)
    return None


async def boot_config_set(ctx: DeployContext, options: proxy_commands.BootConfigOptions) -> None:
    """Write (or remove, for default values) ``.kamal/proxy/{options,image,...}``."""
    files = proxy_commands.boot_config_files(options)

    async def on_host(host: str) -> None:
        await ctx.run(host, proxy_commands.ensure_proxy_directory())
        for path, content in files.items():
            if content is None:
                await ctx.run(host, proxy_commands.reset_boot_file(path), check=False)
            else:
                await ctx.transport(host).put(content.encode(), path, mode=0o644)

    await ctx.on(ctx.proxy_hosts, on_host)


async def boot_config_get(ctx: DeployContext) -> list[Section]:
    async def body(host: str) -> str:
        values: list[str | None] = []
        for path in proxy_commands.BOOT_FILES:
            read = await ctx.run(host, proxy_commands.read_boot_file(path), check=False)
            values.append(read.stdout if read.ok else None)
        options, image, version, run_command = values
        return proxy_commands.boot_config_text(options, image, version, run_command)

    return await per_host(ctx, ctx.proxy_hosts, body, "Proxy")


async def boot_config_reset(ctx: DeployContext) -> None:
    async def on_host(host: str) -> None:
        for path in proxy_commands.BOOT_FILES:
            await ctx.run(host, proxy_commands.reset_boot_file(path), check=False)

    await ctx.on(ctx.proxy_hosts, on_host)
