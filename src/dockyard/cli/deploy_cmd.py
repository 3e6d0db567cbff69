"""`dockyard setup`, `deploy`, `redeploy`, `rollback [VERSION]` and `remove`.

Only Typer is imported here at module level; config, remote and flows load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

SkipPush = Annotated[
    bool,
    typer.Option(
        "-P", "--skip-push", help="Skip the image build and push (deploy a pushed image)."
    ),
]


Strategy = Annotated[
    str | None,
    typer.Option(
        "--strategy",
        metavar="parallel|swap",
        help="How to boot: parallel (Kamal's: the new container starts next to the old one) or "
        "swap (pause in kamal-proxy, stop the old one, start the new one, resume: one version "
        "in memory at a time). Default: boot.strategy in the config, else parallel.",
    ),
]
SkipMemoryCheck = Annotated[
    bool,
    typer.Option(
        "--skip-memory-check",
        help="Do not check before booting that the new version fits in each host's memory.",
    ),
]
StopOtherRoles = Annotated[
    bool,
    typer.Option(
        "--stop-other-roles",
        help="With --strategy swap: stop the host's other roles during its swap, start them "
        "again after.",
    ),
]


def _finished(seconds: float) -> None:
    sys.stderr.write(f"Finished all in {seconds:.1f} seconds\n")


@with_global_options
def setup_command(opts: GlobalOptions, skip_push: SkipPush = False) -> None:
    """Set up the servers (Docker check, kamal-proxy) and deploy the app."""
    from dockyard.flows import deploy as flows

    result = run_flow(opts, lambda ctx: flows.setup(ctx, skip_push=skip_push), command="setup")
    _finished(result.seconds)


@with_global_options
def deploy_command(
    opts: GlobalOptions,
    skip_push: SkipPush = False,
    strategy: Strategy = None,
    skip_memory_check: SkipMemoryCheck = False,
    stop_other_roles: StopOtherRoles = False,
) -> None:
    """Build and push the image, then deploy it with zero downtime (boots kamal-proxy if
    needed, prunes old containers)."""
    from dockyard.flows import deploy as flows
    from dockyard.flows.swap import BootStrategy

    result = run_flow(
        opts,
        lambda ctx: flows.deploy(
            ctx,
            skip_push=skip_push,
            strategy=BootStrategy.resolve(
                ctx.config,
                strategy=strategy,
                skip_memory_check=skip_memory_check,
                stop_other_roles=stop_other_roles,
            ),
        ),
        command="deploy",
    )
    _finished(result.seconds)


@with_global_options
def redeploy_command(opts: GlobalOptions, skip_push: SkipPush = False) -> None:
    """Deploy without booting kamal-proxy and without pruning."""
    from dockyard.flows import deploy as flows

    result = run_flow(
        opts, lambda ctx: flows.redeploy(ctx, skip_push=skip_push), command="redeploy"
    )
    _finished(result.seconds)


@with_global_options
def rollback_command(
    opts: GlobalOptions,
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="VERSION", help="The version to roll back to; without it, list the versions."
        ),
    ] = None,
    strategy: Strategy = None,
    skip_memory_check: SkipMemoryCheck = False,
    stop_other_roles: StopOtherRoles = False,
) -> None:
    """Roll back to a version that still exists as a container (list them without VERSION)."""
    from dockyard.flows import deploy as flows
    from dockyard.flows.swap import BootStrategy

    version = target
    if version is None:
        versions = run_flow(opts, flows.rollback_versions, command="rollback")
        if not versions:
            sys.stderr.write("No versions available for rollback.\n")
            return
        sys.stdout.write("Versions available for rollback (newest first):\n")
        for info in versions:
            current = " (current)" if info.current_on else ""
            sys.stdout.write(f"  {info.version}{current}  on {', '.join(info.hosts)}\n")
        return
    result = run_flow(
        opts,
        lambda ctx: flows.rollback(
            ctx,
            version,
            strategy=BootStrategy.resolve(
                ctx.config,
                strategy=strategy,
                skip_memory_check=skip_memory_check,
                stop_other_roles=stop_other_roles,
            ),
        ),
        command="rollback",
    )
    if not result.rolled_back:
        from dockyard.errors import DockyardError

        raise DockyardError(
            f"The app version '{version}' is not available as a container on "
            f"{', '.join(result.missing)}; nothing was changed",
            hint="run `dockyard rollback` without a version to list the versions available",
        )
    _finished(result.seconds)


@with_global_options
def remove_command(
    opts: GlobalOptions,
    confirmed: Annotated[
        bool, typer.Option("-y", "--confirmed", help="Proceed without confirmation.")
    ] = False,
) -> None:
    """Remove the app's containers, images and files (and kamal-proxy when unused) from the
    servers. Safe to run twice."""
    from dockyard.flows import deploy as flows

    if not confirmed and not typer.confirm(
        "This will remove all containers, images and data directories for the app. Are you sure?"
    ):
        raise typer.Abort()
    run_flow(opts, flows.remove, command="remove")
    sys.stderr.write("Removed.\n")


@with_global_options
def build_push_command(opts: GlobalOptions) -> None:
    """Build the image locally and push it (version and latest tags) to the registry."""
    from dockyard.flows import build

    run_flow(opts, build.push, command="build", subcommand="push")


@with_global_options
def build_pull_command(opts: GlobalOptions) -> None:
    """Pull the image on the servers (registry login only when needed)."""
    from dockyard.flows import build

    run_flow(opts, build.pull, command="build", subcommand="pull")


@with_global_options
def build_deliver_command(opts: GlobalOptions) -> None:
    """Build and push the image, then pull it on the servers."""
    from dockyard.flows import build
    from dockyard.flows.context import DeployContext

    async def deliver(ctx: DeployContext) -> None:
        await build.push(ctx)
        await build.pull(ctx)

    run_flow(opts, deliver, command="build", subcommand="deliver")


def register(app: typer.Typer) -> None:
    # the `build` group (these three and the builder commands) is registered by build_cmd
    app.command("setup")(setup_command)
    app.command("deploy")(deploy_command)
    app.command("redeploy")(redeploy_command)
    app.command("rollback")(rollback_command)
    app.command("remove")(remove_command)
