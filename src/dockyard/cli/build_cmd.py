"""`dockyard build push|pull|deliver|create|remove|details|dev` (Kamal's `kamal build`).

push/pull/deliver are the deploy's own steps (defined in deploy_cmd); create/remove/details
manage the buildx builder; dev builds the working tree as `<image>:<version>-dirty`.
Only Typer at module level; flows load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dockyard.cli._factory import flow_command, group
from dockyard.cli.app_cmd import show
from dockyard.cli.deploy_cmd import (
    build_deliver_command,
    build_pull_command,
    build_push_command,
)
from dockyard.cli.options import GlobalOptions

build_app = group("build", "Build the app image, push it and pull it on the servers.")
build_app.command("push")(build_push_command)
build_app.command("pull")(build_pull_command)
build_app.command("deliver")(build_deliver_command)


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


@flow_command(build_app, "create", output=_to_stderr)
def create(opts: GlobalOptions) -> None:
    """Create the buildx builder for the builder settings (and a remote builder's context)."""


@flow_command(build_app, "remove", output=_to_stderr)
def remove(opts: GlobalOptions) -> None:
    """Remove the buildx builder (and a remote builder's context)."""


@flow_command(build_app, "details", output=show)
def details(opts: GlobalOptions) -> None:
    """Show the builder: docker context ls, docker buildx ls and the builder's inspect."""


def _print_tags(tags: list[str]) -> None:
    sys.stdout.write("\n".join(tags) + "\n")


@flow_command(build_app, "dev", output=_print_tags)
def dev(
    opts: GlobalOptions,
    output: Annotated[
        str,
        typer.Option(
            "--output", metavar="EXPORT_TYPE", help="Build output type (buildx --output)."
        ),
    ] = "docker",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Build without Docker's build cache.")
    ] = False,
) -> None:
    """Build the working tree (uncommitted files included) and tag it as dirty
    (<image>:<version>-dirty and the latest tag with -dirty) in the local image store."""


def register(app: typer.Typer) -> None:
    app.add_typer(build_app, name="build")
