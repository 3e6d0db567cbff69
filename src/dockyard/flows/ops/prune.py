"""``prune all | containers | images`` on every selected host, accessory hosts included.

Stopped containers beyond the newest ``retain`` are removed; then images that no container of
the service uses (the latest tag kept), so the images of retained versions survive for rollback.

A removal that fails (an image still in use by a container of another service, a tag already
gone, a container being removed elsewhere) is reported as a warning and the rest goes on: prune
is housekeeping and never fails a deploy or the command because one ``docker rm``/``rmi`` failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.commands import prune as prune_commands
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext
    from dockyard.remote.result import Result


@dataclass(frozen=True, slots=True)
class Removal:
    """What a batch of ``docker rm``/``rmi`` calls did: the items removed, and the ones that
    failed with the first line of docker's message."""

    removed: list[str]
    failed: list[tuple[str, str]]


def removal_outcome(items: Sequence[str], results: Sequence[Result]) -> Removal:
    """Pair each item with its result (a missing result, as after a batch stopped early, counts
    as a failure)."""
    removed: list[str] = []
    failed: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        result = results[index] if index < len(results) else None
        if result is not None and result.ok:
            removed.append(item)
            continue
        text = "" if result is None else (result.stderr.strip() or result.stdout.strip())
        reason = text.splitlines()[0] if text else "not run"
        failed.append((item, reason))
    return Removal(removed, failed)


def warn_failed(ctx: DeployContext, host: str, what: str, removal: Removal) -> None:
    for item, reason in removal.failed:
        ctx.warn(f"could not remove {what} {item} (kept, prune goes on): {reason}", host)


async def remove_images(ctx: DeployContext, host: str, tags: Sequence[str]) -> list[str]:
    """``docker rmi`` each tag in one round trip; failures become warnings. The tags removed."""
    if not tags:
        return []
    commands = [prune_commands.remove_image(tag) for tag in tags]
    results = await ctx.batch(host, commands, stop_on_error=False, check=False)
    outcome = removal_outcome(tags, results)
    warn_failed(ctx, host, "image", outcome)
    return outcome.removed


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
        doomed = prune_commands.containers_to_remove(listed.stdout, keep)
        if not doomed:
            return []
        commands = [prune_commands.remove_container(c) for c in doomed]
        results = await ctx.batch(host, commands, stop_on_error=False, check=False)
        outcome = removal_outcome(doomed, results)
        warn_failed(ctx, host, "container", outcome)
        return outcome.removed

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
        return await remove_images(ctx, host, tags)

    async with ctx.lock():
        return await ctx.on(ctx.hosts, on_host)


async def all_(ctx: DeployContext, *, retain: int | None = None) -> dict[str, list[str]]:
    """Containers, then images; what was removed, by host."""
    async with ctx.lock():
        removed = await containers(ctx, retain=retain)
        for host, tags in (await images(ctx)).items():
            removed.setdefault(host, []).extend(tags)
    return removed
