"""``details`` (proxy, app, every accessory, and the versions available for rollback),
``audit`` and the config's ``aliases``."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dockyard.commands import audit as audit_commands
from dockyard.errors import ConfigError
from dockyard.flows.ops import accessory, app, proxy
from dockyard.flows.ops.app import per_host
from dockyard.flows.ops.base import Section

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext

AUDIT_LINES = 50


async def details(ctx: DeployContext) -> list[Section]:
    sections = await proxy.details(ctx)
    sections += await app.details(ctx)
    sections += await accessory.details(ctx, accessory.ALL)
    sections += await app.rollback_versions(ctx)
    return sections


async def audit(ctx: DeployContext, *, lines: int = AUDIT_LINES) -> list[Section]:
    """The last lines of the audit log on every selected host (empty where there is none)."""
    command = audit_commands.reveal(ctx.config.service, ctx.config.destination, lines)

    async def body(host: str) -> str:
        result = await ctx.run(host, command, check=False)
        return result.stdout if result.ok else ""

    return await per_host(ctx, ctx.hosts, body, "App")


def expand_alias(
    aliases: Mapping[str, object], name: str, extra: Sequence[str], *, source: str = "config"
) -> list[str]:
    """The command line an alias stands for (split shell-style), ``extra`` appended."""
    if name not in aliases:
        known = ", ".join(sorted(aliases)) or "none"
        raise ConfigError(f"{source}: no alias named {name!r}", hint=f"aliases: {known}")
    text = str(aliases[name])
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: aliases/{name}: cannot split {text!r}: {exc}") from None
    if not words:
        raise ConfigError(f"{source}: aliases/{name} is empty")
    if words[0] == name:
        raise ConfigError(f"{source}: aliases/{name} expands to itself")
    return [*words, *extra]
