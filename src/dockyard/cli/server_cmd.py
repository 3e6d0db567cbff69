"""`dockyard server bootstrap | exec` (Kamal's `kamal server`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli._factory import COMMAND_LINE_SETTINGS, group
from dockyard.cli.app_cmd import show
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext

server_app = group("server", "Bootstrap servers and run commands on them.")


@server_app.command("bootstrap")
@with_global_options
def bootstrap(
    opts: GlobalOptions,
    log_rotation: Annotated[
        bool,
        typer.Option(
            "--log-rotation",
            help="Also make log rotation (max-size=10m, max-file=5) the engine's default in "
            "/etc/docker/daemon.json (merged; dockerd restarts only if it changed; needs root).",
        ),
    ] = False,
    no_restart: Annotated[
        bool,
        typer.Option("--no-restart", help="With --log-rotation: do not restart dockerd."),
    ] = False,
) -> None:
    """Install Docker where it is missing and prepare the servers."""
    from dockyard.flows.ops import log_rotation as rotation
    from dockyard.flows.ops import server

    async def flow(ctx: DeployContext) -> dict[str, str]:
        await server.bootstrap(ctx)
        if not log_rotation:
            return {}
        return await rotation.enable_all(ctx, restart=not no_restart)

    reports = run_flow(opts, flow, command="server", subcommand="bootstrap")
    for host, report in reports.items():
        typer.echo(f"{host}: {report}")


@server_app.command("exec", context_settings=COMMAND_LINE_SETTINGS)
@with_global_options
def exec_(
    opts: GlobalOptions,
    cmd: Annotated[list[str], typer.Argument(help="The command line.", show_default=False)],
    interactive: Annotated[
        bool, typer.Option("-i", "--interactive", help="Run interactively on the primary host.")
    ] = False,
) -> None:
    """Run a command line on every server and show the output per server."""
    from dockyard.flows.ops import server

    show(
        run_flow(
            opts,
            lambda ctx: server.exec_(ctx, cmd, interactive=interactive),
            command="server",
            subcommand="exec",
        )
    )


@server_app.command("stats")
@with_global_options
def stats(
    opts: GlobalOptions,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=1.0, help="Seconds between refreshes.")
    ] = 5.0,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="With --watch: stop after N refreshes.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (per refresh).")
    ] = False,
) -> None:
    """CPU, memory (cgroup-aware), disk and per container usage of every server."""
    import json

    from dockyard.flows.ops import stats as stats_flow

    failed = False

    def show(snapshot: stats_flow.Snapshot) -> None:
        nonlocal failed
        failed = any(h.error is not None for h in snapshot.hosts)
        if as_json:
            typer.echo(json.dumps(snapshot.to_json(), indent=None if watch else 2))
        else:
            _print_stats_table(snapshot, clear=watch)

    with contextlib.suppress(KeyboardInterrupt):  # --watch ends with Ctrl-C
        run_flow(
            opts,
            lambda ctx: stats_flow.watch(ctx, show, interval=interval, count=count if watch else 1),
            command="server",
            subcommand="stats",
        )
    if failed:
        raise typer.Exit(1)


def _print_stats_table(snapshot: object, *, clear: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from dockyard.flows.ops import stats as stats_flow

    assert isinstance(snapshot, stats_flow.Snapshot)
    console = Console(highlight=False, emoji=False, markup=False)
    if not console.is_terminal:  # piped: no wrapping at 80 columns
        console = Console(highlight=False, emoji=False, markup=False, width=160)
    if clear and console.is_terminal:
        console.clear()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for title in stats_flow.COLUMNS:
        table.add_column(title, overflow="fold")
    for row in stats_flow.rows(snapshot):
        table.add_row(*row, style=None if row[0].startswith(" ") else "bold")
    console.print(table)
    for host, warning in snapshot.warnings:
        console.print(f"warning: {host}: {warning}", style="yellow")


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
