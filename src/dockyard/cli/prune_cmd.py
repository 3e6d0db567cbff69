"""`dockyard prune all | images | containers` (old containers and images of the service)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import typer

from dockyard.cli._factory import flow_command, group
from dockyard.cli.options import GlobalOptions

prune_app = group("prune", "Remove old containers and images of the app.")

Retain = Annotated[
    int | None,
    typer.Option("--retain", help="Stopped containers to keep (default: retain_containers, 5)."),
]


def _report(removed: Mapping[str, Sequence[str]]) -> None:
    for host, items in removed.items():
        typer.echo(f"{host}: removed {len(items)}" + (f" ({', '.join(items)})" if items else ""))


@flow_command(prune_app, "all", output=_report, subcommand=False)
def all_(opts: GlobalOptions, retain: Retain = None) -> None:
    """Prune stopped containers, then unused images."""


@flow_command(prune_app, "containers", output=_report)
def containers(opts: GlobalOptions, retain: Retain = None) -> None:
    """Remove stopped containers, keeping the newest ones (for rollback)."""


@flow_command(prune_app, "images", output=_report)
def images(opts: GlobalOptions) -> None:
    """Remove images no container uses (the retained versions' images stay)."""


def register(app: typer.Typer) -> None:
    app.add_typer(prune_app, name="prune")
