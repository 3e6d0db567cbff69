"""The table of commands, and the root group that imports a command only when it is used.

Typer turns every registered command into a click command up front (it inspects every
signature), which costs more than all of `dockyard --help` may. So the root group knows each
top-level command by name, module and one-line help, and imports the module (and lets Typer
build its commands) only when that command is invoked or asked for its own help.
`tests/unit/test_cli.py` checks this table against what the modules really register.

Each module named here defines `register(app)` and imports only Typer at module level.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

#: Top-level command -> (module under dockyard.cli, first paragraph of its help).
COMMANDS: dict[str, tuple[str, str]] = {
    "secrets": (
        "secrets_cmd",
        "Fetch secrets from a password manager, pick one out, or show the resolved secrets.",
    ),
    "config": (
        "config_cmd",
        "Show the combined config, in the same form as `kamal config` (secret values masked).",
    ),
    "docs": (
        "docs_cmd",
        "Show the configuration reference for a section (default: the top level).",
    ),
    "init": (
        "init_cmd",
        "Create config/deploy.yml, .kamal/secrets and .kamal/hooks/*.sample (never overwrites).",
    ),
    "setup": ("deploy_cmd", "Set up the servers (Docker check, kamal-proxy) and deploy the app."),
    "deploy": (
        "deploy_cmd",
        "Build and push the image, then deploy it with zero downtime "
        "(boots kamal-proxy if needed, prunes old containers).",
    ),
    "redeploy": ("deploy_cmd", "Deploy without booting kamal-proxy and without pruning."),
    "rollback": (
        "deploy_cmd",
        "Roll back to a version that still exists as a container (list them without VERSION).",
    ),
    "remove": (
        "deploy_cmd",
        "Remove the app's containers, images and files (and kamal-proxy when unused) "
        "from the servers. Safe to run twice.",
    ),
    "build": ("build_cmd", "Build the app image, push it and pull it on the servers."),
    "app": ("app_cmd", "Manage the app's containers on the servers."),
    "proxy": ("proxy_cmd", "Manage kamal-proxy on the servers."),
    "registry": (
        "registry_cmd",
        "Set up the local registry, or log in to and out of the registry.",
    ),
    "accessory": ("accessory_cmd", "Manage accessories (databases, caches, ...)."),
    "server": ("server_cmd", "Bootstrap servers and run commands on them."),
    "lock": ("lock_cmd", "Manage the deploy lock."),
    "prune": ("prune_cmd", "Remove old containers and images of the app."),
    "details": ("details_cmd", "Show the proxy, app and accessory containers on the servers."),
    "audit": ("details_cmd", "Show the last 50 lines of the audit log on each server."),
    "doctor": (
        "doctor_cmd",
        "Check every layer a deploy needs (local Docker, config, SSH, servers, registry, proxy, "
        "app) and say how to fix what fails.",
    ),
    "backup": (
        "backup_cmd",
        "Back up the app's SQLite databases (consistent while it runs), list and restore.",
    ),
}

#: Modules under dockyard.cli that add commands, in the order they are listed.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def load_module_commands(module: str) -> dict[str, Any]:
    """The click commands one module registers, built by Typer on a scratch application."""
    from typer.main import get_command

    scratch = typer.Typer(rich_markup_mode=None, add_completion=False)

    @scratch.callback()
    def _group() -> None:
        """Forces a group, so a module with one command still gives a name -> command map."""

    importlib.import_module(f"dockyard.cli.{module}").register(scratch)
    group = get_command(scratch)
    assert isinstance(group, TyperGroup)
    return dict(group.commands)


class LazyGroup(TyperGroup):
    """The root command group.

    Commands in COMMANDS are loaded on first use; an unknown first word is looked up in the
    config's `aliases` (as Kamal does) before "No such command" is reported.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, dict[str, Any]] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module = COMMANDS[cmd_name][0]
        if module not in self._loaded:
            self._loaded[module] = load_module_commands(module)
        return self._loaded[module].get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            from dockyard.cli.details_cmd import alias_expansion

            expanded = alias_expansion(args[0], args[1:])
            if expanded is not None and expanded[0] != args[0]:
                return super().resolve_command(ctx, expanded)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        from typer._click.utils import make_default_short_help

        texts = [
            (name, command.help or "")
            for name, command in self.commands.items()
            if not command.hidden
        ]
        texts += [(name, text) for name, (_, text) in COMMANDS.items()]
        if texts:
            limit = formatter.width - 6 - max(len(name) for name, _ in texts)
            rows = [(name, make_default_short_help(text, limit)) for name, text in texts]
            with formatter.section("Commands"):
                formatter.write_dl(rows)
