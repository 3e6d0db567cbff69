"""`dockyard init`: write a starter config/deploy.yml, .kamal/secrets and sample hooks."""

from __future__ import annotations

from typing import Annotated

import typer


def init(
    bundle: Annotated[
        bool,
        typer.Option("--bundle", help="Also write a bin/dockyard launcher script."),
    ] = False,
) -> None:
    """Create config/deploy.yml, .kamal/secrets and .kamal/hooks/*.sample (never overwrites)."""
    from pathlib import Path

    from dockyard.templates import init_project

    framework, results = init_project(Path.cwd(), bundle=bundle)
    if framework.name != "generic":
        typer.echo(f"Detected a {framework.label} project.")
    for result in results:
        typer.echo(result.message, err=not result.created)
    if bundle:
        typer.echo(
            "Add dockyard to the project's development dependencies so bin/dockyard finds it."
        )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
