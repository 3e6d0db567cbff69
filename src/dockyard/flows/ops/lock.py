"""``lock acquire | release | status`` (the lock lives on the primary host)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.commands import lock as lock_commands

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext

NO_LOCK = "There is no deploy lock"


async def acquire(ctx: DeployContext, message: str) -> str:
    """Create the lock; ``LockHeldError`` (naming who holds it, since when, why) if held."""
    await ctx.acquire_lock(message)
    return f"Acquired the deploy lock on {ctx.primary_host}"


async def release(ctx: DeployContext) -> str:
    if await ctx.lock_status() is None:
        return NO_LOCK
    primary = ctx.primary_host
    remove_details, remove_dir = lock_commands.release(ctx.config.service, ctx.config.destination)
    await ctx.run(primary, remove_details, check=False, layer="lock")  # may be half-made
    await ctx.run(primary, remove_dir, layer="lock", what="removing the deploy lock")
    ctx.holding_lock = False
    return f"Released the deploy lock on {primary}"


async def status(ctx: DeployContext) -> str:
    details = await ctx.lock_status()
    return NO_LOCK if details is None else details
