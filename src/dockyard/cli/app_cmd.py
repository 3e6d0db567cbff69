"""`dockyard app ...`: the app's containers on the servers (Kamal's `kamal app`).

Also the small rendering helpers the other operational command modules share. Only Typer and
the standard library at module level; config, remote and flows load inside the commands.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard.cli._factory import COMMAND_LINE_SETTINGS, flow_command, group
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext
    from dockyard.flows.ops.base import Interactive, Section

#: The options of `proxy logs` and `accessory logs` (`app logs` words some of its own).
Since = Annotated[str | None, typer.Option("-s", "--since", help="Logs since.")]
Lines = Annotated[int | None, typer.Option("-n", "--lines", help="Number of lines.")]
Grep = Annotated[str | None, typer.Option("-g", "--grep", help="Only lines matching.")]
GrepOptions = Annotated[str | None, typer.Option("--grep-options", help="Extra grep options.")]
Follow = Annotated[bool, typer.Option("-f", "--follow", help="Follow (ssh -t).")]
SkipTimestamps = Annotated[
    bool, typer.Option("-T", "--skip-timestamps", help="Leave out timestamps.")
]


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


def show_logs(
    opts: GlobalOptions,
    command: str,
    logs: Callable[..., Awaitable[Sequence[Section]]],
    follow_logs: Callable[..., Interactive] | None,
    *,
    since: str | None,
    lines: int | None,
    grep: str | None,
    grep_options: str | None,
    timestamps: bool,
) -> None:
    """`proxy logs` and `accessory logs`: each host's log lines (``logs``), or with -f the
    followed session (``follow_logs``, which takes no --since or --lines)."""
    common: dict[str, Any] = {"grep": grep, "grep_options": grep_options, "timestamps": timestamps}

    async def flow(ctx: DeployContext) -> Sequence[Section] | Interactive:
        if follow_logs is not None:
            return follow_logs(ctx, **common)
        return await logs(ctx, since=since, lines=lines, **common)

    show(run_flow(opts, flow, command=command, subcommand="logs"))


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


@flow_command(app_app, "details", output=show)
def details(opts: GlobalOptions) -> None:
    """Show the app's running containers (docker ps by service, destination and role)."""


@flow_command(app_app, "containers", output=show)
def containers(opts: GlobalOptions) -> None:
    """Show every container of the app, stopped ones too (the versions you can roll back to)."""


@flow_command(app_app, "images", output=show)
def images(opts: GlobalOptions) -> None:
    """Show the app's images on the servers."""


@flow_command(app_app, "version", output=show)
def version(opts: GlobalOptions) -> None:
    """Show the app version running on each server."""


@flow_command(app_app, "start")
def start(opts: GlobalOptions) -> None:
    """Start the app's current containers (and register them with the proxy again)."""


@flow_command(app_app, "stop")
def stop(opts: GlobalOptions) -> None:
    """Stop the app's current containers (taking them out of the proxy first)."""


@flow_command(app_app, "live")
def live(opts: GlobalOptions) -> None:
    """Serve the app again after `app maintenance`."""


@flow_command(app_app, "maintenance")
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


@flow_command(app_app, "stale_containers", output=show)
def stale_containers(
    opts: GlobalOptions,
    stop: Annotated[bool, typer.Option("-s", "--stop", help="Stop the stale containers.")] = False,
) -> None:
    """Show (or stop) running containers that are not the current version."""


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
    grep: Grep = None,
    grep_options: Annotated[
        str | None, typer.Option("--grep-options", help="Extra grep options (e.g. -i).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Follow on the primary host (ssh -t).")
    ] = False,
    skip_timestamps: SkipTimestamps = False,
    container_id: Annotated[
        str | None, typer.Option("--container-id", help="Logs of this container.")
    ] = None,
) -> None:
    """Show the app's log lines from each server."""
    from dockyard.flows.ops import app

    common: dict[str, Any] = {
        "lines": lines,
        "grep": grep,
        "grep_options": grep_options,
        "timestamps": not skip_timestamps,
        "container_id": container_id,
    }

    async def flow(ctx: DeployContext) -> Sequence[Section] | Interactive:
        if follow:
            return await app.follow_logs(ctx, **common)
        return await app.logs(ctx, since=since, **common)

    show(run_flow(opts, flow, command="app", subcommand="logs"))


@flow_command(app_app, "remove")
def remove(opts: GlobalOptions) -> None:
    """Remove the app's containers, images and files from the servers."""


def register(app: typer.Typer) -> None:
    app.add_typer(app_app, name="app")
