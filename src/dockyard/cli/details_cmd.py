"""`dockyard details`, `dockyard audit`, and the config's `aliases` as top-level commands.

An alias (`aliases: {console: app exec -i --reuse "bin/rails console"}`) is resolved by the
root group (`dockyard.cli.register.LazyGroup`) when the first word is not a built-in command:
the config named by `-c`/`-d` in the arguments is read, the alias is split shell-style and the
remaining arguments are appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from dockyard.cli.app_cmd import show
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options


def details(opts: GlobalOptions) -> None:
    """Show the proxy, app and accessory containers on the servers."""
    from dockyard.flows.ops import details as details_flow

    show(run_flow(opts, details_flow.details, command="details"))


def audit(opts: GlobalOptions) -> None:
    """Show the last 50 lines of the audit log on each server."""
    from dockyard.flows.ops import details as details_flow

    show(run_flow(opts, details_flow.audit, command="audit"))


def _option_value(args: Sequence[str], short: str, long: str) -> str | None:
    for index, arg in enumerate(args):
        if arg in (short, long) and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def alias_expansion(name: str, rest: Sequence[str]) -> list[str] | None:
    """The arguments ``name`` stands for, if it is an alias in the config; None otherwise (or
    when no config can be read, so the usual "No such command" error is shown)."""
    from dockyard.config import load_config
    from dockyard.errors import DockyardError
    from dockyard.flows.ops.details import expand_alias

    config_file = _option_value(rest, "-c", "--config-file")
    destination = _option_value(rest, "-d", "--destination")
    try:
        config = load_config(Path(config_file) if config_file else None, destination)
    except DockyardError:
        return None
    if name not in config.aliases:
        return None
    return expand_alias(config.aliases, name, rest, source=str(config.config_file))


def register(app: typer.Typer) -> None:
    app.command("details")(with_global_options(details))
    app.command("audit")(with_global_options(audit))
