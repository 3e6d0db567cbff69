"""`dockyard config`: show the combined configuration, as `kamal config` does (secrets masked)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def show_config(
    config_file: Annotated[
        Path | None,
        typer.Option(
            "-c",
            "--config-file",
            help="Path to the config file (default: config/deploy.yml).",
            show_default=False,
        ),
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option(
            "-d",
            "--destination",
            help="Destination: also reads config/deploy.DESTINATION.yml and its secrets.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Image version to show (default: $VERSION, else the git HEAD commit).",
            show_default=False,
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Print the whole resolved configuration (secrets masked)."),
    ] = False,
) -> None:
    """Show the combined config, in the same form as `kamal config` (secret values masked)."""
    from dockyard.config import load_config
    from dockyard.config.summary import full_view, kamal_summary, to_yaml

    config = load_config(config_file, destination, version=version)
    for warning in config.warnings:
        sys.stderr.write(f"Warning: {warning}\n")
    data = full_view(config) if full else kamal_summary(config)
    sys.stdout.write(to_yaml(data))


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)
