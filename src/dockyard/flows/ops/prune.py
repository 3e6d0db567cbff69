"""``prune all | containers | images`` on every selected host, accessory hosts included.

Stopped containers beyond the newest ``retain`` are removed; then images that no container of
the service uses (the latest tag kept), so the images of retained versions survive for rollback.

A removal that fails (an image still in use by a container of another service, a tag already
gone, a container being removed elsewhere) is reported as a warning and the rest goes on: prune
is housekeeping and never fails a deploy or the command because one ``docker rm``/``rmi`` failed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dockyard.commands import prune as prune_commands
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.commands.argv import Argv
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


def _retain(ctx: DeployContext, retain: int | None) -> int:
    value = ctx.config.retain_containers if retain is None else retain
    if value < 1:
        raise DockyardError(
            f"prune: --retain must be at least 1, not {value}",
            hint="the newest stopped containers are what `rollback` returns to",
        )
    return value


# -- one plan per host: the listings in one round trip, the removals in one more ----------------


async def queries(
    ctx: DeployContext, *, containers: bool = True, images: bool = True
) -> list[Argv]:
    """Kamal's audit lines for what is pruned, then what a prune decides on (one container
    listing, one image listing; both, as the images in use are those of the containers):
    removals follow only when there is something to remove."""
    service = ctx.config.service
    audits = [("Pruned containers", containers), ("Pruned images", images)]
    return [
        *[await ctx.audit_argv(line) for line, wanted in audits if wanted],
        prune_commands.list_service_containers(service),
        prune_commands.list_images(service),
    ]


def plan(
    ctx: DeployContext, host: str, results: Sequence[Result], *, retain: int | None = None
) -> prune_commands.PrunePlan | None:
    """The prune of ``host`` from the results of :func:`queries` (the last two count; they may
    ride at the end of a longer batch); None, with a warning, when docker did not list what it
    has. ``retain``: stopped containers to keep (default: ``retain_containers``)."""
    containers, images = results[-2], results[-1]
    if not containers.ok:
        ctx.warn(f"prune skipped: could not list the containers: {first_line(containers)}", host)
        return None
    config = ctx.config
    decided = prune_commands.plan_prune(
        containers.stdout,
        images.stdout if images.ok else "",
        retain=max(1, config.retain_containers if retain is None else retain),
        latest_image=config.latest_image,
        repository=config.repository,
    )
    if not images.ok:
        ctx.warn(f"images not pruned: could not list them: {first_line(images)}", host)
    return decided


def first_line(result: Result) -> str:
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return text[0] if text else result.describe_status()


def report(
    ctx: DeployContext, host: str, decided: prune_commands.PrunePlan, results: Sequence[Result]
) -> list[str]:
    """Warn about each failed ``docker rm``/``image prune``/``rmi`` (never a failure: prune is
    housekeeping); the containers and images removed."""
    count = len(decided.containers)
    containers = removal_outcome(decided.containers, results[:count])
    warn_failed(ctx, host, "container", containers)
    rest = list(results[count:])
    if decided.dangling:
        dangling = rest.pop(0) if rest else None
        if dangling is None or not dangling.ok:
            reason = first_line(dangling) if dangling is not None else "not run"
            ctx.warn(f"could not prune the dangling images (prune goes on): {reason}", host)
    images = removal_outcome(decided.images, rest)
    warn_failed(ctx, host, "image", images)
    return containers.removed + images.removed


async def apply(
    ctx: DeployContext,
    plans: Mapping[str, prune_commands.PrunePlan | None],
    *,
    unlock: bool,
) -> dict[str, list[str]]:
    """Carry out the plans: the other hosts' removals side by side, then (``unlock``) the
    primary host's removals with the lock's release in one round trip. What was removed, by
    host (every host with a plan, even when nothing was to be removed)."""
    service = ctx.config.service
    primary = ctx.primary_host
    removed: dict[str, list[str]] = {host: [] for host, p in plans.items() if p is not None}

    async def one(host: str) -> None:
        decided = plans[host]
        assert decided is not None
        commands = prune_commands.prune_commands(decided, service)
        results = await ctx.batch(host, commands, stop_on_error=False, check=False)
        removed[host] = report(ctx, host, decided, results)

    others = [
        host
        for host, p in plans.items()
        if p is not None and not p.empty and not (unlock and host == primary)
    ]
    if others:
        await ctx.on(others, one)
    if unlock:
        decided = plans.get(primary)
        removals = prune_commands.prune_commands(decided, service) if decided is not None else []
        results = await ctx.release_lock(before=removals)
        if decided is not None:
            removed[primary] = report(ctx, primary, decided, results)
    return removed


async def _prune(
    ctx: DeployContext, *, retain: int | None, containers: bool, images: bool
) -> dict[str, list[str]]:
    """Plan on every selected host (one round trip each), then remove, under the lock; the
    lock taken here goes with the primary host's removals."""
    # images alone: every container stays, and with it the image it uses
    keep = _retain(ctx, retain) if containers else sys.maxsize
    owned = not ctx.holding_lock
    async with ctx.lock("Automatic deploy lock"):
        plans: dict[str, prune_commands.PrunePlan | None] = {}

        async def one(host: str) -> None:
            commands = await queries(ctx, containers=containers, images=images)
            results = await ctx.batch(host, commands, stop_on_error=False, check=False)
            decided = plan(ctx, host, results, retain=keep)
            if decided is not None and not images:
                decided = replace(decided, dangling=False, images=[])
            plans[host] = decided

        await ctx.on(ctx.hosts, one)
        return await apply(ctx, plans, unlock=owned)


async def containers(ctx: DeployContext, *, retain: int | None = None) -> dict[str, list[str]]:
    """Remove stopped containers of the service beyond the newest ``retain``; by host."""
    return await _prune(ctx, retain=retain, containers=True, images=False)


async def images(ctx: DeployContext) -> dict[str, list[str]]:
    """Prune dangling images, then remove tagged images no container uses; by host."""
    return await _prune(ctx, retain=None, containers=False, images=True)


async def all_(ctx: DeployContext, *, retain: int | None = None) -> dict[str, list[str]]:
    """Containers, then the images no remaining container uses; what was removed, by host."""
    return await _prune(ctx, retain=retain, containers=True, images=True)
