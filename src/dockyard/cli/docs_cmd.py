"""`dockyard docs [SECTION]`: the configuration reference, one section at a time."""

from __future__ import annotations

from typing import Annotated

import typer


def docs(
    section: Annotated[
        str,
        typer.Argument(
            help="accessory, alias, boot, builder, configuration, env, logging, proxy, "
            "registry, role, servers, ssh or sshkit.",
        ),
    ] = "configuration",
) -> None:
    """Show the configuration reference for a section (default: the top level)."""
    from dockyard.docs import section_text

    typer.echo(section_text(section), nl=False)


def register(app: typer.Typer) -> None:
    app.command("docs")(docs)
