"""`dockyard build push|pull|deliver|create|remove|details|dev` (Kamal's `kamal build`).

push/pull/deliver are the deploy's own steps (defined in deploy_cmd); create/remove/details
manage the buildx builder; dev builds the working tree as `<image>:<version>-dirty`.
Only Typer at module level; flows load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dockyard.cli.app_cmd import group, show
from dockyard.cli.deploy_cmd import (
    build_deliver_command,
    build_pull_command,
    build_push_command,
)
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

build_app = group("build", "Build the app image, push it and pull it on the servers.")
build_app.command("push")(build_push_command)
build_app.command("pull")(build_pull_command)
build_app.command("deliver")(build_deliver_command)


@build_app.command("create")
@with_global_options
def create(opts: GlobalOptions) -> None:
    """Create the buildx builder for the builder settings (and a remote builder's context)."""
    from dockyard.flows.ops import build

    sys.stderr.write(run_flow(opts, build.create, command="build", subcommand="create") + "\n")


@build_app.command("remove")
@with_global_options
def remove(opts: GlobalOptions) -> None:
    """Remove the buildx builder (and a remote builder's context)."""
    from dockyard.flows.ops import build

    sys.stderr.write(run_flow(opts, build.remove, command="build", subcommand="remove") + "\n")


@build_app.command("details")
@with_global_options
def details(opts: GlobalOptions) -> None:
    """Show the builder: docker context ls, docker buildx ls and the builder's inspect."""
    from dockyard.flows.ops import build

    show(run_flow(opts, build.details, command="build", subcommand="details"))


@build_app.command("dev")
@with_global_options
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
    from dockyard.flows.ops import build

    tags = run_flow(
        opts,
        lambda ctx: build.dev(ctx, output=output, no_cache=no_cache),
        command="build",
        subcommand="dev",
    )
    sys.stdout.write("\n".join(tags) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(build_app, name="build")
