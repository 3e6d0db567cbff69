"""`dockyard accessory ...` (Kamal's `kamal accessory`): NAME is one accessory or `all`."""

from __future__ import annotations

import sys
from functools import partial
from typing import Annotated

import typer

from dockyard.cli._factory import COMMAND_LINE_SETTINGS, flow_command, group
from dockyard.cli.app_cmd import (
    Follow,
    Grep,
    GrepOptions,
    Lines,
    Since,
    SkipTimestamps,
    command_words,
    show,
    show_logs,
)
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

accessory_app = group("accessory", "Manage accessories (databases, caches, ...).")

Name = Annotated[str, typer.Argument(help="The accessory's name, or `all`.", show_default=False)]


@flow_command(accessory_app, "boot")
def boot(opts: GlobalOptions, name: Name) -> None:
    """Boot the accessory where it has no container yet (files, directories, env, run)."""


@flow_command(accessory_app, "reboot")
def reboot(opts: GlobalOptions, name: Name) -> None:
    """Pull, stop, remove and boot the accessory again (it is down meanwhile)."""


@flow_command(accessory_app, "start")
def start(opts: GlobalOptions, name: Name) -> None:
    """Start the accessory's existing container."""


@flow_command(accessory_app, "stop")
def stop(opts: GlobalOptions, name: Name) -> None:
    """Stop the accessory's container."""


@flow_command(accessory_app, "restart")
def restart(opts: GlobalOptions, name: Name) -> None:
    """Stop, then start the accessory's container."""


@flow_command(accessory_app, "details", output=show)
def details(opts: GlobalOptions, name: Name) -> None:
    """Show the accessory's container on each of its hosts."""


@accessory_app.command("exec", context_settings=COMMAND_LINE_SETTINGS)
@with_global_options
def exec_(
    opts: GlobalOptions,
    name: Name,
    cmd: Annotated[list[str], typer.Argument(help="The command to run.", show_default=False)],
    interactive: Annotated[
        bool, typer.Option("-i", "--interactive", help="Run interactively (ssh -t).")
    ] = False,
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Run in the running container instead of a new one.")
    ] = False,
) -> None:
    """Run a command in a new container of the accessory's image (or the running one)."""
    from dockyard.flows.ops import accessory

    words, tty = command_words(cmd), sys.stdin.isatty()
    show(
        run_flow(
            opts,
            lambda ctx: accessory.exec_(
                ctx, name, words, interactive=interactive, reuse=reuse, tty=tty
            ),
            command="accessory",
            subcommand="exec",
        )
    )


@accessory_app.command("logs")
@with_global_options
def logs(
    opts: GlobalOptions,
    name: Name,
    since: Since = None,
    lines: Lines = None,
    grep: Grep = None,
    grep_options: GrepOptions = None,
    follow: Follow = False,
    skip_timestamps: SkipTimestamps = False,
) -> None:
    """Show the accessory's log lines."""
    from dockyard.flows.ops import accessory

    show_logs(
        opts,
        "accessory",
        partial(accessory.logs, name=name),
        partial(accessory.follow_logs, name=name) if follow else None,
        since=since,
        lines=lines,
        grep=grep,
        grep_options=grep_options,
        timestamps=not skip_timestamps,
    )


@accessory_app.command("remove")
@with_global_options
def remove(
    opts: GlobalOptions,
    name: Name,
    confirmed: Annotated[bool, typer.Option("-y", "--confirmed", help="Do not ask.")] = False,
) -> None:
    """Remove the accessory's container, image and data directory (its files and data)."""
    from dockyard.flows.ops import accessory

    if not confirmed:
        typer.confirm(
            f"This will remove all containers, images and data directories for {name}. "
            "Are you sure?",
            abort=True,
        )
    run_flow(
        opts, lambda ctx: accessory.remove(ctx, name), command="accessory", subcommand="remove"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(accessory_app, name="accessory")
