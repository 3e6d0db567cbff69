"""`dockyard accessory ...` (Kamal's `kamal accessory`): NAME is one accessory or `all`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli._factory import COMMAND_LINE_SETTINGS, flow_command, group
from dockyard.cli.app_cmd import command_words, show
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext
    from dockyard.flows.ops.base import Interactive

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
    since: Annotated[str | None, typer.Option("-s", "--since", help="Logs since.")] = None,
    lines: Annotated[int | None, typer.Option("-n", "--lines", help="Number of lines.")] = None,
    grep: Annotated[str | None, typer.Option("-g", "--grep", help="Only lines matching.")] = None,
    grep_options: Annotated[
        str | None, typer.Option("--grep-options", help="Extra grep options.")
    ] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Follow (ssh -t).")] = False,
    skip_timestamps: Annotated[
        bool, typer.Option("-T", "--skip-timestamps", help="Leave out timestamps.")
    ] = False,
) -> None:
    """Show the accessory's log lines."""
    from dockyard.flows.ops import accessory

    timestamps = not skip_timestamps
    if follow:
        show(
            run_flow(
                opts,
                lambda ctx: _follow(ctx, name, grep, grep_options, timestamps),
                command="accessory",
                subcommand="logs",
            )
        )
        return
    show(
        run_flow(
            opts,
            lambda ctx: accessory.logs(
                ctx,
                name,
                since=since,
                lines=lines,
                grep=grep,
                grep_options=grep_options,
                timestamps=timestamps,
            ),
            command="accessory",
            subcommand="logs",
        )
    )


async def _follow(
    ctx: DeployContext, name: str, grep: str | None, options: str | None, timestamps: bool
) -> Interactive:
    from dockyard.flows.ops import accessory

    return accessory.follow_logs(ctx, name, grep=grep, grep_options=options, timestamps=timestamps)


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
