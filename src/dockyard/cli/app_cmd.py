"""`dockyard app ...`: the app's containers on the servers (Kamal's `kamal app`).

Also the small rendering helpers the other operational command modules share. Only Typer and
the standard library at module level; config, remote and flows load inside the commands.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

if TYPE_CHECKING:
    from dockyard.flows.ops.base import Interactive, Section

SUBCOMMAND_SETTINGS = {"help_option_names": ["--help"]}
#: For commands taking a command line (`exec`): words after the name are the command's own.
COMMAND_LINE_SETTINGS = {
    "help_option_names": ["--help"],
    "ignore_unknown_options": True,
    "allow_interspersed_args": False,
}


def group(name: str, help: str) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        context_settings=SUBCOMMAND_SETTINGS,
    )


def render(sections: Sequence[Section]) -> str:
    """Each section as its title line and its text (Kamal's `puts_by_host`)."""
    out = []
    for section in sections:
        out.append(section.title)
        text = section.text.rstrip("\n")
        if text:
            out.append(text)
        out.append("")
    return "\n".join(out)


def show(result: Sequence[Section] | Interactive | None) -> None:
    """Print sections to stdout, or replace this process with an interactive `ssh -t`."""
    from dockyard.flows.ops.base import Interactive

    if result is None:
        return
    if isinstance(result, Interactive):
        sys.stderr.write(f"Launching interactive command on {result.host} via SSH...\n")
        sys.stderr.flush()
        os.execvp(result.argv[0], result.argv)
    else:
        sys.stdout.write(render(result))
        sys.stdout.flush()


def command_words(words: Sequence[str]) -> list[str]:
    """Kamal joins the words of CMD and lets the remote shell split them: `exec 'ls -la'` and
    `exec ls -la` mean the same."""
    return shlex.split(" ".join(words))


def parse_env(pairs: Sequence[str] | None) -> dict[str, str]:
    from dockyard.errors import DockyardError

    env: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DockyardError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


app_app = group("app", "Manage the app's containers on the servers.")


@app_app.command("boot")
@with_global_options
def boot(opts: GlobalOptions) -> None:
    """Boot the app on the servers (or reboot it if it is already running): the version given
    with --version, else the image tagged latest. No build, no pull, no proxy boot."""
    from dockyard.flows.ops import app

    booted = run_flow(
        opts, lambda ctx: app.boot(ctx, opts.version), command="app", subcommand="boot"
    )
    sys.stderr.write(f"Booted {booted}.\n")


@app_app.command("details")
@with_global_options
def details(opts: GlobalOptions) -> None:
    """Show the app's running containers (docker ps by service, destination and role)."""
    from dockyard.flows.ops import app

    show(run_flow(opts, app.details, command="app", subcommand="details"))


@app_app.command("containers")
@with_global_options
def containers(opts: GlobalOptions) -> None:
    """Show every container of the app, stopped ones too (the versions you can roll back to)."""
    from dockyard.flows.ops import app

    show(run_flow(opts, app.containers, command="app", subcommand="containers"))


@app_app.command("images")
@with_global_options
def images(opts: GlobalOptions) -> None:
    """Show the app's images on the servers."""
    from dockyard.flows.ops import app

    show(run_flow(opts, app.images, command="app", subcommand="images"))


@app_app.command("version")
@with_global_options
def version(opts: GlobalOptions) -> None:
    """Show the app version running on each server."""
    from dockyard.flows.ops import app

    show(run_flow(opts, app.version, command="app", subcommand="version"))


@app_app.command("start")
@with_global_options
def start(opts: GlobalOptions) -> None:
    """Start the app's current containers (and register them with the proxy again)."""
    from dockyard.flows.ops import app

    run_flow(opts, app.start, command="app", subcommand="start")


@app_app.command("stop")
@with_global_options
def stop(opts: GlobalOptions) -> None:
    """Stop the app's current containers (taking them out of the proxy first)."""
    from dockyard.flows.ops import app

    run_flow(opts, app.stop, command="app", subcommand="stop")


@app_app.command("live")
@with_global_options
def live(opts: GlobalOptions) -> None:
    """Serve the app again after `app maintenance`."""
    from dockyard.flows.ops import app

    run_flow(opts, app.live, command="app", subcommand="live")


@app_app.command("maintenance")
@with_global_options
def maintenance(
    opts: GlobalOptions,
    drain_timeout: Annotated[
        int | None,
        typer.Option("--drain-timeout", help="Seconds to let requests finish (default: config)."),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", help="Text shown on the maintenance page.")
    ] = None,
) -> None:
    """Put the app in maintenance mode: the proxy answers 503 (or your 503 page)."""
    from dockyard.flows.ops import app

    run_flow(
        opts,
        lambda ctx: app.maintenance(ctx, drain_timeout=drain_timeout, message=message),
        command="app",
        subcommand="maintenance",
    )


@app_app.command("stale_containers")
@with_global_options
def stale_containers(
    opts: GlobalOptions,
    stop: Annotated[bool, typer.Option("-s", "--stop", help="Stop the stale containers.")] = False,
) -> None:
    """Show (or stop) running containers that are not the current version."""
    from dockyard.flows.ops import app

    show(
        run_flow(
            opts,
            lambda ctx: app.stale_containers(ctx, stop=stop),
            command="app",
            subcommand="stale_containers",
        )
    )


@app_app.command("exec", context_settings=COMMAND_LINE_SETTINGS)
@with_global_options
def exec_(
    opts: GlobalOptions,
    cmd: Annotated[list[str], typer.Argument(help="The command to run.", show_default=False)],
    interactive: Annotated[
        bool, typer.Option("-i", "--interactive", help="Run interactively (ssh -t, primary host).")
    ] = False,
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Run in the running container instead of a new one.")
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", help="Set KEY=VALUE in the container.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave the new container running in the background.")
    ] = False,
) -> None:
    """Run a command in a new container of the app's image (or the running one with --reuse)."""
    from dockyard.flows.ops import app

    words, variables = command_words(cmd), parse_env(env)
    tty = sys.stdin.isatty()
    show(
        run_flow(
            opts,
            lambda ctx: app.exec_(
                ctx,
                words,
                interactive=interactive,
                reuse=reuse,
                env=variables,
                detach=detach,
                version=opts.version,
                tty=tty,
            ),
            command="app",
            subcommand="exec",
        )
    )


@app_app.command("logs")
@with_global_options
def logs(
    opts: GlobalOptions,
    since: Annotated[
        str | None, typer.Option("-s", "--since", help="Logs since a time (e.g. 5m, 2026-01-01).")
    ] = None,
    lines: Annotated[
        int | None, typer.Option("-n", "--lines", help="Number of lines (default 100).")
    ] = None,
    grep: Annotated[str | None, typer.Option("-g", "--grep", help="Only lines matching.")] = None,
    grep_options: Annotated[
        str | None, typer.Option("--grep-options", help="Extra grep options (e.g. -i).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Follow on the primary host (ssh -t).")
    ] = False,
    skip_timestamps: Annotated[
        bool, typer.Option("-T", "--skip-timestamps", help="Leave out timestamps.")
    ] = False,
    container_id: Annotated[
        str | None, typer.Option("--container-id", help="Logs of this container.")
    ] = None,
) -> None:
    """Show the app's log lines from each server."""
    from dockyard.flows.ops import app

    timestamps = not skip_timestamps
    if follow:
        show(
            run_flow(
                opts,
                lambda ctx: app.follow_logs(
                    ctx,
                    lines=lines,
                    grep=grep,
                    grep_options=grep_options,
                    timestamps=timestamps,
                    container_id=container_id,
                ),
                command="app",
                subcommand="logs",
            )
        )
        return
    show(
        run_flow(
            opts,
            lambda ctx: app.logs(
                ctx,
                since=since,
                lines=lines,
                grep=grep,
                grep_options=grep_options,
                timestamps=timestamps,
                container_id=container_id,
            ),
            command="app",
            subcommand="logs",
        )
    )


@app_app.command("remove")
@with_global_options
def remove(opts: GlobalOptions) -> None:
    """Remove the app's containers, images and files from the servers."""
    from dockyard.flows.ops import app

    run_flow(opts, app.remove, command="app", subcommand="remove")


def register(app: typer.Typer) -> None:
    app.add_typer(app_app, name="app")
