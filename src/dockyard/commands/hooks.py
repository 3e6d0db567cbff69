"""Hooks: the ``KAMAL_*`` environment Kamal gives them, and who is deploying.

Where a hook lives and how it runs: ``flows.context.DeployContext`` (``hook_path``, ``run_hook``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from dockyard.commands.argv import Argv, Secret
from dockyard.commands.lock import iso8601

#: Hooks that also receive every resolved secret in their environment.
SECRET_HOOKS = frozenset({"pre-connect", "pre-deploy", "post-deploy"})


def abbreviated_version(version: str) -> str:
    """The first 7 characters, except that a version with ``_`` is kept whole."""
    return version if "_" in version else version[:7]


def service_version(service: str, version: str | None) -> str:
    return f"{service}@{abbreviated_version(version)}" if version else service


def hook_env(
    *,
    service: str,
    version: str | None,
    destination: str | None,
    recorded_at: datetime,
    performer: str,
    hosts: Iterable[str] = (),
    roles: Iterable[str] | None = None,
    lock: bool | None = None,
    command: str | None = None,
    subcommand: str | None = None,
    runtime: int | None = None,
    secrets: Mapping[str, str | Secret] | None = None,
) -> dict[str, str]:
    """The variables in Kamal's order; unset ones are left out.

    ``roles`` is only given with ``-r`` (``KAMAL_ROLES``); ``runtime`` only for post-deploy;
    ``secrets`` only for the hooks in :data:`SECRET_HOOKS`.
    """
    tags: list[tuple[str, str | None]] = [
        ("RECORDED_AT", iso8601(recorded_at)),
        ("PERFORMER", performer),
        ("DESTINATION", destination),
        ("VERSION", version),
        ("SERVICE_VERSION", service_version(service, version)),
        ("SERVICE", service),
        ("HOSTS", ",".join(hosts)),
        ("ROLES", ",".join(roles) if roles is not None else None),
        ("LOCK", None if lock is None else str(lock).lower()),
        ("COMMAND", command),
        ("SUBCOMMAND", subcommand),
        ("RUNTIME", None if runtime is None else str(runtime)),
    ]
    env = {f"KAMAL_{key}": value for key, value in tags if value is not None}
    for key, secret in (secrets or {}).items():
        env[key] = secret.reveal() if isinstance(secret, Secret) else secret
    return env


# --- who is deploying (local commands) ---------------------------------------------------------


def git_user_email() -> Argv:
    """``KAMAL_PERFORMER`` and the audit performer: this, or :func:`whoami` when empty."""
    return Argv(("git", "config", "user.email"))


def git_user_name() -> Argv:
    """The lock's "Locked by": this, or ``Unknown`` when git is missing."""
    return Argv(("git", "config", "user.name"))


def whoami() -> Argv:
    return Argv(("whoami",))


def performer(git_email_stdout: str, whoami_stdout: str) -> str:
    """Kamal's ``Kamal::Git.email.presence || `whoami`.chomp``."""
    return git_email_stdout.strip() or whoami_stdout.rstrip("\n")
