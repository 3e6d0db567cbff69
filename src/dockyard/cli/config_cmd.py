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
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate",
            help="Rewrite Kamal 1 forms in config/deploy.yml and its destination files into "
            "the Kamal 2 form, in place (comments kept), and print the diff.",
        ),
    ] = False,
) -> None:
    """Show the combined config, in the same form as `kamal config` (secret values masked)."""
    if migrate:
        _migrate(config_file, destination)
        return
    from dockyard.config import load_config
    from dockyard.config.summary import full_view, kamal_summary, to_yaml

    config = load_config(config_file, destination, version=version)
    for warning in config.warnings:
        sys.stderr.write(f"Warning: {warning}\n")
    data = full_view(config) if full else kamal_summary(config)
    sys.stdout.write(to_yaml(data))


def _migrate(config_file: Path | None, destination: str | None) -> None:
    from dockyard.config.migrate import config_files, migrate_files

    base = config_file if config_file is not None else Path("config/deploy.yml")
    migrations = migrate_files(config_files(base, destination))
    changed = [m for m in migrations if m.changed]
    for migration in changed:
        sys.stdout.write(migration.diff())
        for note in migration.notes:
            sys.stderr.write(f"Migrated: {note}\n")
    if not changed:
        names = ", ".join(str(m.file) for m in migrations)
        sys.stderr.write(f"Nothing to migrate in {names}: already in the Kamal 2 form\n")


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)
