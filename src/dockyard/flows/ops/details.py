"""``details`` (proxy, app, every accessory, and the versions available for rollback),
``audit`` and the config's ``aliases``."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dockyard.commands import accessory as accessory_commands
from dockyard.commands import app as app_commands
from dockyard.commands import audit as audit_commands
from dockyard.commands import proxy as proxy_commands
from dockyard.errors import ConfigError
from dockyard.flows.ops import accessory, app
from dockyard.flows.ops.app import per_host
from dockyard.flows.ops.base import Section

if TYPE_CHECKING:
    from dockyard.commands.argv import Argv
    from dockyard.flows.context import DeployContext

AUDIT_LINES = 50


async def details(ctx: DeployContext) -> list[Section]:
    """The proxy, app and accessory containers and the versions available for rollback, in
    that order, as ``proxy details``, ``app details``, ``accessory details all`` and
    :func:`app.rollback_versions` give them, but in one round trip per host: every listing a
    host owes runs there side by side."""
    config = ctx.config
    # per host: (key, command); a key says which section the output belongs to
    asked: dict[str, list[tuple[tuple[str, str], Argv]]] = {}

    def ask(host: str, key: tuple[str, str], command: Argv) -> None:
        asked.setdefault(host, []).append((key, command))

    proxy_hosts = ctx.proxy_hosts
    for host in proxy_hosts:
        ask(host, ("proxy", ""), proxy_commands.info())
    app_hosts = ctx.app_hosts
    for host in app_hosts:
        for role in ctx.roles_on(host):
            ask(host, ("app", role.name), app_commands.info(config, role))
    accessories = accessory.select(ctx, accessory.ALL)
    accessory_hosts = {a.name: ctx.accessory_hosts(a) for a in accessories}
    for item in accessories:
        for host in accessory_hosts[item.name]:
            ask(host, ("accessory", item.name), accessory_commands.info(item))
    for host in app_hosts:
        if ctx.roles_on(host):
            ask(host, ("rollback", ""), app_commands.list_app_containers(config))

    async def on_host(host: str) -> dict[tuple[str, str], str]:
        keys = [key for key, _ in asked[host]]
        commands = [command for _, command in asked[host]]
        results = await ctx.batch(host, commands, stop_on_error=False, parallel=True)
        return dict(zip(keys, (r.stdout for r in results), strict=True))

    found = await ctx.on(list(asked), on_host)
    sections = [Section(f"Proxy Host: {h}", h, found[h][("proxy", "")]) for h in proxy_hosts]
    sections += [
        Section(f"App Host: {h}", h, found[h][("app", role.name)])
        for h in app_hosts
        for role in ctx.roles_on(h)
    ]
    sections += [
        Section(f"Accessory {item.name} Host: {h}", h, found[h][("accessory", item.name)])
        for item in accessories
        for h in accessory_hosts[item.name]
    ]
    rollback = [h for h in app_hosts if ctx.roles_on(h)]
    done = await ctx.on(
        rollback, lambda h: app.rollback_sections(ctx, h, found[h][("rollback", "")])
    )
    sections += [section for h in rollback for section in done[h]]
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
