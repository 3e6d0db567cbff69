"""`dockyard server bootstrap | exec` (Kamal's `kamal server`)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.app_cmd import COMMAND_LINE_SETTINGS, group, show
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

server_app = group("server", "Bootstrap servers and run commands on them.")


@server_app.command("bootstrap")
@with_global_options
def bootstrap(opts: GlobalOptions) -> None:
    """Install Docker where it is missing and prepare the servers."""
    from dockyard.flows.ops import server

    run_flow(opts, server.bootstrap, command="server", subcommand="bootstrap")


@server_app.command("exec", context_settings=COMMAND_LINE_SETTINGS)
@with_global_options
def exec_(
    opts: GlobalOptions,
    cmd: Annotated[list[str], typer.Argument(help="The command line.", show_default=False)],
    interactive: Annotated[
        bool, typer.Option("-i", "--interactive", help="Run interactively on the primary host.")
    ] = False,
) -> None:
    """Run a command line on every server and show the output per server."""
    from dockyard.flows.ops import server

    show(
        run_flow(
            opts,
            lambda ctx: server.exec_(ctx, cmd, interactive=interactive),
            command="server",
            subcommand="exec",
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
