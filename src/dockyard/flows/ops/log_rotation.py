"""``server bootstrap --log-rotation``: make log rotation the Docker engine's default.

``/etc/docker/daemon.json`` gets ``log-opts`` ``max-size``/``max-file`` (merged: every other key
and any value already set stays; a file that is not valid JSON is left alone with an error;
an engine that logs to another driver than json-file/local is left alone). The old file is
kept as ``daemon.json.dockyard-bak``. dockerd reads log options only at start, so it is
restarted, but only when the file changed, and the output says so: the restart stops and
restarts the running containers unless the engine has ``live-restore``. The engine default
applies to containers created afterwards; containers Dockyard starts carry their own
``--log-opt`` anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.commands import app as app_commands
from dockyard.commands.argv import Argv, argv
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext

DAEMON_JSON = "/etc/docker/daemon.json"
BACKUP = DAEMON_JSON + ".dockyard-bak"
ROTATING_DRIVERS = ("json-file", "local")
RESTART_SCRIPT = (
    "if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker; "
    "then systemctl restart docker; else service docker restart; fi"
)


@dataclass(frozen=True, slots=True)
class Merge:
    """The merged file (``None`` when nothing changes) and what was added or why not."""

    text: str | None
    added: dict[str, str]
    note: str


def default_log_opts() -> dict[str, str]:
    return dict(app_commands.DEFAULT_LOG_OPTIONS)


def merge_daemon_json(current: str | None, log_opts: Mapping[str, str] | None = None) -> Merge:
    """Pure: ``current`` (the file's text, ``None`` when it is missing) with the rotation
    options added where absent. Raises when the file is not a JSON object."""
    wanted = dict(log_opts or default_log_opts())
    data: dict[str, Any]
    if current is None or not current.strip():
        data = {}
    else:
        try:
            parsed = json.loads(current)
        except ValueError as exc:
            raise DockyardError(
                f"{DAEMON_JSON} is not valid JSON ({exc}); left unchanged",
                hint="fix the file by hand (dockerd would not start with it either)",
            ) from exc
        if not isinstance(parsed, dict):
            raise DockyardError(f"{DAEMON_JSON} is not a JSON object; left unchanged")
        data = parsed
    driver = data.get("log-driver")
    if driver is not None and driver not in ROTATING_DRIVERS:
        return Merge(None, {}, f"the engine logs to {driver!r}: left as it is")
    opts = data.get("log-opts")
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise DockyardError(f"{DAEMON_JSON}: log-opts is not an object; left unchanged")
    added = {k: v for k, v in wanted.items() if k not in opts}
    if not added:
        return Merge(None, {}, "log rotation already set")
    data["log-opts"] = {**opts, **added}
    return Merge(json.dumps(data, indent=2) + "\n", added, "")


def read_file() -> Argv:
    return argv("cat", DAEMON_JSON)


def backup_file() -> Argv:
    return argv("cp", "-p", DAEMON_JSON, BACKUP)


def make_directory() -> Argv:
    return argv("mkdir", "-p", "/etc/docker")


def restart_docker() -> Argv:
    return argv("sh", "-c", RESTART_SCRIPT)


async def enable_all(ctx: DeployContext, *, restart: bool = True) -> dict[str, str]:
    """:func:`enable` on every selected host, in parallel; the report by host."""

    async def on_host(host: str) -> str:
        return await enable(ctx, host, restart=restart)

    return await ctx.on(ctx.hosts, on_host)


async def enable(ctx: DeployContext, host: str, *, restart: bool = True) -> str:
    """Merge the rotation defaults into ``host``'s daemon.json; restart dockerd if it
    changed. Returns a one-line report."""
    read = await ctx.run(host, read_file(), check=False)
    exists = read.ok
    if not exists and "No such file" not in read.stderr:
        raise ctx.failure(host, read_file(), read, layer="docker", what=f"reading {DAEMON_JSON}")
    merge = merge_daemon_json(read.stdout if exists else None)
    if merge.text is None:
        return f"{DAEMON_JSON}: {merge.note}, not changed (dockerd not restarted)"
    prepare = [make_directory()] + ([backup_file()] if exists else [])
    await ctx.batch(host, prepare, hint=f"writing {DAEMON_JSON} needs root on the server")
    await ctx.transport(host).put(merge.text.encode(), DAEMON_JSON, mode=0o644)
    added = " ".join(f"{k}={v}" for k, v in merge.added.items())
    if not restart:
        return f"{DAEMON_JSON}: added log-opts {added}; restart dockerd to apply"
    restarted = await ctx.run(host, restart_docker(), check=False, timeout=120)
    if not restarted.ok:
        ctx.warn(f"could not restart dockerd: {restarted.stderr.strip()[-200:]}", host)
        return f"{DAEMON_JSON}: added log-opts {added}; restart dockerd by hand to apply"
    return f"{DAEMON_JSON}: added log-opts {added}; restarted dockerd"
