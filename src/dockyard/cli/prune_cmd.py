"""`dockyard prune all | images | containers` (old containers and images of the service)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import typer

from dockyard.cli.app_cmd import group
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

prune_app = group("prune", "Remove old containers and images of the app.")

Retain = Annotated[
    int | None,
    typer.Option("--retain", help="Stopped containers to keep (default: retain_containers, 5)."),
]


def _report(removed: Mapping[str, Sequence[str]]) -> None:
    for host, items in removed.items():
        typer.echo(f"{host}: removed {len(items)}" + (f" ({', '.join(items)})" if items else ""))


@prune_app.command("all")
@with_global_options
def all_(opts: GlobalOptions, retain: Retain = None) -> None:
    """Prune stopped containers, then unused images."""
    from dockyard.flows.ops import prune

    _report(run_flow(opts, lambda ctx: prune.all_(ctx, retain=retain), command="prune"))


@prune_app.command("containers")
@with_global_options
def containers(opts: GlobalOptions, retain: Retain = None) -> None:
    """Remove stopped containers, keeping the newest ones (for rollback)."""
    from dockyard.flows.ops import prune

    _report(
        run_flow(
            opts,
            lambda ctx: prune.containers(ctx, retain=retain),
            command="prune",
            subcommand="containers",
        )
    )


@prune_app.command("images")
@with_global_options
def images(opts: GlobalOptions) -> None:
    """Remove images no container uses (the retained versions' images stay)."""
    from dockyard.flows.ops import prune

    _report(run_flow(opts, prune.images, command="prune", subcommand="images"))


def register(app: typer.Typer) -> None:
    app.add_typer(prune_app, name="prune")
