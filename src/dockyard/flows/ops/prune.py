"""``prune all | containers | images`` on every selected host, accessory hosts included.

Stopped containers beyond the newest ``retain`` are removed; then images that no container of
the service uses (the latest tag kept), so the images of retained versions survive for rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.commands import prune as prune_commands
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext


def _retain(ctx: DeployContext, retain: int | None) -> int:
    value = ctx.config.retain_containers if retain is None else retain
    if value < 1:
        raise DockyardError(
            f"prune: --retain must be at least 1, not {value}",
            hint="the newest stopped containers are what `rollback` returns to",
        )
    return value


async def containers(ctx: DeployContext, *, retain: int | None = None) -> dict[str, list[str]]:
    """Remove stopped containers of the service beyond the newest ``retain``; by host."""
    keep = _retain(ctx, retain)
    service = ctx.config.service

    async def on_host(host: str) -> list[str]:
        await ctx.audit(host, "Pruned containers")
        listed = await ctx.run(host, prune_commands.list_stopped_containers(service))
        removed = prune_commands.containers_to_remove(listed.stdout, keep)
        for container in removed:
            await ctx.run(host, prune_commands.remove_container(container))
        return removed

    async with ctx.lock():
        return await ctx.on(ctx.hosts, on_host)


async def images(ctx: DeployContext) -> dict[str, list[str]]:
    """Prune dangling images, then remove tagged images no container uses; by host."""
    config = ctx.config

    async def on_host(host: str) -> list[str]:
        await ctx.audit(host, "Pruned images")
        await ctx.run(host, prune_commands.dangling_images(config.service))
        listed = await ctx.run(host, prune_commands.list_images(config.service))
        used = await ctx.run(host, prune_commands.list_used_images(config.service))
        tags = prune_commands.images_to_remove(
            listed.stdout,
            used.stdout.splitlines(),
            latest_image=config.latest_image,
            repository=config.repository,
        )
        for tag in tags:
            await ctx.run(host, prune_commands.remove_image(tag))
        return tags

    async with ctx.lock():
        return await ctx.on(ctx.hosts, on_host)


async def all_(ctx: DeployContext, *, retain: int | None = None) -> dict[str, list[str]]:
    """Containers, then images; what was removed, by host."""
    async with ctx.lock():
        removed = await containers(ctx, retain=retain)
        for host, tags in (await images(ctx)).items():
            removed.setdefault(host, []).extend(tags)
    return removed
