"""`dockyard lock acquire | release | status` (the deploy lock on the primary host)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.app_cmd import group
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

lock_app = group("lock", "Manage the deploy lock.")


@lock_app.command("acquire")
@with_global_options
def acquire(
    opts: GlobalOptions,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Why (shown to others).", show_default=False)
    ],
) -> None:
    """Take the deploy lock so no one else deploys."""
    from dockyard.flows.ops import lock

    typer.echo(run_flow(opts, lambda ctx: lock.acquire(ctx, message), command="lock"))


@lock_app.command("release")
@with_global_options
def release(opts: GlobalOptions) -> None:
    """Release the deploy lock."""
    from dockyard.flows.ops import lock

    typer.echo(run_flow(opts, lock.release, command="lock", subcommand="release"))


@lock_app.command("status")
@with_global_options
def status(opts: GlobalOptions) -> None:
    """Show who holds the deploy lock, since when and why."""
    from dockyard.flows.ops import lock

    typer.echo(run_flow(opts, lock.status, command="lock", subcommand="status"))


def register(app: typer.Typer) -> None:
    app.add_typer(lock_app, name="lock")
