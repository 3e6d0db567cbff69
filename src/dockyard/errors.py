"""Errors that carry a message written for the user and an exit code.

Lower layers raise these; only the CLI entry points render them, once.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error Dockyard reports to a user."""

    exit_code: int = 1
    #: The layer that failed (config, ssh, docker, registry, proxy, health check, ...).
    layer: str = "dockyard"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The text shown to the user."""
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(DockyardError):
    layer = "config"
    exit_code = 2


class ConnectError(DockyardError):
    layer = "ssh"


class RemoteCommandError(DockyardError):
    layer = "remote"


class LockHeldError(DockyardError):
    layer = "lock"


class ProxyError(DockyardError):
    layer = "proxy"
