"""`dockyard lock acquire | release | status` (the deploy lock on the primary host)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli._factory import flow_command, group
from dockyard.cli.options import GlobalOptions

lock_app = group("lock", "Manage the deploy lock.")


@flow_command(lock_app, "acquire", output=typer.echo, subcommand=False)
def acquire(
    opts: GlobalOptions,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Why (shown to others).", show_default=False)
    ],
) -> None:
    """Take the deploy lock so no one else deploys."""


@flow_command(lock_app, "release", output=typer.echo)
def release(opts: GlobalOptions) -> None:
    """Release the deploy lock."""


@flow_command(lock_app, "status", output=typer.echo)
def status(opts: GlobalOptions) -> None:
    """Show who holds the deploy lock, since when and why."""


def register(app: typer.Typer) -> None:
    app.add_typer(lock_app, name="lock")
