"""What ``app boot`` puts on every host before the first container starts, as Kamal does:
the error pages (``error_pages_path``), each proxy role's custom TLS certificate
(``proxy/ssl: {certificate_pem, private_key_pem}``) and the asset bridging (``asset_path``);
and, once a role's old container has stopped, the clean-up of the other versions' assets and
error pages.

The files land under ``.kamal/proxy/apps-config/<service>``, which kamal-proxy sees as
``/home/kamal-proxy/.apps-config/<service>`` (the paths ``kamal-proxy deploy`` is given), and the
assets under ``.kamal/apps/<service>/assets``, whose ``volumes/<role>-<version>`` directory the
new container mounts at its ``asset_path``. The files are world-readable (0644) because
kamal-proxy runs as its own user.

Per host: one round trip (directories, files that can travel in a here-document, asset
extraction and sync), plus SFTP uploads for files that cannot (binary or without a final
newline).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import paths
from dockyard.commands.argv import Argv, Secret
from dockyard.errors import ConfigError

if TYPE_CHECKING:
    from dockyard.config.models import Role
    from dockyard.flows.boot import HostSurvey
    from dockyard.flows.context import DeployContext

__all__ = ["cleanup_commands", "error_page_files", "prepare_hosts"]

#: Write stdin to "$1" (its directory made first), readable by everyone, replaced atomically.
WRITE_PUBLIC_FILE = (
    'mkdir -p "$(dirname "$1")" && umask 022 && cat > "$1.tmp" && chmod 644 "$1.tmp" '
    '&& mv -f "$1.tmp" "$1"'
)

#: Kamal's extraction: the image's asset_path copied out through a created (never started)
#: container; a leftover container of that name is removed first (its absence is fine).
EXTRACT_ASSETS = (
    'mkdir -p "$1" && { docker container rm "$2" >/dev/null 2>&1 || true; } '
    '&& docker container create --name "$2" "$3" >/dev/null '
    '&& docker container cp -L "$2:$4/." "$1" && docker container rm "$2" >/dev/null'
)

#: Kamal's sync: the new volume gets the new assets, then (with an old version) the old
#: volume the new ones and the new volume the old ones, without overwriting (``cp -n``).
SYNC_ASSETS = (
    'mkdir -p "$2" && cp -rnT "$1" "$2" '
    '&& if [ -n "$3" ]; then cp -rnT "$1" "$4" 2>/dev/null; cp -rnT "$3" "$2" 2>/dev/null; fi; '
    '[ -d "$2" ]'
)


def error_page_files(ctx: DeployContext) -> dict[str, bytes]:
    """The local ``4??.html`` and ``5??.html`` files of ``error_pages_path``, by name."""
    config = ctx.config
    if not config.error_pages_path:
        return {}
    directory = config.root / config.error_pages_path
    if not directory.is_dir():
        raise ConfigError(
            f"config: error_pages_path: {directory} is not a directory",
            hint=f"create it with 4xx.html/5xx.html pages, or fix {config.config_file}",
        )
    found: dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        name = path.name
        if len(name) == 8 and name[0] in "45" and name[1:3].isdigit() and name[3:] == ".html":
            found[name] = path.read_bytes()
    return found


def file_command(script: str, path: str, text: str) -> Argv | None:
    """``script`` (a ``WRITE_*_FILE``) writing ``text`` to ``path`` as a batch command, or None
    when the text cannot travel in a here-document byte for byte (then it goes over SFTP)."""
    if not text:  # a batch command without stdin reads /dev/null: an empty file
        return Argv(("sh", "-c", script, "sh", path))
    if "\0" in text or not text.endswith("\n"):
        return None
    return Argv(("sh", "-c", script, "sh", path), stdin=Secret(text))


def _write(path: str, data: bytes) -> Argv | None:
    """A batch command writing ``data`` to ``path`` (mode 0644), or None (SFTP)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return file_command(WRITE_PUBLIC_FILE, path, text)


def _tls_files(ctx: DeployContext, role: Role) -> dict[str, bytes]:
    proxy = role.proxy
    cert = proxy.ssl_certificate if proxy is not None else None
    if cert is None:
        return {}
    config = ctx.config
    cert_path, key_path = app_commands.tls_files(config, role)
    return {
        cert_path: config.secret(cert.certificate_pem).reveal().encode(),
        key_path: config.secret(cert.private_key_pem).reveal().encode(),
    }


def _asset_commands(ctx: DeployContext, role: Role, old_version: str | None) -> list[Argv]:
    config = ctx.config
    prefix = app_commands.container_prefix(config, role)
    extracted = app_commands.asset_extracted_directory(config, role)
    volume = app_commands.asset_volume_directory(config, role)
    old = old_version if old_version and old_version != config.version else ""
    old_extracted = app_commands.asset_extracted_directory(config, role, old) if old else ""
    old_volume = app_commands.asset_volume_directory(config, role, old) if old else ""
    assert role.asset_path is not None
    return [
        Argv(
            (
                "sh", "-c", EXTRACT_ASSETS, "sh",
                extracted, f"{prefix}-assets", config.absolute_image, role.asset_path,
            )
        ),
        Argv(("sh", "-c", SYNC_ASSETS, "sh", extracted, volume, old_extracted, old_volume)),
    ]  # fmt: skip


async def prepare_hosts(ctx: DeployContext, surveys: Mapping[str, HostSurvey]) -> None:
    """Error pages, custom TLS certificates and assets on every host of ``surveys``, before
    anything boots (a failure stops the boot with the old version still serving)."""
    config = ctx.config
    pages = error_page_files(ctx)
    pages_dir = posixpath.join(
        paths.error_pages_directory(config.service, config.destination), config.version
    )

    async def one(host: str) -> None:
        files: dict[str, bytes] = {posixpath.join(pages_dir, n): d for n, d in pages.items()}
        commands: list[Argv] = []
        for role in ctx.roles_on(host):
            files.update(_tls_files(ctx, role))
            if role.assets:
                state = surveys[host].roles.get(role.name)
                old = state.current if state is not None else None
                commands += _asset_commands(ctx, role, old)
        by_sftp: dict[str, bytes] = {}
        for path, data in files.items():
            write = _write(path, data)
            if write is None:
                by_sftp[path] = data
            else:
                commands.append(write)
        # the directories of the files that go over SFTP (the scripts make their own)
        sftp_dirs = dict.fromkeys(posixpath.dirname(path) for path in by_sftp)
        commands[:0] = [Argv(("mkdir", "-p", d)) for d in sftp_dirs]
        if not commands and not by_sftp:
            return
        ctx.info("preparing error pages, certificates and assets", host)
        results = await ctx.batch(host, commands, check=False)
        for argv, result in zip(commands, results, strict=True):
            if not result.ok:
                raise ctx.failure(host, argv, result, what="preparing the boot")
        transport = ctx.transport(host)
        for path, data in by_sftp.items():
            await transport.put(data, path, mode=0o644)

    await ctx.on(list(surveys), one)


def cleanup_commands(ctx: DeployContext, role: Role) -> list[Argv]:
    """After the role's old container stopped: the other versions' assets and error pages."""
    config = ctx.config
    commands: list[Argv] = []
    if role.assets:
        commands += app_commands.clean_up_assets(config, role)
    if config.error_pages_path:
        commands.append(app_commands.clean_up_error_pages(config))
    return commands
