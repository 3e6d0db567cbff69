"""`dockyard backup [list | restore ID]`: online backups of an SQLite app's databases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli._factory import group
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

if TYPE_CHECKING:
    from dockyard.commands.backup import Backup

backup_app = group(
    "backup",
    "Back up the app's SQLite databases (consistent while it runs), list and restore.",
    no_args_is_help=False,
    invoke_without_command=True,
)

PathOption = Annotated[
    list[str] | None,
    typer.Option(
        "--path",
        help="A database file inside the app container (repeatable). Default: every SQLite "
        "file (*.sqlite3, *.sqlite, *.db) under the container's volumes.",
        show_default=False,
    ),
]
ToOption = Annotated[
    Path | None,
    typer.Option(
        "--to",
        help="Local directory for the copies "
        "(default: ~/.local/share/dockyard/backups/SERVICE[-DESTINATION]).",
        show_default=False,
    ),
]


def _describe(backup: Backup) -> str:
    from dockyard.config.sizes import human

    files = ", ".join(f"{db.path} ({human(db.size)})" for db in backup.databases)
    return f"{backup.id}  {human(backup.size):>10}  {files}"


@backup_app.callback()
@with_global_options
def take(
    ctx: typer.Context,
    opts: GlobalOptions,
    path: PathOption = None,
    keep: Annotated[
        int, typer.Option("--keep", help="Backups kept on the server (0: all).", min=0)
    ] = 7,
    to: ToOption = None,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Keep the copy on the server only.")
    ] = False,
) -> None:
    """Back up the app's SQLite databases: an online, consistent copy (SQLite's backup API)
    kept on the server (the newest --keep) and copied to this machine."""
    if ctx.invoked_subcommand is not None:
        return
    from dockyard.flows.ops import backup

    taken = run_flow(
        opts,
        lambda c: backup.take(
            c,
            paths=tuple(path or ()),
            keep=keep,
            local_root=to,
            download_copy=not no_download,
        ),
        command="backup",
    )
    from dockyard.config.sizes import human

    typer.echo(f"Backup {taken.backup.id} on {taken.host}:")
    for db in taken.backup.databases:
        typer.echo(f"  {db.path}  {human(db.size)}  sha256 {db.sha256[:16]}")
    if taken.local is not None:
        typer.echo(f"Copied to {taken.local}")
    for old in taken.backup.pruned:
        typer.echo(f"Removed old backup {old} from {taken.host}")


@backup_app.command("list")
@with_global_options
def list_backups(opts: GlobalOptions, to: ToOption = None) -> None:
    """List the backups on the server (newest first), marking those copied here."""
    from dockyard.flows.ops import backup

    host, backups, local = run_flow(
        opts, lambda c: backup.list_(c, local_root=to), command="backup", subcommand="list"
    )
    if not backups:
        typer.echo(f"No backups on {host} yet: `dockyard backup` takes one")
        return
    typer.echo(f"Backups on {host} (* also in {local}):")
    for item in backups:
        mark = "*" if (local / item.id / "MANIFEST").is_file() else " "
        typer.echo(f"{mark} {_describe(item)}")


@backup_app.command("restore")
@with_global_options
def restore(
    opts: GlobalOptions,
    backup_id: Annotated[str, typer.Argument(metavar="ID", help="From `dockyard backup list`.")],
    to: ToOption = None,
    confirmed: Annotated[
        bool, typer.Option("-y", "--confirmed", help="Do not ask for confirmation.")
    ] = False,
    max_pause: Annotated[
        int,
        typer.Option("--max-pause", help="Longest time (s) requests are held during the swap."),
    ] = 120,
) -> None:
    """Put a backup's databases back: requests are held in the proxy, the container is
    stopped, the files swapped, the container started again. The current data is backed up
    first (its ID is printed), so a restore can be undone."""
    from dockyard.flows.ops import backup

    if not confirmed and not typer.confirm(
        f"Replace the app's databases with backup {backup_id}?", default=False
    ):
        raise typer.Exit(1)
    host, restored, safety = run_flow(
        opts,
        lambda c: backup.restore(c, backup_id, local_root=to, max_pause=max_pause),
        command="backup",
        subcommand="restore",
    )
    typer.echo(f"Restored backup {restored.id} on {host}")
    typer.echo(f"The data it replaced is backup {safety.id} (restore it to undo)")


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")
