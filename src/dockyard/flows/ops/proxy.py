"""``proxy start | stop | restart | details | logs | remove | boot_config set|get|reset``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.commands import proxy as proxy_commands
from dockyard.commands import server as server_commands
from dockyard.flows.ops.app import DEFAULT_LOG_LINES, per_host
from dockyard.flows.ops.base import Interactive, Section, ssh_session

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext


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
