"""Values the operational flows return for the CLI to render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.commands.argv import Argv, Pipeline
    from dockyard.flows.context import DeployContext


@dataclass(frozen=True, slots=True)
class Section:
    """One block of output: a title (``App Host: 10.0.0.1``) and the text under it."""

    title: str
    host: str
    text: str


@dataclass(frozen=True, slots=True)
class Interactive:
    """An interactive command (``exec -i``, ``logs -f``): the local ``ssh -t`` argv the CLI
    replaces itself with, and the host it reaches."""

    argv: list[str]
    host: str


def first_line(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.strip():
            return line.strip()
    return None


def ssh_session(ctx: DeployContext, host: str, command: Argv | Pipeline) -> Interactive:
    """``ssh -t`` to ``host`` running ``command``, with the same keys, jump host, config
    files and known hosts as the pooled connections."""
    from dockyard.flows.context import ssh_options
    from dockyard.remote.argv import command_line
    from dockyard.remote.options import interactive_ssh_argv

    argv = interactive_ssh_argv(ssh_options(ctx.config), host, command_line(command))
    return Interactive(argv, host)
