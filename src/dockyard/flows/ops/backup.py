"""``backup``, ``backup list``, ``backup restore ID``: online SQLite backups of the app.

A backup is taken in the running app container with SQLite's backup API (consistent while the
app writes), checked (``PRAGMA integrity_check``), kept on the server (the newest ``keep``) and
copied to this machine over SFTP, where each file's SHA-256 is checked against the server's.

A restore holds the app's requests in the proxy (``kamal-proxy pause``: clients wait, nothing
fails), stops the container, swaps the files in through a helper container that shares its
volumes, starts it, waits until the proxy sees it healthy again and resumes. The current
databases are backed up first, so a restore can itself be undone.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import backup as backup_commands
from dockyard.commands import proxy as proxy_commands
from dockyard.commands.backup import Backup, BackupInputError
from dockyard.errors import ConfigError, DockyardError
from dockyard.flows.errors import DockerError
from dockyard.flows.ops.app import current_container

if TYPE_CHECKING:
    from dockyard.config import Role
    from dockyard.flows.context import DeployContext

#: Backups kept on the server unless --keep says otherwise.
DEFAULT_KEEP = 7


class BackupError(DockyardError):
    """A backup or restore that failed on the server (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class Taken:
    host: str
    backup: Backup
    #: Where the copy landed on this machine (None with --no-download).
    local: Path | None


def default_local_root(service: str, destination: str | None) -> Path:
    """``$XDG_DATA_HOME/dockyard/backups/<service>[-<destination>]`` (outside the project,
    so database copies are never committed by accident)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    name = f"{service}-{destination}" if destination else service
    return Path(base) / "dockyard" / "backups" / name


def _target(ctx: DeployContext) -> tuple[str, Role]:
    """The one host and role whose databases are meant: the role given with -r (else the
    primary role) on its one selected host (-h picks one when the role has several)."""
    roles = ctx.roles if ctx.selection.roles else []
    role = roles[0] if roles else ctx.config.primary_role
    if role is None:
        raise ConfigError("backup: the config has no role to back up (see `servers:`)")
    hosts = ctx.role_hosts(role)
    if not hosts:
        raise ConfigError(f"backup: no selected host runs role {role.name}")
    if len(hosts) > 1:
        raise ConfigError(
            f"backup: role {role.name} runs on {len(hosts)} hosts ({', '.join(hosts)}); "
            "an SQLite database lives on one: pick it with -h HOST"
        )
    return hosts[0], role


async def _container(ctx: DeployContext, host: str, role: Role) -> str:
    name = await current_container(ctx, host, role, names=True)
    if name is None:
        raise DockerError(
            f"docker on {host}: no running container of role {role.name} to back up",
            hint="deploy the app first (`dockyard deploy`), or check `dockyard app details`",
        )
    return name


def _directory(ctx: DeployContext) -> str:
    return backup_commands.backups_directory(ctx.config.service, ctx.config.destination)


def _failed(host: str, what: str, stderr: str, stdout: str) -> BackupError:
    lines = [
        line.replace("dockyard-backup: ", "")
        for line in (stderr.strip() or stdout.strip()).splitlines()
    ][-8:]
    detail = "\n".join(f"  | {line}" for line in lines)
    return BackupError(f"backup on {host}: {what} failed" + (f"\n{detail}" if detail else ""))


async def _take(
    ctx: DeployContext,
    host: str,
    container: str,
    *,
    paths: tuple[str, ...],
    keep: int,
    suffix: str | None = None,
) -> Backup:
    now = ctx.clock()
    try:
        command = backup_commands.take(
            container=container,
            directory=_directory(ctx),
            backup_id=backup_commands.new_id(now, suffix),
            created=now.isoformat(timespec="seconds"),
            paths=paths,
            keep=keep,
        )
    except BackupInputError as exc:
        raise ConfigError(str(exc)) from exc
    result = await ctx.run(host, command, check=False)
    if not result.ok:
        raise _failed(host, f"copying the databases of {container}", result.stderr, result.stdout)
    return backup_commands.parse_take(result.stdout)


async def download(ctx: DeployContext, host: str, backup: Backup, root: Path) -> Path:
    """Copy a backup's files to ``root/<ID>/`` and check each one's SHA-256."""
    target = root / backup.id
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    remote = posixpath.join(_directory(ctx), backup.id)
    transport = ctx.transport(host)
    for name in ("MANIFEST", "SHA256SUMS"):
        await transport.get(posixpath.join(remote, name), target / name)
    for db in backup.databases:
        local = target / db.name
        await transport.get(posixpath.join(remote, db.name), local)
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        if db.sha256 and digest != db.sha256:
            raise BackupError(
                f"backup: the copy of {db.path} downloaded from {host} does not match its "
                f"checksum ({digest} != {db.sha256}); run `dockyard backup` again"
            )
    return target


async def take(
    ctx: DeployContext,
    *,
    paths: tuple[str, ...] = (),
    keep: int = DEFAULT_KEEP,
    local_root: Path | None = None,
    download_copy: bool = True,
) -> Taken:
    host, role = _target(ctx)
    await ctx.connect([host])
    container = await _container(ctx, host, role)
    ctx.step(f"Backing up the SQLite databases of {container} on {host}")
    backup = await _take(ctx, host, container, paths=paths, keep=keep)
    await ctx.audit(host, f"Backed up {', '.join(db.path for db in backup.databases)}")
    local = None
    if download_copy:
        root = local_root or default_local_root(ctx.config.service, ctx.config.destination)
        local = await download(ctx, host, backup, root)
    return Taken(host, backup, local)


async def list_(
    ctx: DeployContext, *, local_root: Path | None = None
) -> tuple[str, list[Backup], Path]:
    """The backups on the server, newest first, and the local directory of copies."""
    host, _role = _target(ctx)
    result = await ctx.run(host, backup_commands.list_backups(_directory(ctx)))
    root = local_root or default_local_root(ctx.config.service, ctx.config.destination)
    return host, backup_commands.parse_list(result.stdout), root


async def restore(
    ctx: DeployContext,
    backup_id: str,
    *,
    local_root: Path | None = None,
    max_pause: int = 120,
) -> tuple[str, Backup, Backup]:
    """Restore ``backup_id`` (from the server, or uploaded from this machine's copy when the
    server no longer has it). Returns the host, the restored backup and the safety backup of
    what was replaced."""
    try:
        backup_commands.check_id(backup_id)
    except BackupInputError as exc:
        raise ConfigError(str(exc)) from exc
    host, role = _target(ctx)
    config = ctx.config
    async with ctx.lock(f"Restoring backup {backup_id}"):
        container = await _container(ctx, host, role)
        backups = {b.id: b for b in (await list_(ctx))[1]}
        backup = backups.get(backup_id)
        if backup is None:
            backup = await _upload(ctx, host, backup_id, local_root)
        ctx.step(f"Backing up the current databases of {container} before the restore")
        safety = await _take(
            ctx, host, container, paths=tuple(db.path for db in backup.databases), keep=0,
            suffix="before-restore",
        )  # fmt: skip
        prefix = app_commands.container_prefix(config, role)
        paused = False
        if role.running_proxy:
            ctx.step(f"Holding requests to {prefix} in kamal-proxy while the files are swapped")
            pause = proxy_commands.pause(prefix, drain_timeout=30, max_pause=max_pause)
            await ctx.run(host, pause, layer="proxy", what=f"pausing {prefix}")
            paused = True
        try:
            ctx.step(f"Restoring backup {backup.id} into {container}")
            command = backup_commands.restore(
                container=container, directory=_directory(ctx), backup=backup,
                stop_timeout=role.stop_timeout or 30,
            )  # fmt: skip
            result = await ctx.run(host, command, check=False)
            if not result.ok:
                raise _failed(
                    host, f"restoring backup {backup.id} into {container}",
                    result.stderr, result.stdout,
                )  # fmt: skip
            if role.running_proxy:
                # Blocks until the restarted container answers its health check.
                ident = (await ctx.run(host, app_commands.container_id_for(container))).stdout
                target = ident.strip().splitlines()[0][:12] if ident.strip() else container
                await ctx.run(
                    host, app_commands.deploy(config, role, target), layer="proxy",
                    what=f"waiting for {container} to be healthy again",
                    timeout=config.deploy_timeout + 60,
                )  # fmt: skip
        finally:
            if paused:
                await ctx.run(host, app_commands.live(config, role), check=False, layer="proxy")
        await ctx.audit(host, f"Restored backup {backup.id} (previous data: {safety.id})")
    return host, backup, safety


async def _upload(ctx: DeployContext, host: str, backup_id: str, local_root: Path | None) -> Backup:
    root = local_root or default_local_root(ctx.config.service, ctx.config.destination)
    local = root / backup_id
    manifest = local / "MANIFEST"
    if not manifest.is_file():
        raise ConfigError(
            f"backup {backup_id}: neither {host} nor this machine ({local}) has it; "
            "`dockyard backup list` shows the backups"
        )
    sums = (local / "SHA256SUMS").read_text() if (local / "SHA256SUMS").is_file() else ""
    backup = backup_commands.parse_take(
        manifest.read_text() + "\n" + "\n".join(f"sha256 {line}" for line in sums.splitlines())
    )
    remote = posixpath.join(_directory(ctx), backup_id)
    transport = ctx.transport(host)
    ctx.step(f"Uploading backup {backup_id} from {local} to {host}")
    for name in ("MANIFEST", "SHA256SUMS", *(db.name for db in backup.databases)):
        await transport.put((local / name).read_bytes(), posixpath.join(remote, name))
    return backup
