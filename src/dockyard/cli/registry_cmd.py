"""`dockyard registry setup|remove|login|logout` (Kamal's `kamal registry`).

With a `localhost:PORT` registry, setup/remove start/stop the local registry container (its
image: `$DOCKYARD_LOCAL_REGISTRY_IMAGE`, default `registry:3` as Kamal); login/logout refuse it.
Only Typer at module level; flows load inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli._factory import flow_command, group
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

registry_app = group("registry", "Set up the local registry, or log in to and out of the registry.")

SkipLocal = Annotated[
    bool, typer.Option("-L", "--skip-local", help="Skip the local part (this machine).")
]
SkipRemote = Annotated[bool, typer.Option("-R", "--skip-remote", help="Skip the servers.")]


@flow_command(registry_app, "setup")
def setup(
    opts: GlobalOptions, skip_local: SkipLocal = False, skip_remote: SkipRemote = False
) -> None:
    """Start the local registry, or log in to the registry here and on the servers."""


@flow_command(registry_app, "remove")
def remove(
    opts: GlobalOptions, skip_local: SkipLocal = False, skip_remote: SkipRemote = False
) -> None:
    """Stop and remove the local registry, or log out of the registry here and on the servers."""


@flow_command(registry_app, "login")
def login(
    opts: GlobalOptions, skip_local: SkipLocal = False, skip_remote: SkipRemote = False
) -> None:
    """Log in to the registry here and on the servers (not for a local registry)."""


@flow_command(registry_app, "logout")
def logout(
    opts: GlobalOptions, skip_local: SkipLocal = False, skip_remote: SkipRemote = False
) -> None:
    """Log out of the registry here and on the servers (not for a local registry)."""


@registry_app.command("prune")
@with_global_options
def prune(
    opts: GlobalOptions,
    keep: Annotated[
        int, typer.Option("--keep", min=0, help="Newest tags to keep besides deployed ones.")
    ] = 5,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete old tags of the app image from the registry (never latest, nor a deployed or
    retained version)."""
    from dockyard.flows.ops import registry_prune

    outcome = run_flow(
        opts,
        lambda ctx: registry_prune.prune(ctx, keep=keep, dry_run=dry_run),
        command="registry",
        subcommand="prune",
    )
    for tag, why in sorted(outcome.plan.keep.items()):
        typer.echo(f"keep    {outcome.repository}:{tag}  ({why})")
    verb = "would delete" if outcome.dry_run else "deleted"
    gone = [t for tags in outcome.plan.delete.values() for t in tags]
    for tag in outcome.deleted if not outcome.dry_run else gone:
        typer.echo(f"{verb}  {outcome.repository}:{tag}")
    for tag, why in outcome.failed:
        typer.echo(f"failed  {outcome.repository}:{tag}  ({why})", err=True)
    if gone and not outcome.dry_run:
        typer.echo(registry_prune.GC_NOTE, err=True)
    if outcome.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
