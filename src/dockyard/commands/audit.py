"""The audit log ``.kamal/<service>[-<dest>]-audit.log`` on every host an operation touches.

Kamal runs ``mkdir -p .kamal && echo "<line>" >> <file>``. The flows append with
``flows.context.audit_command``, which passes the line as an argument to ``printf`` (no shell
escaping), so it can join a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from dockyard.commands.argv import Argv, argv
from dockyard.commands.lock import iso8601
from dockyard.commands.paths import audit_log_file


def audit_line(
    message: str,
    *,
    recorded_at: datetime,
    performer: str,
    destination: str | None = None,
    details: Mapping[str, str | None] | None = None,
) -> str:
    """``[<time>] [<performer>] [<dest>]? [<detail>]... <message>``.

    ``details`` are the extra tags in order (role first, then call details); ``None`` values are
    left out, as are Kamal's version, service_version and service tags.
    """
    tags = [iso8601(recorded_at), performer, destination]
    for key, value in (details or {}).items():
        if key not in ("version", "service_version", "service"):
            tags.append(value)
    prefix = " ".join(f"[{tag}]" for tag in tags if tag is not None)
    return f"{prefix} {message}"


def reveal(service: str, destination: str | None, lines: int = 50) -> Argv:
    return argv("tail", "-n", str(lines), audit_log_file(service, destination))
